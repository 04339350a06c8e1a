"""The plot legend's entries: a curve hidden by a click shows its own colour, faded, and
its label says "hidden: click to show" (pyqtgraph draws a black crossed-eye icon that
reads as nothing in a screenshot)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPen

HIDDEN_SUFFIX = " (hidden: click to show)"
HIDDEN_TEXT_COLOUR = "#78909c"
HIDDEN_ALPHA = 70


class LegendSample(pg.ItemSample):
    """A line in the curve's colour; faded and dotted while the curve is hidden."""

    def paint(self, p: QPainter, *args: object) -> None:
        if self.item.isVisible():
            super().paint(p, *args)
            return
        colour = QColor(pg.mkPen(self.item.opts["pen"]).color())
        colour.setAlpha(HIDDEN_ALPHA)
        p.setPen(QPen(colour, 2, Qt.PenStyle.DotLine))
        p.drawLine(0, 11, 20, 11)


def show_visibility(legend: pg.LegendItem, curve: pg.PlotDataItem, label: str) -> None:
    """Say in the curve's legend label whether it is drawn."""
    for sample, text in legend.items:
        if sample.item is curve:
            if curve.isVisible():
                text.setText(label, color=legend.opts["labelTextColor"])
            else:
                text.setText(label + HIDDEN_SUFFIX, color=HIDDEN_TEXT_COLOUR)
            sample.update()
            return
