"""The live plot: one curve per group of TCP states, ports held in the busiest pool,
and that pool's capacity as a limit line, on a real time axis.

Built for a day-long session (pyqtgraph's long-running practice): the curves'
arrays are preallocated and appended in place; every tick hands the existing items
views of those arrays (live, straight to the drawn curves: gui.live_curve); paused or
replaying, clip-to-view and peak downsampling keep the drawing cost bounded by the
pixels, not by the history length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.history import SERIES_NAMES, HistorySnapshot
from core.model import Event, Sample
from gui.event_markers import EventMarkers
from gui.live_curve import LiveCurve
from gui.plot_axes import CountAxis, TimeAxis
from gui.plot_buffer import PlotBuffer
from gui.plot_legend import LegendSample, show_visibility
from gui.plot_readout import PlotReadout
from gui.style import CAPACITY_COLOUR, CURVE_GROUPS, PORTS_HELD_COLOUR, CurveGroup

WINDOWS: tuple[tuple[str, int], ...] = (("1 min", 60), ("5 min", 300), ("1 h", 3600), ("24 h", 86400))
REPLAY_CURSOR_COLOUR = "#1a237e"
DEFAULT_WINDOW_S = 300
PORTS_HELD_LABEL = "ports held (busiest pool)"
# The limit line joins the y auto-range only once usage is a visible share of it, so
# an idle machine's curves are not flattened against a capacity of 28,232.
SHOW_LIMIT_SHARE = 0.25
PORTS_HELD_Z = 10
TOP_LABEL_ROOM_PX = 8
LIMIT_LABEL_PX = 22.0  # the capacity label (8-9 pt) and its gap above the line

ANTIALIAS_PIXELS_PER_SAMPLE = 8  # see StatePlot._antialias
# The live view moves in steps (see StatePlot._x_range, _y_top): the time axis by 2% of
# the window once the newest sample reaches the right edge, the count axis only when
# the highest value leaves 100-125% of what the view needs (then 110%).
LIVE_STEP_SHARE = 0.02
Y_SLACK_MAX = 1.25
Y_HEADROOM = 1.10


def group_values(states: dict[str, float] | object, groups: Sequence[CurveGroup]) -> list[float]:
    get = states.get  # type: ignore[attr-defined]
    return [float(sum(get(s, 0) for s in group.states)) for group in groups]


class StatePlot(QWidget):
    window_changed = Signal(int)
    paused_changed = Signal(bool)
    cursor_moved = Signal(int)  # replay: the user dragged or clicked the time cursor to this row

    def __init__(self, capacity: int = 86_400, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.groups = CURVE_GROUPS
        self.capacity = capacity
        # columns: one per group, then ports held, then capacity
        self.buffer = PlotBuffer(len(self.groups) + 2, capacity)
        self.window_s = DEFAULT_WINDOW_S
        self.paused = False
        self._last_capacity = 0
        # Replay: the buffer holds a recording, the view follows the time cursor (the row
        # shown in the tables) instead of the newest sample.
        self.replaying = False
        self.show_whole = False
        self.cursor_index: int | None = None
        self._moving_cursor = False
        self._antialiased = True
        self._thinned = True  # clip to view and downsample (see _thin)
        self._live_right: tuple[int, float] | None = None  # (window_s, right edge) of the live view

        pg.setConfigOptions(antialias=True, background="w", foreground="#37474f")
        self.plot_widget = pg.PlotWidget(axisItems={"bottom": TimeAxis(orientation="bottom"),
                                                          "left": CountAxis(orientation="left")})
        self.plot_item = self.plot_widget.getPlotItem()
        # No grid: pyqtgraph draws grid lines as part of the axis picture over the whole
        # view, and with even the horizontal ones the once-a-second repaint took 26 ms
        # instead of 5.5 ms (1280x800, offscreen). The limit line and the hover read-out
        # carry the values people read off this plot.
        self.plot_item.setLabel("left", "sockets / ports")
        self.plot_item.setMenuEnabled(False)
        self.plot_item.hideButtons()
        # Room above the view for half a tick label: the count axis's top label sits on
        # the view's top edge and was cut in half there.
        left, _top, right, bottom = self.plot_item.layout.getContentsMargins()
        self.plot_item.layout.setContentsMargins(left, TOP_LABEL_ROOM_PX, right, bottom)
        # The legend sits under the time axis, in the plot's own grid layout, so it never
        # covers the curves or the limit line; clicking an entry toggles its curve.
        self.legend = pg.LegendItem(labelTextSize="8pt", verSpacing=-8, horSpacing=12, colCount=4,
                                    sampleType=LegendSample)
        self.plot_item.layout.addItem(self.legend, 4, 1)
        self.legend.setToolTip("Click an entry to hide or show its curve")
        self.view_box = self.plot_item.getViewBox()
        self.view_box.setMouseEnabled(x=True, y=False)
        # Both ranges are set by redraw() in one call per sample: pyqtgraph's y auto-range
        # runs while painting and asks for a second paint, every second.
        self.view_box.disableAutoRange()
        self.limit_in_view = False
        # A new height changes the head-room the capacity label needs (see _follow), and
        # the view's new transform is otherwise applied only at its next paint. Paused,
        # the view stays where the user panned it.
        self.view_box.sigResized.connect(lambda _view: None if self.paused else self._refollow())

        self.curves: list[LiveCurve] = []
        for group in self.groups:
            curve = self._new_curve(pg.mkPen(group.colour, width=group.width))
            self.legend.addItem(curve, group.label)
            self._tune_curve(curve)
            curve.setVisible(group.visible)
            show_visibility(self.legend, curve, group.label)
            # A hidden curve gets no data each second; it catches up when shown again.
            column = len(self.curves)
            curve.visibleChanged.connect(lambda c=curve, i=column: self._curve_shown(c, i))
            curve.visibleChanged.connect(lambda c=curve, t=group.label: show_visibility(self.legend, c, t))
            self.curves.append(curve)
        self.ports_curve = self._new_curve(pg.mkPen(PORTS_HELD_COLOUR, width=2.5, style=Qt.PenStyle.DashLine))
        self.legend.addItem(self.ports_curve, PORTS_HELD_LABEL)
        # Ports held often equals TIME_WAIT and, when exhausted, the capacity: its dashes
        # drawn over both let the lines beneath show through the gaps.
        self.ports_curve.setZValue(PORTS_HELD_Z)
        self._tune_curve(self.ports_curve)
        self.limit_line = pg.InfiniteLine(
            angle=0, movable=False, pen=pg.mkPen(CAPACITY_COLOUR, width=1.5, style=Qt.PenStyle.DashDotLine),
            label="capacity of the busiest pool: {value:,.0f}",
            labelOpts={"position": 0.98, "color": CAPACITY_COLOUR, "anchors": [(1, 1), (1, 1)]})
        self.limit_line.setVisible(False)
        self.plot_item.addItem(self.limit_line, ignoreBounds=True)
        self.limit_line.setZValue(PORTS_HELD_Z - 1)  # under the ports-held dashes, over the states
        self.cursor_line = pg.InfiniteLine(angle=90, movable=False,
                                           pen=pg.mkPen("#90a4ae", width=1, style=Qt.PenStyle.DotLine))
        self.cursor_line.setVisible(False)
        self.plot_item.addItem(self.cursor_line, ignoreBounds=True)
        self._mouse_proxy = pg.SignalProxy(self.plot_widget.scene().sigMouseMoved, rateLimit=30,
                                           slot=self._on_mouse_moved)
        self.replay_line = pg.InfiniteLine(
            angle=90, movable=True, pen=pg.mkPen(REPLAY_CURSOR_COLOUR, width=2),
            hoverPen=pg.mkPen(REPLAY_CURSOR_COLOUR, width=4))
        self.replay_line.setCursor(Qt.CursorShape.SizeHorCursor)
        self.replay_line.setToolTip("The moment shown in the tables and the banner: drag it, or click "
                                    "the plot (Left/Right step one sample)")
        self.replay_line.setVisible(False)
        self.replay_line.setZValue(20)
        self.replay_line.sigPositionChanged.connect(self._replay_line_moved)
        self.plot_item.addItem(self.replay_line, ignoreBounds=True)
        self.plot_widget.scene().sigMouseClicked.connect(self._on_mouse_clicked)

        self.markers = EventMarkers(self.plot_item)
        # The mouse leaving the plot widget sends no scene move: the read-out returns to
        # "now" on the widget's Leave event.
        self.plot_widget.installEventFilter(self)
        self.readout = PlotReadout()
        self.readout.setText("Waiting for the first sample…")

        self.window_actions = QActionGroup(self)
        self.window_actions.setExclusive(True)
        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("Show the last"))
        for number, (label, seconds) in enumerate(WINDOWS, start=1):
            action = QAction(label, self, checkable=True)
            action.setData(seconds)
            action.setShortcut(QKeySequence(f"Ctrl+{number}"))
            action.setToolTip(f"Show the last {label} ({action.shortcut().toString()})")
            action.setChecked(seconds == self.window_s)
            action.triggered.connect(lambda _checked=False, s=seconds: self.set_window(s))
            self.window_actions.addAction(action)
            controls.addWidget(self._tool_button(action))
        # The window may also show no fixed length: the whole recording being replayed.
        self.window_actions.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.whole_action = QAction("Whole recording", self, checkable=True)
        self.whole_action.setShortcut(QKeySequence("Ctrl+0"))
        self.whole_action.setToolTip("Show the whole recording being replayed (Ctrl+0)")
        self.whole_action.triggered.connect(lambda _checked=False: self.set_whole(True))
        self.whole_action.setVisible(False)
        self.whole_button = self._tool_button(self.whole_action)
        self.whole_button.setVisible(False)
        controls.addWidget(self.whole_button)
        self.pause_action = QAction("Pause", self, checkable=True)
        self.pause_action.setShortcut(QKeySequence("Space"))
        self.pause_action.setToolTip("Freeze the plot to look closer (sampling and recording go on) (Space)")
        self.pause_action.toggled.connect(self.set_paused)
        controls.addSpacing(12)
        controls.addWidget(self._tool_button(self.pause_action))
        controls.addStretch(1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(controls)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.readout)
        self._follow(time.time())  # a real time axis from the start, not 1970

    def _new_curve(self, pen: Any) -> LiveCurve:
        curve = LiveCurve(pen=pen)
        self.plot_item.addItem(curve)
        return curve

    @staticmethod
    def _tune_curve(curve: pg.PlotDataItem) -> None:
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        curve.setSkipFiniteCheck(True)
        # The y range always spans the data in view (see _follow): nothing to limit.
        curve.setDynamicRangeLimit(None)

    @staticmethod
    def _tool_button(action: QAction) -> QToolButton:
        button = QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        return button

    # -- data ---------------------------------------------------------------------------
    def append(self, sample: Sample) -> None:
        values = group_values(sample.states, self.groups)
        values += [float(sample.ports.in_use), float(sample.ports.capacity)]
        self.buffer.append(sample.timestamp, values)
        self._last_capacity = sample.ports.capacity
        # Paused: drawn on resume. Minimised: drawn by the first sample after a restore.
        if not self.paused and not self.window().isMinimized():
            self.redraw()

    def load(self, snapshot: HistorySnapshot, events: Sequence[Event] = ()) -> None:
        """Replace what is plotted with a history and its events (a replay, or the live
        history when coming back from one). The buffer grows to hold a recording longer
        than a day."""
        self.markers.clear()
        self.markers.add(events)
        index = {name: i for i, name in enumerate(SERIES_NAMES)}
        values = snapshot.values.astype(np.float64)
        columns = [values[:, [index[s] for s in g.states]].sum(axis=1) for g in self.groups]
        columns += [values[:, index["in_use"]], values[:, index["capacity"]]]
        self.buffer = PlotBuffer(len(self.groups) + 2, max(self.capacity, len(snapshot)))
        self.buffer.fill(snapshot.times, np.vstack(columns) if columns else np.zeros((0, 0)))
        self._last_capacity = int(columns[-1][-1]) if len(snapshot) else 0
        if self.cursor_index is not None and self.cursor_index >= len(self.buffer):
            self.cursor_index = None
        self.redraw()

    def _first_drawn(self) -> int:
        """Live and running, only the samples in the time window (and one to its left) go
        to the curves: with a day of history, handing pyqtgraph all 86,400 points every
        second cost 3 ms of setData (bounds, clipping) for 300 points on screen. Paused
        or replaying, everything, so that panning shows the past."""
        times = self.buffer.times
        if self.replaying or self.paused or not len(times):
            return 0
        start, _ = self._x_range(float(times[-1]))
        return max(int(np.searchsorted(times, start)) - 1, 0)

    def _curve_shown(self, curve: pg.PlotDataItem, column: int) -> None:
        if curve.isVisible():
            first = self._first_drawn()
            curve.setData(self.buffer.times[first:], self.buffer.column(column)[first:])

    def redraw(self) -> None:
        times = self.buffer.times
        first = self._first_drawn()
        self._thin(bool(first == 0 and (self.replaying or self.paused))
                   or len(times) - first > max(self.plot_widget.width(), 100))
        for i, curve in enumerate(self.curves):
            if curve.isVisible():
                curve.set_live_data(times[first:], self.buffer.column(i)[first:])
        self.ports_curve.set_live_data(times[first:], self.buffer.column(len(self.groups))[first:])
        self._update_limit_line()
        if len(times):
            self._follow(float(times[-1]))
            if not self.cursor_line.isVisible():
                self._show_resting_readout()
        elif self.replaying:
            self._follow(time.time())

    def _update_limit_line(self) -> None:
        capacity = self._last_capacity
        if self.limit_line.isVisible() != (capacity > 0):
            self.limit_line.setVisible(capacity > 0)
        if capacity <= 0:
            self.limit_in_view = False
            return
        if self.limit_line.value() != capacity:
            self.limit_line.setValue(capacity)
        held = self.buffer.column(len(self.groups))
        if self.replaying:  # judged over the whole recording: the view does not jump while scrubbing
            self.limit_in_view = bool(len(held)) and float(held.max()) >= SHOW_LIMIT_SHARE * capacity
            return
        self.limit_in_view = bool(len(held)) and float(held[-1]) >= SHOW_LIMIT_SHARE * capacity

    def _x_range(self, newest: float) -> tuple[float, float]:
        """Live: the last `window_s` seconds and a step of LIVE_STEP_SHARE on the right,
        where the newest samples come in; once the newest reaches the right edge, the
        view moves by a step. Moving the view every sample re-lays out the time axis
        and every item drawn over the view each second, and repaints the axes and
        legend (~2 ms a second of the GUI thread, offscreen); in steps, a second between
        them repaints only the curves (the view moves every 6 s at 5 min, every 72 s at
        1 h). Replay: the whole recording, or a window around the cursor that stays put
        while the cursor moves inside it."""
        times = self.buffer.times
        if not self.replaying or not len(times):
            step = self.window_s * LIVE_STEP_SHARE
            right = self._live_right
            if right is None or right[0] != self.window_s or not right[1] - step <= newest <= right[1]:
                right = self._live_right = (self.window_s, newest + step)
            return right[1] - self.window_s - step, right[1]
        first, last = float(times[0]), float(times[-1])
        span = max(last - first, 1.0)
        if self.show_whole or self.window_s >= span:
            return first - span * 0.01, last + span * 0.01
        cursor = float(times[self.cursor_index]) if self.cursor_index is not None else last
        (left, right), _ = self.view_box.viewRange()
        if abs((right - left) - self.window_s) < 1e-6 * self.window_s and left <= cursor <= right:
            return left, right
        start = min(max(cursor - self.window_s / 2, first), last - self.window_s)
        return start, start + self.window_s

    def _follow(self, newest: float) -> None:
        """Set the x range (see _x_range), y from 0 to above the highest visible value
        (see _y_top); the view is left alone when it already shows that."""
        start, end = self._x_range(newest)
        times = self.buffer.times
        first = int(np.searchsorted(times, start)) if len(times) else 0
        stop = int(np.searchsorted(times, end, side="right")) if len(times) else 0
        top = 0.0
        visible = [(c, i) for i, c in enumerate(self.curves)] + [(self.ports_curve, len(self.groups))]
        for curve, column in visible:
            if curve.isVisible() and first < stop:
                top = max(top, float(self.buffer.column(column)[first:stop].max()))
        if self.limit_in_view:
            top = max(top, float(self._last_capacity))
        # Head-room for the capacity label above its line, in pixels (a share of the range
        # would cut the label off in a short plot); never a zero range.
        label_share = min(LIMIT_LABEL_PX / max(self.view_box.height(), 1.0), 0.4)
        needed = max(top / (1.0 - label_share), 5.0)
        self._antialias(stop - first <= max(self.plot_widget.width(), 100) // ANTIALIAS_PIXELS_PER_SAMPLE)
        (left, right), (bottom, shown_top) = self.view_box.viewRange()
        top = self._y_top(needed, shown_top if bottom == 0.0 else None)
        if (left, right, top) != (start, end, shown_top) or bottom != 0.0:
            self.view_box.setRange(xRange=(start, end), yRange=(0.0, top), padding=0)
        # pyqtgraph defers a new transform (a new range, or a resize) to the paint, where
        # applying it asks for a second paint; applied now (nothing to do between two
        # steps), one paint per sample.
        self.view_box.updateMatrix()

    def _y_top(self, needed: float, shown: float | None) -> float:
        """The top of the count axis: live, the one shown while it is 100-125% of what
        is needed, else 110% of it (counts that wobble by a few sockets a second would
        otherwise re-lay out the count axis every second); replaying, what is needed."""
        if self.replaying:
            return needed
        if shown is not None and needed <= shown <= needed * Y_SLACK_MAX:
            return shown
        return needed * Y_HEADROOM

    def _thin(self, thin: bool) -> None:
        """Clip to view and peak downsampling only where they can do something: paused or
        replaying (the whole history, to pan over) or more samples in the window than
        pixels. Live, the curves are handed the window's samples alone (_first_drawn), and
        with both on pyqtgraph recomputes every curve again when the view moves, every
        sample, to clip what is already clipped."""
        if thin == self._thinned:
            return
        self._thinned = thin
        for curve in self.curves + [self.ports_curve]:
            curve.setClipToView(thin)
            curve.setDownsampling(auto=thin, method="peak")

    def _antialias(self, smooth: bool) -> None:
        """Antialiased curves only while samples in view are sparse (at least
        ANTIALIAS_PIXELS_PER_SAMPLE pixels apart): denser than that, smoothing is hardly
        visible and costs several times as much (a day in view: 0.61 s a paint antialiased,
        0.06 s not; an hour: 0.14 s and 0.03 s; 5 min of jittery curves at 1280x800:
        38 ms and 8 ms, every second)."""
        if smooth == self._antialiased:
            return
        self._antialiased = smooth
        for curve in self.curves + [self.ports_curve]:
            curve.opts["antialias"] = smooth
            if curve.isVisible():
                curve.updateItems(styleUpdate=True)

    # -- controls ---------------------------------------------------------------------
    def set_window(self, seconds: int) -> None:
        self.window_s = int(seconds)
        for action in self.window_actions.actions():
            if action.data() == self.window_s and not action.isChecked():
                action.setChecked(True)
        self.show_whole = False
        self.whole_action.setChecked(False)
        self._refollow()
        self.window_changed.emit(self.window_s)

    def set_whole(self, whole: bool) -> None:
        """Replay: show the whole recording (True) or the chosen window around the cursor."""
        self.show_whole = whole
        self.whole_action.setChecked(whole)
        for action in self.window_actions.actions():
            action.setChecked(not whole and action.data() == self.window_s)
        self._refollow()

    def _refollow(self) -> None:
        if not self.replaying and not self.paused:
            self.redraw()  # a wider window needs the samples the curves were not given
            return
        times = self.buffer.times
        self._follow(float(times[-1]) if len(times) else time.time())

    # -- replay ---------------------------------------------------------------------------
    def set_replaying(self, replaying: bool) -> None:
        """Replay shows a fixed recording: the draggable time cursor and the "Whole
        recording" choice appear; live, they go away and the view follows the newest sample."""
        self.replaying = replaying
        # A replay's curves stay put while the cursor moves over them: drawn once into a
        # pixmap, each cursor step is a blit (a day in view: 19 ms a step instead of 70).
        # Live curves change every sample, so there a cache would only add a copy.
        mode = (QGraphicsItem.CacheMode.DeviceCoordinateCache if replaying
                else QGraphicsItem.CacheMode.NoCache)
        for curve in self.curves + [self.ports_curve]:
            curve.curve.setCacheMode(mode)
        self.whole_action.setVisible(replaying)
        self.whole_button.setVisible(replaying)
        self.replay_line.setVisible(False)
        self.cursor_index = None
        if replaying:
            self.set_paused(False)
        self.pause_action.setEnabled(not replaying)
        if not replaying and self.show_whole:
            self.set_window(self.window_s)

    def set_replay_cursor(self, index: int) -> None:
        """Put the time cursor on buffer row `index` (the sample the tables show)."""
        times = self.buffer.times
        if not self.replaying or not 0 <= index < len(times):
            return
        self.cursor_index = index
        self._moving_cursor = True
        try:
            self.replay_line.setValue(float(times[index]))
        finally:
            self._moving_cursor = False
        self.replay_line.setVisible(True)
        (left, right), _ = self.view_box.viewRange()
        if not left <= float(times[index]) <= right:
            self._refollow()
        if not self.cursor_line.isVisible():
            self._show_resting_readout()

    def _replay_line_moved(self) -> None:
        if self._moving_cursor or not self.replaying:
            return
        index = self.buffer.nearest(float(self.replay_line.value()))
        if index is not None:
            self.cursor_moved.emit(index)

    def _on_mouse_clicked(self, event: object) -> None:
        """Replay: a click on the plot moves the time cursor there."""
        if not self.replaying or not len(self.buffer):
            return
        if event.button() != Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            return
        pos = event.scenePos()  # type: ignore[attr-defined]
        if not self.view_box.sceneBoundingRect().contains(pos):
            return
        index = self.buffer.nearest(float(self.view_box.mapSceneToView(pos).x()))
        if index is not None:
            self.cursor_moved.emit(index)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        self.pause_action.setText("Resume" if paused else "Pause")
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)
        self.view_box.setMouseEnabled(x=True, y=paused)
        self.redraw()  # paused: the whole history, to pan over; running: the window again
        self.paused_changed.emit(paused)

    # -- hover read-out ---------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.plot_widget and event.type() == QEvent.Type.Leave:
            self.cursor_line.setVisible(False)
            if len(self.buffer):
                self._show_resting_readout()
        return super().eventFilter(watched, event)

    def _on_mouse_moved(self, event: tuple[QPointF]) -> None:
        pos = event[0]
        if not self.plot_item.sceneBoundingRect().contains(pos) or not len(self.buffer):
            self.cursor_line.setVisible(False)
            if len(self.buffer):
                self._show_resting_readout()
            return
        x = float(self.view_box.mapSceneToView(pos).x())
        self.show_readout_at(x)

    def show_readout_at(self, timestamp: float) -> None:
        index = self.buffer.nearest(timestamp)
        if index is None:
            return
        self.cursor_line.setValue(float(self.buffer.times[index]))
        self.cursor_line.setVisible(True)
        self._show_readout(index, now=False)

    def _show_resting_readout(self) -> None:
        """With the mouse away: the newest sample, or the replay cursor's."""
        if self.replaying and self.cursor_index is not None:
            self._show_readout(self.cursor_index, now=False)
        elif len(self.buffer):
            self._show_readout(len(self.buffer) - 1, now=not self.replaying)

    def _show_readout(self, index: int, now: bool) -> None:
        t = float(self.buffer.times[index])
        # A replay may span days: the date tells them apart.
        when = time.strftime("%Y-%m-%d %H:%M:%S" if self.replaying else "%H:%M:%S", time.localtime(t))
        parts = [(group.colour, f"{group.label.split(' (')[0]} {self.buffer.column(i)[index]:,.0f}")
                 for i, group in enumerate(self.groups)]
        held = self.buffer.column(len(self.groups))[index]
        capacity = self.buffer.column(len(self.groups) + 1)[index]
        parts.append((PORTS_HELD_COLOUR, f"ports held {held:,.0f} of {capacity:,.0f}"))
        self.readout.set_values(f"{'now' if now else 'at'} {when}", parts)

    def restore_settings(self, settings: QSettings) -> None:
        """The plot's own group: the time window shown."""
        window = settings.value("plot/window_s")
        try:
            if window is not None:
                self.set_window(int(str(window)))
        except ValueError:
            pass  # a hand-edited setting: keep the default window

    def save_settings(self, settings: QSettings) -> None:
        settings.setValue("plot/window_s", self.window_s)

    def values_at(self, index: int) -> dict[str, float]:
        """The plotted values at one buffer row, by legend label (for tests and reports)."""
        row = {g.label: float(self.buffer.column(i)[index]) for i, g in enumerate(self.groups)}
        row[PORTS_HELD_LABEL] = float(self.buffer.column(len(self.groups))[index])
        return row
