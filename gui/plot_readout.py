"""The plot's read-out row: the time in bold, then each curve's colour and value."""

from __future__ import annotations

import html
from collections.abc import Sequence

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

PART_GAP_EM = 1.2  # between two values, in widths of "m"
MARGIN_PX = 2


class PlotReadout(QWidget):
    """Drawn with the painter: laid out as rich text it cost ~0.8 ms a paint (the HTML
    parsed and laid out every second), drawn in place a few draw calls. Values flow onto
    a second line when the row is too narrow; what does not fit on two lines is left
    out. text() gives the row as HTML (the same words, for tests and copies)."""

    LINES = 2

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._heading = ""
        self._parts: tuple[tuple[str, str], ...] = ()
        self._text = ""
        self._bold = QFont(self.font())
        self._bold.setBold(True)
        self.setFixedHeight(self.LINES * self.fontMetrics().lineSpacing() + 4)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        return self._text

    def set_values(self, heading: str, parts: Sequence[tuple[str, str]]) -> None:
        """`heading` in bold, then each (colour, words) after a square of that colour."""
        parts = tuple(parts)
        if (heading, parts) == (self._heading, self._parts):
            return
        self._heading, self._parts = heading, parts
        self._text = " &nbsp; ".join([f"<b>{html.escape(heading)}</b>"] + [
            f"<span style='color:{colour}'>■</span> {html.escape(words)}" for colour, words in parts])
        self.update()

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name: a message instead of values
        self._heading, self._parts, self._text = text, (), text
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(200, self.height())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        metrics = QFontMetricsF(self.font())
        line_height = metrics.lineSpacing()
        gap = metrics.horizontalAdvance("m") * PART_GAP_EM
        square = metrics.ascent() * 0.75
        width = self.width() - MARGIN_PX
        text_colour = self.palette().windowText().color()
        painter.setFont(self._bold)
        bold = QFontMetricsF(self._bold)
        x, line = float(MARGIN_PX), 0
        painter.setPen(text_colour)
        painter.drawText(QRectF(x, MARGIN_PX, width - x, line_height),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), self._heading)
        x += bold.horizontalAdvance(self._heading) + gap
        painter.setFont(self.font())
        for colour, words in self._parts:
            needed = square + metrics.horizontalAdvance(" " + words)
            if x + needed > width and x > MARGIN_PX:
                line += 1
                if line >= self.LINES:
                    break
                x = float(MARGIN_PX)
            top = MARGIN_PX + line * line_height
            painter.fillRect(QRectF(x, top + (line_height - square) / 2, square, square), QColor(colour))
            painter.drawText(QRectF(x + square, top, needed - square, line_height),
                             int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), " " + words)
            x += needed + gap
        painter.end()
