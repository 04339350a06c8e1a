"""The pace and the cuts of the TIME_WAIT slices (pure bookkeeping, explicit clock):
after the first read one slice a read at a steady 1 Hz, each renewed every REFRESH
seconds; everything at a slow pace; cuts that follow where the rows are."""

from __future__ import annotations

import numpy as np

from core.time_wait_slices import KEY_END, SLICES, TimeWaitSlices, balanced_cuts

RANGE = (32768, 60999)


def _keys(lports: np.ndarray, rports: np.ndarray) -> np.ndarray:
    return (lports.astype(np.uint32) << np.uint32(16)) | rports.astype(np.uint32)


def _run(slices: TimeWaitSlices, times: list[float], keys: np.ndarray) -> list[list[int]]:
    """Which slices each read lists, each listing reporting the keys in its range."""
    listed = []
    for now in times:
        due = slices.due(now)
        ranges = slices.ranges()
        parts = [keys[(keys >= ranges[i][0]) & (keys < ranges[i][1])] for i in due]
        slices.listed(due, parts, now)
        listed.append(due)
    return listed


def test_one_slice_a_read_at_a_steady_pace_each_renewed_every_refresh() -> None:
    rng = np.random.default_rng(3)
    keys = _keys(rng.integers(*RANGE, 50_000), np.full(50_000, 443))
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    # 1 Hz with a few ms of jitter either way, for two minutes.
    times = [i + float(rng.uniform(-0.02, 0.02)) for i in range(120)]
    listed = _run(slices, times, keys)
    assert listed[0] == list(range(SLICES))  # the first read lists everything
    assert all(len(due) == 1 for due in listed[1:])
    last_seen: dict[int, float] = {}
    gaps = []
    for now, due in zip(times[1:], listed[1:], strict=True):
        for i in due:
            if i in last_seen:
                gaps.append(now - last_seen[i])
            last_seen[i] = now
    assert len(last_seen) == SLICES and min(gaps) >= 4.9 and max(gaps) <= 5.1


def test_every_slice_at_every_read_at_a_slow_pace_and_everything_on_request() -> None:
    keys = _keys(np.arange(33000, 60000, 3), np.full(9000, 80))
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    listed = _run(slices, [0.0, 15.0, 30.0], keys)
    # The first read lists everything in SLICES pieces; 9,000 rows are then one slice.
    assert listed == [list(range(SLICES)), [0], [0]]
    slices.request_everything()
    assert _run(slices, [31.0], keys) == [[0]]


def test_cuts_split_a_servers_single_port_by_remote_port() -> None:
    """A web server's TIME_WAIT: all on local port 443, clients' ports all over."""
    rng = np.random.default_rng(5)
    keys = _keys(np.full(40_000, 443), rng.integers(1024, 65536, 40_000))
    cuts = balanced_cuts(keys)
    assert cuts[0] == 0 and cuts[-1] == KEY_END and (np.diff(cuts) > 0).all()
    sizes = np.histogram(keys.astype(np.int64), bins=cuts)[0]
    assert len(sizes) == SLICES and sizes.max() <= 1.05 * len(keys) / SLICES


def test_cuts_follow_the_rows_when_the_traffic_moves() -> None:
    """Starting from cuts of the ephemeral range; then all TIME_WAIT on one local port
    (the server's): after one round the slices hold about as many rows each, and they
    still cover every key exactly once."""
    rng = np.random.default_rng(9)
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    outbound = _keys(rng.integers(*RANGE, 30_000), np.full(30_000, 443))
    _run(slices, [0.0], outbound)
    server = _keys(np.full(30_000, 8443), rng.integers(1024, 65536, 30_000))
    _run(slices, [float(t) for t in range(1, 12)], server)
    ranges = slices.ranges()
    assert ranges[0][0] == 0 and ranges[-1][1] == KEY_END
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    sizes = [int(((server >= lo) & (server < hi)).sum()) for lo, hi in ranges]
    assert len(ranges) == 3 and max(sizes) <= 1.5 * len(server) / len(ranges)
    # Renewing goes on one slice a read after the cuts moved.
    assert all(len(due) <= 1 for due in _run(slices, [float(t) for t in range(12, 30)], server))


def test_a_bigger_table_is_cut_into_more_slices_at_the_same_pace() -> None:
    """100k rows: more than SLICES slices, each about SLICE_ROWS at most, still one a
    read at 1 Hz (each renewed every cycle: one second a slice)."""
    from core.time_wait_slices import SLICE_ROWS

    rng = np.random.default_rng(11)
    keys = _keys(rng.integers(*RANGE, 100_000), rng.choice([80, 443, 8080], 100_000))
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    times = [float(t) for t in range(40)]
    listed = _run(slices, times, keys)
    ranges = slices.ranges()
    sizes = [int(((keys >= lo) & (keys < hi)).sum()) for lo, hi in ranges]
    assert len(ranges) > SLICES and max(sizes) <= 1.1 * SLICE_ROWS
    assert all(len(due) <= 1 for due in listed[2:])
    assert slices.cycle_seconds == len(ranges)
    assert {i for due in listed[-len(ranges):] for i in due} == set(range(len(ranges)))


def test_new_settings_renew_every_slice_within_a_few_reads_a_few_at_a_time() -> None:
    rng = np.random.default_rng(13)
    keys = _keys(rng.integers(*RANGE, 100_000), np.full(100_000, 443))
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    _run(slices, [float(t) for t in range(20)], keys)
    n = len(slices.ranges())
    slices.renew_soon(per_read=2)
    listed = _run(slices, [float(t) for t in range(20, 30)], keys)
    reads_to_renew = -(-n // 3)
    assert all(len(due) <= 3 for due in listed)
    assert {i for due in listed[:reads_to_renew] for i in due} == set(range(n))
    assert all(len(due) <= 1 for due in listed[reads_to_renew + 1:])


def test_a_small_table_is_one_slice_listed_every_refresh() -> None:
    """10k rows: one slice, listed every REFRESH seconds at 1 Hz (not a slice a read:
    a listing's fixed costs made that dearer than one whole listing every 5 s)."""
    rng = np.random.default_rng(17)
    keys = _keys(rng.integers(*RANGE, 10_000), np.full(10_000, 443))
    slices = TimeWaitSlices(RANGE, refresh_seconds=5.0)
    times = [i + float(rng.uniform(-0.02, 0.02)) for i in range(31)]
    listed = _run(slices, times, keys)
    assert slices.ranges() == [(0, KEY_END)]
    reads = [t for t, due in zip(times[1:], listed[1:], strict=True) if due]
    assert all(due in ([], [0]) for due in listed[1:])
    assert len(reads) >= 5 and all(4.9 <= b - a <= 5.1 for a, b in zip(reads, reads[1:], strict=False))
