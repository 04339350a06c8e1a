"""Bounded, preallocated ring buffer of the per-state series and pressure.

One float64 time column and float32 value columns: 24 h at 1 Hz (86,400 rows x 18
series) is about 6.9 MB, allocated once, so a day-long session never grows.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import numpy as np

from core.model import STATE_NAMES, Sample

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXTRA_SERIES: tuple[str, ...] = (
    "pressure",
    "capacity",
    "in_use",
    "active_opens_per_s",
    "attempt_fails_per_s",
    "time_wait_unattributed",
    "sample_ms",
)
SERIES_NAMES: tuple[str, ...] = STATE_NAMES + EXTRA_SERIES
DAY_AT_1HZ = 86_400
CSV_TIME_COLUMNS: tuple[str, ...] = ("time", "unix_time")


def sample_values(sample: Sample) -> list[float]:
    """The row a Sample contributes, in SERIES_NAMES order."""
    return [float(sample.states.get(name, 0)) for name in STATE_NAMES] + [
        sample.ports.pressure,
        float(sample.ports.capacity),
        float(sample.ports.in_use),
        sample.rates.active_opens_per_s,
        sample.rates.attempt_fails_per_s,
        float(sample.time_wait_unattributed),
        sample.sample_ms,
    ]


@dataclass(frozen=True)
class HistorySnapshot:
    """A read-only, chronological copy: safe to hand to another thread or a report."""

    times: np.ndarray  # float64 seconds since the epoch
    values: np.ndarray  # float32, shape (len, len(SERIES_NAMES))

    def series(self, name: str) -> np.ndarray:
        return self.values[:, SERIES_NAMES.index(name)]

    def __len__(self) -> int:
        return len(self.times)

    def write_csv(self, out: IO[str]) -> None:
        """time (ISO-8601, local time with its offset: what a spreadsheet or a person reads),
        unix_time (seconds since the epoch: what a script joins on), then the series."""
        writer = csv.writer(out)
        writer.writerow(CSV_TIME_COLUMNS + SERIES_NAMES)
        for t, row in zip(self.times.tolist(), self.values.tolist(), strict=True):
            writer.writerow([iso_time(t), f"{t:.3f}"] + [_compact(v) for v in row])

    def to_csv_text(self) -> str:
        buffer = io.StringIO()
        self.write_csv(buffer)
        return buffer.getvalue()


def iso_time(timestamp: float) -> str:
    """1764474076.25 -> "2026-11-30T03:41:16.250+00:00" (local time, with its offset).

    Never raises for a finite timestamp: where the OS cannot give local time (Windows'
    localtime() refuses times before about a day after the epoch, OSError 22) it is UTC,
    still with its offset; beyond datetime's years 1-9999 it is empty (unix_time still
    carries the moment)."""
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        try:
            moment = EPOCH + timedelta(seconds=timestamp)
        except OverflowError:
            return ""
    with contextlib.suppress(OverflowError, OSError, ValueError):  # else UTC it stays
        moment = moment.astimezone()
    return moment.isoformat(timespec="milliseconds")


def _compact(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.4g}"


class History:
    """Fixed-capacity ring; the oldest row is overwritten when full."""

    def __init__(self, capacity: int = DAY_AT_1HZ) -> None:
        if capacity < 1:
            raise ValueError("history capacity must be at least 1")
        self.capacity = capacity
        self._times = np.zeros(capacity, dtype=np.float64)
        self._values = np.zeros((capacity, len(SERIES_NAMES)), dtype=np.float32)
        self._next = 0  # slot the next row goes into
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return int(self._times.nbytes + self._values.nbytes)

    def append(self, sample: Sample) -> None:
        self.append_row(sample.timestamp, sample_values(sample))

    def append_row(self, timestamp: float, values: list[float] | np.ndarray) -> None:
        self._times[self._next] = timestamp
        self._values[self._next] = values
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def clear(self) -> None:
        self._next = 0
        self._count = 0

    def _order(self) -> np.ndarray | slice:
        if self._count < self.capacity:
            return slice(0, self._count)
        return np.r_[self._next:self.capacity, 0:self._next]

    def times(self) -> np.ndarray:
        return self._times[self._order()].copy()

    def series(self, name: str) -> np.ndarray:
        return self._values[self._order(), SERIES_NAMES.index(name)].copy()

    def snapshot(self, seconds: float | None = None) -> HistorySnapshot:
        """Chronological copy, optionally only the last `seconds` before the newest row."""
        order = self._order()
        times = self._times[order]
        values = self._values[order]
        if seconds is not None and len(times):
            start = int(np.searchsorted(times, times[-1] - seconds, side="left"))
            times, values = times[start:], values[start:]
        times = times.copy()
        values = values.copy()
        times.flags.writeable = False
        values.flags.writeable = False
        return HistorySnapshot(times, values)

    def latest(self) -> tuple[float, np.ndarray] | None:
        if not self._count:
            return None
        last = (self._next - 1) % self.capacity
        return float(self._times[last]), self._values[last].copy()

    def rows(self) -> Iterator[tuple[float, np.ndarray]]:
        snap = self.snapshot()
        yield from zip(snap.times.tolist(), snap.values, strict=True)

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as out:
            self.snapshot().write_csv(out)
