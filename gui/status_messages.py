"""Status-bar messages that stay readable: one message at a time, elided in the middle
(the start says what happened, the end names the file) with the full text in its tooltip,
and every message kept in a log that View > Messages shows and copies.

The window keeps calling `statusBar().showMessage(text, ms)`; the status bar here is a
QStatusBar whose showMessage elides and logs. Errors go to an ElidedLabel that logs too.
A temporary message hides the error label while it shows (QStatusBar's own rule), so
the two never print over each other.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QFontMetrics, QKeySequence, QMouseEvent, QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

LOG_LIMIT = 1000  # messages kept; a day of a message a minute and more
REFIT_EVENTS = (QEvent.Type.Move, QEvent.Type.Resize, QEvent.Type.Show, QEvent.Type.Hide)


@dataclass(frozen=True)
class LoggedMessage:
    moment: float
    kind: str  # "info" | "error"
    text: str

    def line(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.moment))
        return f"{stamp}  {'ERROR ' if self.kind == 'error' else ''}{self.text}"


class MessageLog(QObject):
    added = Signal(object)  # LoggedMessage

    def __init__(self, limit: int = LOG_LIMIT, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.messages: deque[LoggedMessage] = deque(maxlen=limit)

    def add(self, text: str, kind: str = "info") -> None:
        if not text:
            return
        last = self.messages[-1] if self.messages else None
        if last is not None and last.text == text and last.kind == kind:
            return  # the same message again (an error repeated every sample): once is enough
        message = LoggedMessage(time.time(), kind, text)
        self.messages.append(message)
        self.added.emit(message)

    def text(self) -> str:
        return "\n".join(m.line() for m in self.messages)


def elide_middle(text: str, metrics: QFontMetrics, width: int) -> str:
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, max(width, 0))


class ElidedLabel(QLabel):
    """A one-line label that never widens the status bar: it shows its text elided in the
    middle to its width, the whole text in its tooltip and in the message log; text()
    gives the whole text."""

    def __init__(self, log: MessageLog | None = None, kind: str = "error",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log = log
        self.kind = kind
        self.full_text = ""
        self.setWordWrap(False)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self.full_text = text
        self.setToolTip(text)
        if self.log is not None:
            self.log.add(text, self.kind)
        self._fit()

    def text(self) -> str:
        return self.full_text

    def clear(self) -> None:
        self.full_text = ""
        self.setToolTip("")
        super().clear()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(self.fontMetrics().horizontalAdvance(self.full_text) + 8, super().sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        super().setText(elide_middle(self.full_text, self.fontMetrics(), self.contentsRect().width()))


class MessageStatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log = MessageLog(parent=self)
        self.full_message = ""
        self._shown = ""
        self._clear_timer = QTimer(self)
        self._clear_timer.setSingleShot(True)
        self._clear_timer.timeout.connect(self.clearMessage)
        self.messageChanged.connect(self._message_changed)
        self.dialog: MessagesDialog | None = None
        self.permanent: list[QWidget] = []
        self.messages_action = QAction("&Messages…", self)
        self.messages_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.messages_action.setStatusTip("Every status message and error of this session, to read or copy")
        self.messages_action.triggered.connect(self.show_log)
        self.setToolTip("Double-click for every message of this session (View > Messages)")

    def showMessage(self, text: str, timeout: int = 0) -> None:  # noqa: N802 - Qt's name
        self.log.add(text)
        self.full_message = text
        self._show_fitted()
        if timeout > 0:
            self._clear_timer.start(timeout)
        else:
            self._clear_timer.stop()

    def currentMessage(self) -> str:  # noqa: N802 - Qt's name
        return self.full_message

    def clearMessage(self) -> None:  # noqa: N802 - Qt's name
        self._clear_timer.stop()
        self.full_message = ""
        super().clearMessage()

    def addPermanentWidget(self, widget: QWidget, stretch: int = 0) -> None:  # noqa: N802 - Qt's name
        self.permanent.append(widget)
        # The message ends where the permanent read-outs begin: when they move (the
        # layout settles after the message hid the error label, a read-out grows), refit.
        widget.installEventFilter(self)
        super().addPermanentWidget(widget, stretch)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() in REFIT_EVENTS and self.full_message and self._shown == super().currentMessage():
            self._show_fitted()
        return False

    def message_width(self) -> int:
        """Where QStatusBar draws a message: from 6 px in up to the first permanent widget."""
        right = self.width() - 12
        shown = [w.x() for w in self.permanent if w.isVisible()]
        if shown:
            right = min(right, min(shown) - 2)
        return right - 6

    def _show_fitted(self) -> None:
        fitted = elide_middle(self.full_message, self.fontMetrics(), self.message_width())
        if fitted != self._shown or fitted != super().currentMessage():
            self._shown = fitted
            super().showMessage(fitted)

    def _message_changed(self, shown: str) -> None:
        if shown != self._shown:  # a menu's status tip, or cleared: not our message any more
            self.full_message = shown
            self._shown = shown

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self.full_message and self._shown == super().currentMessage():
            self._show_fitted()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        self.show_log()
        super().mouseDoubleClickEvent(event)

    def show_log(self) -> MessagesDialog:
        if self.dialog is None:
            self.dialog = MessagesDialog(self.log, self.window())
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog


class MessagesDialog(QDialog):
    """The session's messages, oldest first, selectable and copyable."""

    def __init__(self, log: MessageLog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PortPressure messages")
        self.resize(760, 360)
        self.log = log
        self.view = QPlainTextEdit(log.text())
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy all", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.log.text()))
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(buttons)
        log.added.connect(self._added)

    def _added(self, message: LoggedMessage) -> None:
        self.view.appendPlainText(message.line())
