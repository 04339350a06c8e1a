"""The plot's columns: preallocated, appended in place (pyqtgraph's long-running practice)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PlotBuffer:
    """Preallocated, chronological columns with amortised shifting: appends write in
    place; when the slack runs out the newest `capacity` rows move to the front once."""

    def __init__(self, columns: int, capacity: int = 86_400, slack: int | None = None) -> None:
        self.capacity = capacity
        self.slack = slack if slack is not None else max(capacity // 8, 1)
        size = capacity + self.slack
        self._times = np.zeros(size, dtype=np.float64)
        self._values = np.zeros((columns, size), dtype=np.float64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, timestamp: float, values: Sequence[float]) -> None:
        if self._end == len(self._times):
            keep = self.capacity - 1
            src = slice(self._end - keep, self._end)
            self._times[:keep] = self._times[src]
            self._values[:, :keep] = self._values[:, src]
            self._start, self._end = 0, keep
        self._times[self._end] = timestamp
        self._values[:, self._end] = values
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def clear(self) -> None:
        self._start = self._end = 0

    def fill(self, times: np.ndarray, values: np.ndarray) -> None:
        """Replace the contents with `times` and `values` (columns x rows) in one copy;
        at most the newest `capacity` rows are kept."""
        keep = min(len(times), self.capacity)
        self._times[:keep] = times[len(times) - keep:]
        self._values[:, :keep] = values[:, len(times) - keep:]
        self._start, self._end = 0, keep

    @property
    def times(self) -> np.ndarray:
        """A view (no copy): valid until the next append."""
        return self._times[self._start:self._end]

    def column(self, index: int) -> np.ndarray:
        return self._values[index, self._start:self._end]

    def nearest(self, timestamp: float) -> int | None:
        times = self.times
        if not len(times):
            return None
        i = int(np.searchsorted(times, timestamp))
        if i >= len(times):
            return len(times) - 1
        if i > 0 and timestamp - times[i - 1] < times[i] - timestamp:
            return i - 1
        return i
