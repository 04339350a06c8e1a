"""How long from launch to the first window on screen? (issue 6: within 3 s, one-file build.)

Run: `python3 -m benchmarks.startup [--binary dist/PortPressure] [--runs 5] [--no-source]`
(build first with packaging/build.sh). Under a display server the window goes to it
(QT_QPA_PLATFORM as set, e.g. xcb under Xvfb); without one, to Qt's offscreen platform.

What is measured, from outside the program (no hook in the window): the clock starts
just before the process is launched, so for the one-file build it includes the
bootloader unpacking the bundle into a fresh temporary folder, as on every launch.
It stops at the first frame of the main window handed to the platform: Qt's own
`qt.widgets.painting` log line "Flushing QRegion(...) of MainWindow(...)" (switched on
with QT_LOGGING_RULES), stamped by Qt with `%{time boot}`, the CLOCK_MONOTONIC seconds
that time.monotonic() reads too. The window runs as `gui --screenshot FILE --after 1`
so every run ends on its own a second after it is up.

Cold: the executable (or, for the source run, every file of the app and its
packages in the venv) is first dropped from the page cache with posix_fadvise, so it
is read from disk again; shared system libraries and fonts stay cached (dropping the
whole cache would disturb everything else on the machine). Warm: launched again at once.
`--version` (launch to exit) is timed as well: the command-line start-up without Qt.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_FRAME = re.compile(r"^\s*(\d+\.\d+) qt\.widgets\.painting Flushing .* of MainWindow\(")
QT_ENV = {
    "QT_LOGGING_RULES": "qt.widgets.painting.debug=true",
    "QT_MESSAGE_PATTERN": "%{time boot} %{category} %{message}",
}
SOURCE_PACKAGES = ("PySide6", "shiboken6", "numpy", "numpy.libs", "pyqtgraph", "psutil")
TIMEOUT_S = 60.0


@dataclass
class Figures:
    label: str
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)


def evict(paths: Iterable[Path]) -> int:
    """Drop these files' pages from the page cache (the next read goes to disk)."""
    count = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            count += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return count


def source_files() -> list[Path]:
    """The files a source run reads: the app's modules and its packages in this venv."""
    import numpy

    site = Path(numpy.__file__).resolve().parents[1]
    files = [p for package in ("core", "gui") for p in (ROOT / package).rglob("*") if p.is_file()]
    for package in SOURCE_PACKAGES:
        files += [p for p in (site / package).rglob("*") if p.is_file()]
    return files


def platform_env() -> dict[str, str]:
    env = {**os.environ, **QT_ENV}
    if not env.get("QT_QPA_PLATFORM") and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def first_window_s(command: list[str], env: dict[str, str]) -> float:
    """Seconds from launch to the main window's first frame, read from Qt's log."""
    with tempfile.TemporaryDirectory(prefix="portpressure-startup-") as tmp:
        shot = str(Path(tmp) / "shot.png")
        started = time.monotonic()
        process = subprocess.Popen([*command, "gui", "--screenshot", shot, "--after", "1"], env=env,
                                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        shown = None
        assert process.stderr is not None
        for line in process.stderr:  # ends when the program does (it quits after the screenshot)
            match = FIRST_FRAME.match(line)
            if match and shown is None:
                shown = float(match.group(1))
        code = process.wait(TIMEOUT_S)
    if code != 0 or shown is None:
        raise RuntimeError(f"{' '.join(command)}: exit status {code}, first frame "
                           f"{'seen' if shown is not None else 'never logged'}")
    return shown - started


def exit_s(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run([*command, "--version"], check=True, capture_output=True, cwd=ROOT, timeout=TIMEOUT_S)
    return time.monotonic() - started


def measure(label: str, command: list[str], cache_files: list[Path], runs: int,
            env: dict[str, str]) -> tuple[Figures, Figures]:
    window, version = Figures(f"{label}: launch -> first window frame"), Figures(f"{label}: --version")
    for _ in range(runs):
        evict(cache_files)
        window.cold.append(first_window_s(command, env))
        window.warm.append(first_window_s(command, env))
        evict(cache_files)
        version.cold.append(exit_s(command))
        version.warm.append(exit_s(command))
    return window, version


def report(figures: Figures) -> str:
    def cell(values: list[float]) -> str:
        return f"median {statistics.median(values):5.2f} s  max {max(values):5.2f} s"

    return f"{figures.label:<45} cold {cell(figures.cold)}   warm {cell(figures.warm)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=ROOT / "dist" / "PortPressure",
                        help="the one-file build (default: dist/PortPressure)")
    parser.add_argument("--runs", type=int, default=5, help="cold and warm launches each (default 5)")
    parser.add_argument("--no-source", action="store_true", help="skip the source run for comparison")
    args = parser.parse_args()
    if not args.binary.is_file():
        print(f"startup: no build at {args.binary}: run packaging/build.sh first", file=sys.stderr)
        return 2
    env = platform_env()
    print(f"platform: {env.get('QT_QPA_PLATFORM') or 'default (' + env.get('DISPLAY', '') + ')'}; "
          f"{args.runs} cold and {args.runs} warm launches each; CPUs: {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    binary = args.binary.resolve()
    print(f"one-file build: {binary} ({binary.stat().st_size:,} bytes)")
    rows = list(measure("one-file build", [str(binary)], [binary], args.runs, env))
    if not args.no_source:
        source = [sys.executable, "-m", "gui.launcher"]
        rows += measure("source (venv)", source, source_files(), args.runs, env)
    for row in rows:
        print(report(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
