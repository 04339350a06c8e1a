"""The plot's read-out row: each value after a square of its curve's colour, flowing
onto a second line when the row is narrow, the same words as HTML from text()."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QImage

from gui.plot_readout import PlotReadout

pytestmark = pytest.mark.gui
PARTS = [("#d62728", "TIME_WAIT 10,002"), ("#1f77b4", "ESTABLISHED 20"),
         ("#2ca02c", "ports held 10,022 of 28,232")]


def _rows_with(image: QImage, colour: str) -> set[int]:
    want = QColor(colour).rgb()
    return {y for y in range(image.height()) for x in range(image.width()) if image.pixel(x, y) == want}


def test_values_are_drawn_in_their_colours_on_one_line_or_two(qtbot) -> None:
    readout = PlotReadout()
    qtbot.addWidget(readout)
    readout.set_values("now 10:10:02", PARTS)
    assert readout.text().startswith("<b>now 10:10:02</b>")
    assert "ports held 10,022 of 28,232" in readout.text() and "TIME_WAIT 10,002" in readout.text()
    readout.resize(1200, readout.height())
    wide = readout.grab().toImage()
    first_line = _rows_with(wide, "#d62728")
    assert first_line and _rows_with(wide, "#2ca02c") == first_line  # all on one line
    first_two = "now 10:10:02 TIME_WAIT 10,002 ESTABLISHED 20"
    narrow_width = readout.fontMetrics().horizontalAdvance(first_two) + 60
    readout.resize(narrow_width, readout.height())
    narrow = readout.grab().toImage()
    assert _rows_with(narrow, "#d62728") == first_line
    second_line = _rows_with(narrow, "#2ca02c")
    assert second_line and min(second_line) > max(first_line)  # the last value flowed below
    readout.resize(40, readout.height())  # nothing fits: drawn cut, never an error
    readout.grab()


def test_a_message_replaces_the_values(qtbot) -> None:
    readout = PlotReadout()
    qtbot.addWidget(readout)
    readout.set_values("now 10:10:02", PARTS)
    readout.setText("Waiting for the first sample…")
    assert readout.text() == "Waiting for the first sample…"
    readout.resize(600, readout.height())
    assert not _rows_with(readout.grab().toImage(), "#d62728")
