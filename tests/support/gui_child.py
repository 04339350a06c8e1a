"""A window test in a private network namespace: Qt must not exist before the namespace
is entered (nor be inherited through a fork), so the test body runs in a fresh
interpreter, `python3 tests/test_X.py --child OUT_DIR`, which enters the namespace first
and prints its result as the last line of JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def pump_until(predicate: Callable[[], Any], timeout_s: float, what: str,
               context: Callable[[], object] = lambda: "") -> Any:
    """Run the Qt event loop while polling a condition (never a fixed sleep)."""
    from PySide6.QtTest import QTest

    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}; {context()}")
        QTest.qWait(20)
    return value


def open_window(out_dir: Path, interval_s: float = 0.5) -> tuple[Any, Any]:
    """(QApplication, shown MainWindow) sampling every `interval_s`, its settings in
    out_dir and Save evidence going to out_dir/evidence."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    settings = QSettings(str(out_dir / "portpressure.ini"), QSettings.Format.IniFormat)
    settings.setValue("evidence/folder", str(out_dir / "evidence"))
    (out_dir / "evidence").mkdir()
    window = MainWindow(settings=settings, interval_s=interval_s)
    window.show()
    return app, window


def run_child(script: str, out_dir: Path, timeout_s: float = 240) -> dict:
    """The child's result; fails the test with the child's stderr if it failed."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(out_dir / "config"))
    done = subprocess.run([sys.executable, script, "--child", str(out_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def child_main(child: Callable[[Path], dict], script: str) -> None:
    """The `--child OUT_DIR` entry point of a test module."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(Path(sys.argv[2]))))
        sys.exit(0)
    print(f"usage: {Path(script).name} --child OUT_DIR", file=sys.stderr)
    sys.exit(2)
