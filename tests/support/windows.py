"""The main window showing the worst-case verdict (tests/support/samples.py), at a size,
shown and exposed: what a ticket's screenshot would be taken of; and a counter of the events a widget gets."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings

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


class EventCounter(QObject):
    """Counts the events of one type an object gets (install it as an event filter)."""

    def __init__(self, kind: QEvent.Type) -> None:
        super().__init__()
        self.kind = kind
        self.count = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == self.kind:
            self.count += 1
        return False
