"""The plot's axes: pyqtgraph's, without redoing every second what did not change.

The live view moves by one sample every second, so both axes get a new range every
second. The time axis then picks its zoom level again (measuring six example labels
with the font) and formats every tick label again with strftime, although the window's
span, the axis length and most tick times are the same as a second before: both are
remembered. Each new range also re-sets the axis title (an HTML layout and a size
adjustment of the title item, for the SI prefix pyqtgraph may add): only when its text
changes here. What is drawn is unchanged."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg

MAX_REMEMBERED_LABELS = 4096  # a day of minute ticks, several zoom levels: then start over


class _TitleOnChange:
    """Re-lays out the axis title only when its text changes (pyqtgraph's _updateLabel
    does it on every range; the picture is still redrawn, as there)."""

    _title_shown: str | None = None

    def _updateLabel(self) -> None:  # noqa: N802 - pyqtgraph's (private) name, 0.14
        axis: Any = self
        title = axis.labelString()
        if title != self._title_shown:
            self._title_shown = title
            super()._updateLabel()  # type: ignore[misc]
            return
        axis.picture = None
        axis.update()


class CountAxis(_TitleOnChange, pg.AxisItem):
    """The y axis (sockets / ports)."""


class TimeAxis(_TitleOnChange, pg.DateAxisItem):
    """The x axis: local date and time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._levels: dict[tuple[float, int, int], tuple[Any, float]] = {}
        self._labels: dict[tuple[int, float, float], str] = {}

    def setZoomLevelForDensity(self, density: float) -> None:  # noqa: N802 - pyqtgraph's name
        # The choice depends on the density and on the labels' font (measured with it).
        metrics = self.fontMetrics
        key = (density, metrics.height(), metrics.averageCharWidth())
        known = self._levels.get(key)
        if known is None:
            super().setZoomLevelForDensity(density)
            if len(self._levels) > MAX_REMEMBERED_LABELS:
                self._levels.clear()
            self._levels[key] = (self.zoomLevel, self.minSpacing)
            return
        self.zoomLevel, self.minSpacing = known
        self.zoomLevel.utcOffset = self.utcOffset

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        level = id(self.zoomLevel)
        labels = self._labels
        missing = [v for v in values if (level, spacing, v) not in labels]
        if missing:
            if len(labels) + len(missing) > MAX_REMEMBERED_LABELS:
                labels.clear()
            for value, text in zip(missing, super().tickStrings(missing, scale, spacing), strict=True):
                labels[(level, spacing, value)] = text
        return [labels[(level, spacing, v)] for v in values]
