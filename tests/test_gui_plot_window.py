"""The live plot hands pyqtgraph only the samples in its time window (a day of history
would otherwise cost every second), and everything when paused, so panning shows the past."""

from __future__ import annotations

import numpy as np
import pytest

from gui.state_plot import StatePlot


def _plot_with_history(qtbot, samples: int) -> StatePlot:
    plot = StatePlot(capacity=samples)
    qtbot.addWidget(plot)
    plot.resize(1200, 400)
    now = 1_800_000_000.0
    times = np.arange(now - samples, now, 1.0)
    columns = plot.buffer.values.shape[1] if hasattr(plot.buffer, "values") else len(plot.groups) + 2
    values = np.tile(np.arange(samples, dtype=np.float64), (columns, 1))
    plot.buffer.fill(times, values)
    plot.redraw()
    return plot


def _drawn(plot: StatePlot) -> np.ndarray:
    """All the data the curve was given (getData() would return only what is in view)."""
    return np.asarray(plot.curves[0].xData)


def test_live_plot_gets_only_its_window_and_all_when_paused(qtbot) -> None:
    plot = _plot_with_history(qtbot, 86_400)
    plot.set_window(300)
    live = _drawn(plot)
    newest = plot.buffer.times[-1]
    assert live[-1] == newest
    assert 300 <= len(live) <= 303, len(live)  # the window plus one sample to its left
    assert live[0] <= newest - 300
    plot.set_paused(True)
    assert len(_drawn(plot)) == 86_400
    plot.set_paused(False)
    assert len(_drawn(plot)) <= 303
    plot.set_window(3600)
    assert 3600 <= len(_drawn(plot)) <= 3603


def test_curves_are_thinned_only_where_there_is_something_to_thin(qtbot) -> None:
    """Live with a window's samples fewer than the plot's pixels: no clipping or
    downsampling (the view moves every second and would recompute every curve for
    nothing); more samples than pixels, paused or replaying: both, and what is drawn
    for a day is far fewer points than the day has."""
    plot = _plot_with_history(qtbot, 86_400)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_window(300)
    curve = plot.curves[0]
    assert not curve.opts["clipToView"] and not curve.opts["autoDownsample"]
    plot.set_window(3600)  # 3,600 samples on a plot ~1,200 px wide
    assert curve.opts["clipToView"] and curve.opts["autoDownsample"]
    plot.set_window(86_400)
    drawn_x, _ = curve.getData()
    assert drawn_x is not None and len(drawn_x) < 86_400 // 5  # pyqtgraph's peaks, not every sample
    plot.set_window(300)
    assert not curve.opts["clipToView"]
    plot.set_paused(True)  # the whole day, to pan over
    assert curve.opts["clipToView"] and curve.opts["autoDownsample"]
    plot.set_paused(False)
    assert not curve.opts["clipToView"]
    drawn_x, _ = curve.getData()
    assert 300 <= len(drawn_x) <= 303


def test_the_counts_row_returns_to_now_when_the_mouse_leaves_the_plot(qtbot) -> None:
    from PySide6.QtCore import QEvent, QPoint
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    plot = _plot_with_history(qtbot, 600)
    plot.show()
    qtbot.waitExposed(plot)
    viewport = plot.plot_widget.viewport()
    assert plot.readout.text().startswith("<b>now ")
    QTest.mouseMove(viewport, QPoint(viewport.width() // 2, viewport.height() // 2))
    qtbot.waitUntil(lambda: plot.readout.text().startswith("<b>at "), timeout=5_000)
    assert plot.cursor_line.isVisible()
    # The pointer leaves the widget altogether: Qt sends Leave and no further move.
    QApplication.sendEvent(plot.plot_widget, QEvent(QEvent.Type.Leave))
    assert plot.readout.text().startswith("<b>now ")
    assert not plot.cursor_line.isVisible()


def _flat_plot(qtbot, samples: int, value: float) -> StatePlot:
    plot = StatePlot(capacity=4 * samples)
    qtbot.addWidget(plot)
    plot.resize(1200, 400)
    now = 1_800_000_000.0
    plot.buffer.fill(np.arange(now - samples, now, 1.0), np.full((len(plot.groups) + 2, samples), value))
    plot.redraw()
    return plot


def _add(plot: StatePlot, value: float) -> float:
    newest = float(plot.buffer.times[-1]) + 1.0
    plot.buffer.append(newest, [value] * (len(plot.groups) + 2))
    plot.redraw()  # what append() does with a sample
    return newest


def test_the_live_view_moves_in_steps_and_always_shows_the_window(qtbot) -> None:
    """Between steps a sample changes only the curves (no new range: no axis re-laid
    out, nothing else repainted); the view always holds the last window_s seconds and
    the newest sample, and a pan is undone by the next sample."""
    from gui.state_plot import LIVE_STEP_SHARE

    plot = _flat_plot(qtbot, 600, 100.0)
    plot.set_window(300)
    step = 300 * LIVE_STEP_SHARE
    views = []
    for i in range(60):
        newest = _add(plot, 100.0 + i % 3)  # counts wobbling by a few sockets
        (left, right), (bottom, top) = plot.view_box.viewRange()
        assert left <= newest - 300 and newest <= right
        assert right - left == pytest.approx(300 + step)
        assert bottom == 0 and top >= 102
        views.append((left, right, top))
    moves = sum(a != b for a, b in zip(views, views[1:], strict=False))
    assert 60 / step - 2 <= moves <= 60 / step + 1  # every ~6 s, not every second
    assert len({top for _, _, top in views}) == 1  # the wobble does not move the count axis
    plot.view_box.setXRange(newest - 3000, newest - 2000, padding=0)  # the user pans away
    newest = _add(plot, 101.0)
    (left, right), _ = plot.view_box.viewRange()
    assert left <= newest - 300 and newest <= right


def test_the_count_axis_follows_a_rise_at_once_and_a_fall_in_the_end(qtbot) -> None:
    plot = _flat_plot(qtbot, 600, 100.0)
    plot.set_window(60)
    for _ in range(3):
        _add(plot, 100.0)
    _, (_, calm_top) = plot.view_box.viewRange()
    _add(plot, 300.0)  # a burst: in view at once
    _, (_, top) = plot.view_box.viewRange()
    assert top >= 300 > calm_top
    for _ in range(70):  # the burst leaves the 1 min window; counts fall to 10
        _add(plot, 10.0)
    _, (_, top) = plot.view_box.viewRange()
    assert 10 < top < 50
