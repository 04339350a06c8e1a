"""The ring buffer: order after wrapping, windows, CSV, and the 24 h memory bound."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import numpy as np
import pytest

from core.history import DAY_AT_1HZ, SERIES_NAMES, History, iso_time


def fill(history: History, n: int, start: float = 1000.0) -> None:
    for i in range(n):
        history.append_row(start + i, np.full(len(SERIES_NAMES), float(i)))


def test_a_day_at_1hz_is_preallocated_under_20_mb():
    history = History(DAY_AT_1HZ)
    assert history.nbytes < 20 * 2**20
    before = history.nbytes
    fill(history, 1000)
    assert history.nbytes == before  # never grows


def test_wrapping_keeps_the_newest_rows_in_order():
    history = History(5)
    fill(history, 12)
    assert len(history) == 5
    assert history.times().tolist() == [1007.0, 1008.0, 1009.0, 1010.0, 1011.0]
    assert history.series("TIME_WAIT").tolist() == [7, 8, 9, 10, 11]
    assert history.latest()[0] == 1011.0


def test_snapshot_window_and_read_only():
    history = History(100)
    fill(history, 50)
    snap = history.snapshot(seconds=10)
    assert snap.times[0] == 1039.0 and snap.times[-1] == 1049.0
    with pytest.raises(ValueError):
        snap.values[0, 0] = 1.0
    fill(history, 1, start=5000)  # later appends do not change an existing snapshot
    assert snap.times[-1] == 1049.0


def test_csv_has_a_header_and_one_row_per_sample():
    history = History(10)
    fill(history, 3)
    rows = list(csv.reader(io.StringIO(history.snapshot().to_csv_text())))
    assert rows[0] == ["time", "unix_time", *SERIES_NAMES]
    assert len(rows) == 4
    assert datetime.fromisoformat(rows[2][0]).timestamp() == 1001.0 and rows[2][1] == "1001.000"
    assert rows[2][SERIES_NAMES.index("TIME_WAIT") + 2] == "1"


@pytest.mark.parametrize("timestamp", [0.0, 1000.25, -86_400.5, 1_764_474_076.25])
def test_iso_time_names_the_same_moment_for_any_timestamp(timestamp: float):
    # Windows' localtime() refuses times near the epoch (OSError 22): UTC stands in there.
    shown = iso_time(timestamp)
    moment = datetime.fromisoformat(shown)
    assert moment.utcoffset() is not None and moment.timestamp() == timestamp


def test_iso_time_is_empty_beyond_the_calendar():
    assert iso_time(1e20) == "" and iso_time(-1e20) == ""


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        History(0)
