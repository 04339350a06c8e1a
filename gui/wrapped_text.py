"""A word-wrapped QLabel whose text changes every sample without re-laying out the window
unless its height changes."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class WrappedTextBox(QWidget):
    """Holds a word-wrapped label (still a QLabel: selectable, styled by its object name).

    QLabel.setText asks the layout above it to recompute, always: in the verdict banner,
    whose reasons and gauge caption carry numbers that change every second, that was a
    layout pass over the whole window (every table's and header's size hints) and two or
    three repaints of the banner per sample. The label here has this box for a parent
    and no layout between them, so its request comes to the box, which passes it on only
    when the wrapped text needs another height at the current width."""

    def __init__(self, label: QLabel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        label.setParent(self)
        self._measured = False
        policy = QSizePolicy(label.sizePolicy())
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self.label.heightForWidth(width)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self.label.sizeHint()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self.label.minimumSizeHint()

    def set_text(self, text: str) -> None:
        """The label's setText, its text laid out at once. A rich-text or selectable label
        lays out its text document when first asked: left to its paint, that layout asks
        for a repaint from inside the paint, and Qt paints the label (and the banner under
        it) a second time a few ms later, every sample. Measured here instead, the request
        joins the paint already due (and measuring again on the label's layout request,
        which Qt delivers after that paint, would ask for another)."""
        self.label.setText(text)
        self._measured = True
        if not self._fits():
            self.updateGeometry()

    def _fits(self) -> bool:
        return self.label.heightForWidth(self.width()) == self.height()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.label.setGeometry(self.rect())
        if not self._fits():  # a new width may wrap the text onto another number of lines
            self.updateGeometry()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # the label's text changed
            if self._measured:  # by set_text
                self._measured = False
            elif not self._fits():
                self.updateGeometry()
            return True
        return super().event(event)
