"""The plot's axes remember tick labels, the zoom level and the title between redraws:
what they draw must stay exactly what pyqtgraph's own axes draw, whatever the range does
(slides a second at a time, zooms, jumps to another day as a replay does, grows past a
thousand and a million)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QImage

from gui.plot_axes import CountAxis, TimeAxis

NOW = 1_800_000_000.0  # 2027-01-15


def _pair(qtbot) -> tuple[pg.PlotWidget, pg.PlotWidget]:
    """pyqtgraph's axes and ours, on two plots of the same size."""
    plots = []
    for time_axis, count_axis in ((pg.DateAxisItem, pg.AxisItem), (TimeAxis, CountAxis)):
        plot = pg.PlotWidget(axisItems={"bottom": time_axis(orientation="bottom"),
                                        "left": count_axis(orientation="left")})
        plot.getPlotItem().setLabel("left", "sockets / ports")
        qtbot.addWidget(plot)
        plot.resize(900, 300)
        plot.show()
        plots.append(plot)
    return plots[0], plots[1]


def _drawn(plot: pg.PlotWidget) -> QImage:
    return plot.grab().toImage()


def _same_at(stock: pg.PlotWidget, ours: pg.PlotWidget, x: tuple[float, float],
             y: tuple[float, float]) -> None:
    for plot in (stock, ours):
        plot.setRange(xRange=x, yRange=y, padding=0)
    assert _drawn(ours) == _drawn(stock), (x, y)


def test_time_labels_follow_a_sliding_window_zooms_and_jumps(qtbot) -> None:
    stock, ours = _pair(qtbot)
    ranges = [(NOW - 300 + s, NOW + s + 3) for s in range(0, 40, 7)]  # live, 5 min, sliding
    ranges += [(NOW - 60, NOW), (NOW - 3600, NOW + 36), (NOW - 86_400, NOW + 864)]  # zooms
    ranges += [(NOW - 40 * 86_400, NOW - 40 * 86_400 + 300)]  # a replay of another day
    ranges += [(NOW - 300 + 0.5, NOW + 3.5), (NOW - 300, NOW + 3)]  # back, off the whole second
    for x in ranges:
        _same_at(stock, ours, x, (0.0, 50.0))


def test_count_labels_and_title_follow_the_top_of_the_range(qtbot) -> None:
    stock, ours = _pair(qtbot)
    for top in (5.0, 50.0, 50.0, 9_000.0, 28_232.0, 120_000.0, 3_000_000.0, 40.0):
        _same_at(stock, ours, (NOW - 300, NOW), (0.0, top))
    ours.getPlotItem().setLabel("left", "ports")  # a new title is shown at once
    stock.getPlotItem().setLabel("left", "ports")
    _same_at(stock, ours, (NOW - 300, NOW), (0.0, 40.0))
