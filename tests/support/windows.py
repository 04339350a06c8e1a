"""The main window showing the worst-case verdict (tests/support/samples.py), at a size,
shown and exposed: what a ticket's screenshot would be taken of."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from gui.main_window import MainWindow
from tests.support.samples import worst_case_sample


def worst_case_window(qtbot, tmp_path: Path, size: tuple[int, int] | None = None) -> MainWindow:
    window = MainWindow(settings=QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat),
                        replay=[worst_case_sample()], restore_geometry=False)
    qtbot.addWidget(window)
    if size is not None:
        window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    return window
