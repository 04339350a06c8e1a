"""`portpressure gui`: the QApplication, the icon, the main window, `--open RECORDING`
(replay instead of live sampling) and the `--screenshot PNG --after SECONDS --size WxH`
mode that writes the window, at that size (default 1280x800), and exits."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QSettings, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from core import __version__
from core.recording import RecordingError, check_recording
from gui.offscreen_fonts import use_windows_fonts_offscreen
from gui.style import icon_path

log = logging.getLogger(__name__)
EXIT_OK = 0
EXIT_BAD_INPUT = 2
DEFAULT_AFTER_S = 3.0
ORGANIZATION = "PortPressure"
APPLICATION = "PortPressure"


def application() -> QApplication:
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)
    use_windows_fonts_offscreen(os.environ)
    app = QApplication(sys.argv[:1])
    icon = icon_path()
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def install_excepthook(show: Callable[[str], None]) -> None:
    """An exception in a Qt slot would abort the process under PySide6: log it, show
    one line in the status bar, and keep the window alive."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            QApplication.quit()
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, value, tb)))
        with contextlib.suppress(Exception):  # the window itself may be what failed
            show(f"Unexpected error (logged, the window keeps running): {kind.__name__}: {value}")

    sys.excepthook = hook


def _check_writable(path: Path) -> str | None:
    """Why `path` cannot be written, checked before the window opens, or None."""
    if path.is_dir():
        return f"{path} is a folder"
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"folder {parent} does not exist"
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    if not existed:
        path.unlink()  # only checking: the PNG is written when the time comes
    return None


def run_window(args: argparse.Namespace) -> int:
    recording = Path(args.open) if getattr(args, "open", None) else None
    if recording is not None:
        # A quick look at its start: a missing, empty or foreign file is refused before a
        # window opens; the full load then runs in the window, off its thread.
        try:
            check_recording(recording)
        except RecordingError as exc:
            print(f"portpressure gui: --open: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    screenshot = Path(args.screenshot) if getattr(args, "screenshot", None) else None
    if screenshot is not None:
        problem = _check_writable(screenshot)
        if problem:
            print(f"portpressure gui: --screenshot: {problem}", file=sys.stderr)
            return EXIT_BAD_INPUT
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = application()
    from gui.main_window import MainWindow  # after QApplication: pyqtgraph reads its settings

    # A screenshot is taken at the default size, whatever size was remembered, so
    # screenshots from different runs (and for the README) compare.
    window = MainWindow(settings=QSettings(), restore_geometry=screenshot is None, start=recording is None)
    if screenshot is not None and getattr(args, "size", None):
        window.resize(*args.size)
    install_excepthook(window.show_error)
    window.show()
    status = {"code": EXIT_OK}
    if screenshot is not None:
        after = DEFAULT_AFTER_S if args.after is None else float(args.after)

        def grab_and_quit() -> None:
            if not window.screenshot().save(str(screenshot), "PNG"):
                print(f"portpressure gui: --screenshot: could not write {screenshot}", file=sys.stderr)
                status["code"] = EXIT_BAD_INPUT
            window.close()
            app.quit()

        def grab_later(*_loaded: object) -> None:
            QTimer.singleShot(int(after * 1000), grab_and_quit)

        if recording is not None:  # --after counts from the replay on screen, however long the load
            window.loading_finished.connect(grab_later)
        else:
            grab_later()
    if recording is not None:
        window.open_recording(recording)
    code = app.exec()
    window.stop_sampling()
    return status["code"] or code
