"""Which slice of the TIME_WAIT table a read lists (Linux, above a few thousand).

Listing 100k TIME_WAIT tuples in one read cost 2-4x a read without them, and a whole
listing every few seconds made those reads the slowest of all. Instead the table is cut
into ranges of port keys (local port << 16 | remote port; the kernel filters by them:
netlink_diag.port_key_filter) of about SLICE_ROWS rows each, and each slice is renewed
every REFRESH seconds, in turn: above SLICES * SLICE_ROWS rows there are more slices
and they are renewed one a REFRESH / SLICES seconds (a cycle grows: a read's work does
not). Up to WHOLE_ROWS the whole of TIME_WAIT is one slice, listed every REFRESH
seconds: at 10k, five slices of 2k a read cost the sampler ~4 ms a second more than
one listing every 5 s (fixed costs of a listing). The cuts follow the keys last listed
so the slices hold about as many rows each: a server's TIME_WAIT all on one local port
is cut by remote port. Pure bookkeeping: no I/O, no clock of its own.
"""

from __future__ import annotations

import numpy as np

KEY_END = 1 << 32
SLICES = 5  # slices renewed per REFRESH (and the first listing's pieces, for memory)
SLICE_ROWS = 12_000  # a slice's rows at most (about)
WHOLE_ROWS = 20_000  # up to this many, one slice
MAX_SLICES = 40
# A slice holding more than this share of the mean is a sign the traffic moved: cut anew.
UNBALANCED = 1.5
# Below this many rows in the largest slice, balance does not matter.
BALANCE_MIN_ROWS = 2_000


def port_keys(rows: np.ndarray) -> np.ndarray:
    """Port key per SOCKET_DTYPE row: local port << 16 | remote port."""
    return (rows["lport"].astype(np.uint32) << np.uint32(16)) | rows["rport"].astype(np.uint32)


def even_cuts(dynamic_range: tuple[int, int], count: int = SLICES) -> np.ndarray:
    """count + 1 bounds (0 ... KEY_END) cutting the ephemeral range's local ports evenly:
    before anything was listed, where outbound TIME_WAIT is."""
    lo, hi = dynamic_range
    inner = [((lo + (hi - lo + 1) * i // count) << 16) for i in range(1, count)]
    return np.array(sorted({0, *[k for k in inner if 0 < k < KEY_END], KEY_END}), dtype=np.int64)


def slice_count(rows: int, slice_rows: int = SLICE_ROWS, whole_rows: int = WHOLE_ROWS) -> int:
    if rows <= whole_rows:
        return 1
    return int(min(max(2, -(-rows // slice_rows)), MAX_SLICES))


def balanced_cuts(keys: np.ndarray, count: int = SLICES) -> np.ndarray:
    """Bounds giving each slice about as many of these keys (fewer slices where many
    rows share one key)."""
    if not len(keys):
        return np.array([0, KEY_END], dtype=np.int64)
    ordered = np.sort(keys.astype(np.int64))
    inner = ordered[[len(ordered) * i // count for i in range(1, count)]]
    return np.unique(np.concatenate([[0], inner[inner > 0], [KEY_END]]))


class TimeWaitSlices:
    def __init__(self, dynamic_range: tuple[int, int], refresh_seconds: float, count: int = SLICES, *,
                 slice_rows: int = SLICE_ROWS, whole_rows: int = WHOLE_ROWS) -> None:
        self.refresh_seconds = refresh_seconds
        self.slice_rows = slice_rows
        self.whole_rows = whole_rows
        self.count = count
        self.cuts = even_cuts(dynamic_range, count)
        self._listed_at: list[float | None] = [None] * (len(self.cuts) - 1)
        self._keys: list[np.ndarray] = [np.zeros(0, dtype=np.uint32) for _ in self._listed_at]
        self._everything = True
        self._soon: set[int] = set()  # slices to renew before their turn, a few a read
        self._per_read = 0

    def ranges(self) -> list[tuple[int, int]]:
        cuts = self.cuts.tolist()
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def request_everything(self) -> None:
        """List every slice at the next read."""
        self._everything = True

    def renew_soon(self, per_read: int = 3) -> None:
        """Renew every slice within the next few reads, per_read + 1 a read counting the
        one whose turn it is (new settings: each read stays small, the cache is renewed
        in len / (per_read + 1) reads instead of a cycle)."""
        self._soon = set(range(len(self._listed_at)))
        self._per_read = per_read

    @property
    def cycle_seconds(self) -> float:
        """How often each slice is renewed at a steady pace: REFRESH up to SLICES slices,
        then longer (one slice a REFRESH / SLICES seconds)."""
        return self.refresh_seconds * max(len(self._listed_at), SLICES) / SLICES

    def due(self, now: float) -> list[int]:
        """The slices this read lists: all when asked; else the one listed longest ago
        once the others have had their turn (one a read at a steady pace), and any left
        two cycles (a slow pace: e.g. a read every 15 s lists them all)."""
        if self._everything:
            return list(range(len(self._listed_at)))
        ages = [np.inf if t is None else now - t for t in self._listed_at]
        stalest = int(np.argmax(ages))
        cycle = self.cycle_seconds
        due = {i for i, age in enumerate(ages) if age >= 2 * cycle}
        # Half a step (at most half a second: a read's jitter) short of a cycle.
        if ages[stalest] >= cycle - min(cycle / len(ages), 1.0) / 2:
            due.add(stalest)
        if self._soon and len(due) <= self._per_read:
            # Next to the slice whose turn it is (or the stalest one to renew): the
            # source lists contiguous slices in one dump.
            at = min(due) if due else max(self._soon, key=lambda i: ages[i])
            due.add(at)
            for i in sorted(self._soon - due, key=lambda i: (abs(i - at), i)):
                if len(due) > self._per_read:
                    break
                due.add(i)
        return sorted(due)

    def listed(self, slices: list[int], keys: list[np.ndarray], now: float) -> None:
        """These slices were listed now, with these port keys each. After a listing of
        everything the slices are dated as if listed one REFRESH/len apart, so from then
        on one comes due every REFRESH/len seconds; the cuts follow the keys when the
        slices are unbalanced."""
        for i, k in zip(slices, keys, strict=True):
            self._keys[i] = k
            self._listed_at[i] = now
            self._soon.discard(i)
        if self._everything and len(slices) == len(self._listed_at):
            self._everything = False
            self._stagger(now)
        self._rebalance(now)

    def listed_whole(self, keys: np.ndarray, now: float) -> None:
        """A read listed every TIME_WAIT row (a small table)."""
        self._set_cuts(balanced_cuts(keys, slice_count(len(keys), self.slice_rows, self.whole_rows)), keys)
        self._everything = False
        self._stagger(now)

    def _stagger(self, now: float) -> None:
        # Ages a step apart: the oldest comes due a step from now, the others one step
        # after each other (due half a step before a full cycle: never on the edge).
        n, cycle = len(self._listed_at), self.cycle_seconds
        self._listed_at = [now - cycle * i / n for i in range(n)]

    def _rebalance(self, now: float) -> None:
        """New cuts when a slice holds far more than its share, or the table grew or
        shrank past what the number of slices is for."""
        sizes = [len(k) for k in self._keys]
        count = slice_count(sum(sizes), self.slice_rows, self.whole_rows)
        n = len(sizes)
        small = max(sizes) < min(BALANCE_MIN_ROWS, self.slice_rows)
        balanced = small or max(sizes) <= UNBALANCED * sum(sizes) / n
        if balanced and (count == n or abs(count - n) <= 1 and max(sizes) <= self.slice_rows * UNBALANCED):
            return
        if any(t is None for t in self._listed_at):
            return
        oldest = [t for t in self._listed_at if t is not None]
        keys = np.concatenate(self._keys)
        cuts = balanced_cuts(keys, count)
        old_cuts = self.cuts
        self._set_cuts(cuts, keys)
        # A new slice is as old as the oldest listing of the old slices it overlaps.
        dated: list[float | None] = []
        for lo, hi in self.ranges():
            first = int(np.searchsorted(old_cuts, lo, side="right")) - 1
            last = int(np.searchsorted(old_cuts, hi, side="left"))
            dated.append(min(oldest[first:last]))
        self._listed_at = dated

    def _set_cuts(self, cuts: np.ndarray, keys: np.ndarray) -> None:
        self.cuts = cuts
        ordered = np.sort(keys.astype(np.uint32))
        at = np.searchsorted(ordered, np.minimum(cuts, KEY_END - 1).astype(np.uint32), side="left")
        at[-1] = len(ordered)
        self._keys = [ordered[a:b] for a, b in zip(at[:-1].tolist(), at[1:].tolist(), strict=True)]
        self._listed_at = [None] * (len(cuts) - 1)
        self._soon = set(range(len(self._listed_at))) if self._soon else set()
