"""Keyboard paths to what the mouse does: Enter on a process row opens its details (as a
double-click does), and a menu item does the same for the selected row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QMainWindow

ENTER_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class EnterOpens(QObject):
    """Enter or Return on the view's current row calls `open_row(index)`. (Not the view's
    `activated` signal: where the desktop activates on a single click, that would open
    a dialog on every click.)"""

    def __init__(self, view: QAbstractItemView, open_row: Callable[[QModelIndex], Any]) -> None:
        super().__init__(view)
        self.view = view
        self.open_row = open_row
        view.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        plain = isinstance(event, QKeyEvent) and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if event.type() == QEvent.Type.KeyPress and plain and event.key() in ENTER_KEYS:
            index = self.view.currentIndex()
            if index.isValid():
                self.open_row(index)
                return True
        return False


def details_action(window: QMainWindow, view: QAbstractItemView,
                   open_row: Callable[[QModelIndex], Any]) -> QAction:
    """View > Process details: the selected row's details, or a word on what to select."""
    action = QAction("Process &details…", window)
    action.setStatusTip("Path, user, command line and endpoints of the selected process (Enter in the table)")

    def open_selected() -> None:
        index = view.currentIndex()
        if index.isValid():
            open_row(index)
        else:
            window.statusBar().showMessage("Process details: select a process in the table first", 5000)

    action.triggered.connect(open_selected)
    return action
