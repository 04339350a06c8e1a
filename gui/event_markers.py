"""Events on the plot: a labelled vertical line where a setting changed, and where an
outbound test's outcome turned (the first failure, the first success after failures),
so a drop of the curves has its explanation beside it. Every test result stays in the
record (recordings, the report); only the turns are drawn, or a canary testing every
10 s would hide the curves behind its lines.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyqtgraph as pg
from PySide6.QtCore import Qt

from core.model import Event
from core.recording import parse_time

MAX_MARKERS = 200  # the oldest go first: each line costs a little in every repaint
SETTING_COLOUR = "#6a1b9a"
FAILED_COLOUR = "#c62828"
OK_COLOUR = "#2e7d32"


def marker_label(event: Event) -> str:
    if event.kind == "setting":
        name = str(event.details.get("name", "setting")).rsplit(".", 1)[-1]
        old, new = event.details.get("old"), event.details.get("new")
        return f"{name} {_short(old)}→{_short(new)}"
    if event.kind == "probe":
        return "test connected" if event.details.get("ok") else "test failed"
    return event.text[:30]


def _short(value: object) -> str:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}-{value[1]}"
    return "unset" if value is None else str(value)


class EventMarkers:
    """The markers of one plot; `add` for new events, `clear` when the plot is reloaded."""

    def __init__(self, plot_item: pg.PlotItem) -> None:
        self.plot_item = plot_item
        self.lines: list[tuple[Event, pg.InfiniteLine]] = []
        self._last_ok: dict[str, bool] = {}  # per test target: the outcome drawn last

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if event.kind == "probe":
                target, ok = str(event.details.get("target", "")), bool(event.details.get("ok"))
                turned = self._last_ok.get(target, True) != ok
                self._last_ok[target] = ok
                if not turned:
                    continue
                colour = OK_COLOUR if ok else FAILED_COLOUR
            else:
                colour = SETTING_COLOUR
            try:
                when = parse_time(event.time_iso)
            except (TypeError, ValueError):
                continue
            line = pg.InfiniteLine(
                pos=when, angle=90, movable=False, pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                label=marker_label(event),
                # Upright, ending at the line (live, the newest events are at the right
                # edge), below the capacity label, on a light ground over the curves.
                labelOpts={"position": 0.9, "color": colour, "anchors": [(1, 0), (1, 0)],
                           "fill": (255, 255, 255, 210)})
            line.setToolTip(event.text)
            line.setZValue(5)
            self.plot_item.addItem(line, ignoreBounds=True)
            self.lines.append((event, line))
        while len(self.lines) > MAX_MARKERS:
            _, line = self.lines.pop(0)
            self.plot_item.removeItem(line)

    def clear(self) -> None:
        for _, line in self.lines:
            self.plot_item.removeItem(line)
        self.lines.clear()
        self._last_ok.clear()

    def labels(self) -> list[str]:
        return [marker_label(event) for event, _ in self.lines]
