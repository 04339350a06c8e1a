"""gui.live_curve: arrays handed straight to the drawn curve show exactly what
PlotDataItem.setData shows (data read back, pixels drawn), and fall back to setData
wherever PlotDataItem would transform them."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt

from gui.live_curve import LiveCurve

pytestmark = pytest.mark.gui


def _plot(qtbot, curve_type: type[pg.PlotDataItem]) -> tuple[pg.PlotWidget, pg.PlotDataItem]:
    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    widget.resize(400, 200)
    widget.getPlotItem().getViewBox().disableAutoRange()
    widget.getPlotItem().getViewBox().setRange(xRange=(0, 100), yRange=(0, 50), padding=0)
    curve = curve_type(pen=pg.mkPen("#d62728", width=2.5, style=Qt.PenStyle.DashLine))
    curve.setDynamicRangeLimit(None)
    curve.setSkipFiniteCheck(True)
    widget.addItem(curve)
    return widget, curve


def _series(n: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(shift, shift + n, dtype=np.float64)
    return x, (np.sin(x / 7.0) + 1.0) * 20.0


def test_live_data_reads_back_and_draws_like_set_data(qtbot) -> None:
    reference_widget, reference = _plot(qtbot, pg.PlotDataItem)
    live_widget, live = _plot(qtbot, LiveCurve)
    usual_way: list[object] = []
    live.sigPlotChanged.connect(usual_way.append)  # emitted by setData, not by the direct way
    for step in range(5):
        x, y = _series(60 + step, step)
        reference.setData(x, y)
        live.set_live_data(x, y)
        for got, want in zip(live.getData(), reference.getData(), strict=True):
            assert np.array_equal(got, want)
        assert np.array_equal(live.xData, x) and np.array_equal(live.yData, y)
        for got, want in zip(live.curve.getData(), reference.curve.getData(), strict=True):
            assert np.array_equal(got, want)
        assert live.curve.isVisible() and live.curve.opts["pen"] == reference.curve.opts["pen"]
        assert live_widget.grab().toImage() == reference_widget.grab().toImage()
    assert len(usual_way) == 1  # only the first arrays (the style rides with them) took setData
    live.set_live_data(np.zeros(0), np.zeros(0))  # no data: hidden, as setData hides it
    assert not live.curve.isVisible() and live.getData() == (None, None)
    x, y = _series(30, 0)
    live.set_live_data(x, y)
    assert live.curve.isVisible() and np.array_equal(live.curve.getData()[1], y)


def test_style_set_while_empty_reaches_the_curve_with_the_next_data(qtbot) -> None:
    _widget, live = _plot(qtbot, LiveCurve)
    live.setPen(pg.mkPen("#1f77b4", width=4))  # no data yet: PlotDataItem keeps the pen to itself
    x, y = _series(20, 0)
    live.set_live_data(x, y)
    assert live.curve.opts["pen"].color().name() == "#1f77b4"
    assert live.curve.opts["pen"].widthF() == 4


def test_thinned_curves_take_the_usual_way(qtbot) -> None:
    """Clipped to the view (a paused or replayed plot): only the samples in view are
    drawn, as PlotDataItem does it."""
    _widget, live = _plot(qtbot, LiveCurve)
    x, y = _series(20, 0)
    live.set_live_data(x, y)
    live.setClipToView(True)
    x, y = _series(1000, 0)  # the view shows x 0..100
    live.set_live_data(x, y)
    drawn_x, _ = live.curve.getData()
    assert len(drawn_x) < 200 and drawn_x[0] <= 0 and drawn_x[-1] >= 100
    assert np.array_equal(live.xData, x)  # the item still holds all it was given
