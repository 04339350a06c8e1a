"""The TIME_WAIT rows the Sampler keeps between the reads that list them.

At 100k TIME_WAIT sockets, listing and keying every tuple each second costs more than
everything else in a sample together (DESIGN.md "Measured"). A TIME_WAIT tuple never
changes and, on Linux, disappears on a known deadline (idiag_expires), so the reads
between two full listings leave TIME_WAIT out (LinuxSource) and the Sampler keeps the
rows of the listings here, sorted by deadline: a tick drops the expired prefix and
subtracts its counts from the totals taken at the listing, so a tick costs in
proportion to the rows that expired, not to the rows held. Above a few thousand
TIME_WAIT a listing covers one slice of the table (a range of port keys, local port
<< 16 | remote port: core.time_wait_slices) and replaces just the cached rows of that
slice, so no read lists them all.

Per row, what the listing worked out once: pool, remote endpoint, exact owner (from
the attribution memory), listener (inferred owner). Whether tcp_tw_reuse lets connect()
take a pool's TIME_WAIT over is the pool's (its rows share addresses), so it follows
the setting at every sample without listing anything again. TIME_WAIT created
since its slice was listed is only a count (sockstat tw minus the live cached rows); it
is spread over pools, endpoints and processes like the TIME_WAIT the listings found
young ("arrivals": younger than the arrival window, by the kernel's expiry), and what
it gives a process is labelled inferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.model import empty_table
from core.time_wait_slices import KEY_END

_NONE = -1


def apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """`total` split into integers proportional to weights (largest remainders)."""
    result = np.zeros(len(weights), dtype=np.int64)
    weight_sum = float(weights.sum()) if len(weights) else 0.0
    if total <= 0 or weight_sum <= 0:
        return result
    share = total * weights.astype(np.float64) / weight_sum
    result[:] = np.floor(share)
    left = total - int(result.sum())
    if left > 0:
        result[np.argsort(-(share - result), kind="stable")[:left]] += 1
    return result


@dataclass(frozen=True)
class TierCounts:
    """What the live TIME_WAIT rows (plus the pending count) add to one sample."""

    alive: int  # cached rows not yet expired
    pending: int  # TIME_WAIT counted by the kernel but created since the last listing
    exact: dict[int, int]  # pid -> exact TIME_WAIT (cached rows only)
    exact_pairs: dict[tuple[int, int], int]  # (pid, remote key) -> exact TIME_WAIT (cached rows)
    direct: dict[int, int]  # pid -> inferred TIME_WAIT on its listening port
    # (pid, remote key) -> pending TIME_WAIT credited like the arrivals that pid owned exactly
    pending_pairs: dict[tuple[int, int], int]
    rest_keys: np.ndarray  # remote keys of TIME_WAIT left for the talkers to claim
    rest_counts: np.ndarray
    pool_keys: np.ndarray  # per pool counted (outbound, in range)
    pool_rows: np.ndarray  # one SOCKET_DTYPE row per pool, for its label (and whether
    # tcp_tw_reuse lets connect() take its TIME_WAIT over: a pool's rows share addresses)
    pool_tw: np.ndarray
    remote_keys: np.ndarray  # per remote endpoint of outbound TIME_WAIT
    remote_rows: np.ndarray
    remote_tw: np.ndarray
    open_rate_by_pool: dict[int, float]  # new outbound tuples/s that ended in TIME_WAIT
    open_rate_by_pid: dict[int, float]  # of them, the ones with an exact owner


@dataclass
class _Totals:
    exact: np.ndarray
    pair: np.ndarray
    direct: np.ndarray
    rest: np.ndarray
    pool_tw: np.ndarray
    remote_tw: np.ndarray

    def minus(self, other: _Totals) -> _Totals:
        return _Totals(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return (self.exact, self.pair, self.direct, self.rest, self.pool_tw, self.remote_tw)


def _merge_keys(keys: np.ndarray, kept_index: np.ndarray, new_keys: np.ndarray, new_has: np.ndarray,
                labels: np.ndarray | None = None, new_rows: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A sorted key dictionary (with one label row per key) extended by new rows' keys
    and pruned of keys no row uses any more; returns it and every row's index in it
    (the kept rows' first, then the new rows'; -1 where a row has no key).

    Only the dictionary and the new rows' keys are sorted, never the kept rows: a listing
    that adds 10k rows to 100k kept ones costs in proportion to the 10k."""
    present = new_keys[new_has]
    uniq, first, inverse = np.unique(present, return_index=True, return_inverse=True)
    merged = np.union1d(keys, uniq)  # both already unique: small
    remap = np.searchsorted(merged, keys).astype(np.int32)
    index = np.full(len(kept_index) + len(new_keys), _NONE, dtype=np.int32)
    has_old = kept_index >= 0
    index[:len(kept_index)][has_old] = remap[kept_index[has_old]]
    uniq_at = np.searchsorted(merged, uniq).astype(np.int32)
    index[len(kept_index):][new_has] = uniq_at[inverse]
    merged_labels = None
    if labels is not None and new_rows is not None:
        merged_labels = np.empty(len(merged), dtype=labels.dtype)
        merged_labels[remap] = labels
        merged_labels[uniq_at] = new_rows[np.flatnonzero(new_has)[first]]
    used = np.bincount(index[index >= 0], minlength=len(merged)) > 0
    if not used.all():
        moved = (np.cumsum(used) - 1).astype(np.int32)
        index[index >= 0] = moved[index[index >= 0]]
        merged = merged[used]
        if merged_labels is not None:
            merged_labels = merged_labels[used]
    return merged, merged_labels, index


def _put(result: np.ndarray, where: np.ndarray, values: np.ndarray) -> None:
    """result[where] = values; structured rows are moved as plain bytes (numpy copies a
    structured element field by field: ~15x slower at 100k rows)."""
    if values.dtype.fields is None:
        result[where] = values
        return
    plain = f"V{values.dtype.itemsize}"
    result.view(plain)[where] = np.ascontiguousarray(values).view(plain)


class TimeWaitTier:
    """Rows are kept sorted by deadline; per row, indices into key dictionaries (pools,
    remote endpoints, pids) and flags, worked out once when the row was listed."""

    def __init__(self, keep_rows: bool = True) -> None:
        # Whole rows (48 bytes each) are kept only for alive_rows(); per-destination pools
        # (Linux) never read them back, and at 100k rows they were a tenth of the memory.
        self.keep_rows = keep_rows
        self._start = 0
        self.listed_at: float | None = None
        self._rows = empty_table()
        self._deadline = np.zeros(0, dtype=np.float64)
        self._port_key = np.zeros(0, dtype=np.uint32)  # local port << 16 | remote port
        self._pids = np.zeros(0, dtype=np.int64)
        self._pair_pids = np.zeros(0, dtype=np.int64)
        self._pair_rkeys = np.zeros(0, dtype=np.uint64)
        self._pool_keys = self._remote_keys = np.zeros(0, dtype=np.uint64)
        self._pool_rows = self._remote_rows = empty_table()
        self._exact = self._pair = self._direct = self._pool = self._remote = np.zeros(0, dtype=np.int32)
        self._rest = self._out_remote = np.zeros(0, dtype=bool)
        self._arrived = self._fresh = np.zeros(0, dtype=bool)
        self._window = 0.0
        self._totals = self._aggregate(0, 0)
        self._arrivals = self._aggregate(0, 0)
        self._arrival_count = 0
        self._rate_pool: dict[int, float] = {}
        self._rate_pid: dict[int, float] = {}

    @property
    def alive(self) -> int:
        return len(self._deadline) - self._start

    def alive_rows(self) -> np.ndarray:
        """The live cached rows as a table (for pools that need whole rows: Windows)."""
        if not self._has_rows():
            raise RuntimeError("TimeWaitTier(keep_rows=False) keeps no whole rows")
        return self._rows[self._start:]

    def _has_rows(self) -> bool:
        return len(self._rows) == len(self._deadline)

    def expires_left(self, now: float) -> np.ndarray:
        """Seconds each live cached row has left (for tests and diagnostics)."""
        return self._deadline[self._start:] - now

    # -- a listing ----------------------------------------------------------------------
    def rebuild(self, rows: np.ndarray, deadline: np.ndarray, now: float, *, window: float,
                pool_key: np.ndarray, remote_key: np.ndarray, counted: np.ndarray, out_remote: np.ndarray,
                exact_pid: np.ndarray, direct_pid: np.ndarray,
                arrival: np.ndarray, fresh: np.ndarray, conn_key: np.ndarray | None = None) -> None:
        """Replace the cache with a listing of every TIME_WAIT row.

        arrival: bool per row, created within the last `window` seconds; fresh: arrivals
        never seen as an outbound connection (new tuples, for the open rates);
        conn_key: the rows' 4-tuple keys (core.tuples.connection_keys; not kept)."""
        self._install(np.zeros(0, dtype=np.int64), rows, deadline, now, window=window, pool_key=pool_key,
                      remote_key=remote_key, counted=counted, out_remote=out_remote,
                      exact_pid=exact_pid, direct_pid=direct_pid, arrival=arrival, fresh=fresh,
                      conn_key=conn_key)

    def drop_range(self, lo: int, hi: int) -> None:
        """Forget the cached rows whose port key is in [lo, hi) (listed elsewhere now)."""
        live = self._port_key[self._start:]
        kept = np.flatnonzero((live < lo) | (live >= hi)) + self._start
        if len(kept) == len(live):
            return
        empty = np.zeros(0, dtype=bool)
        none = np.zeros(0, dtype=np.int32)
        self._install(kept, empty_table(), np.zeros(0), self.listed_at or 0.0, window=self._window,
                      pool_key=np.zeros(0, dtype=np.uint64), remote_key=np.zeros(0, dtype=np.uint64),
                      counted=empty, out_remote=empty, exact_pid=none, direct_pid=none,
                      arrival=empty, fresh=empty, conn_key=None)

    @property
    def arrival_count(self) -> int:
        return self._arrival_count

    def _install(self, kept: np.ndarray, rows: np.ndarray, deadline: np.ndarray, now: float, *, window: float,
                 pool_key: np.ndarray, remote_key: np.ndarray, counted: np.ndarray, out_remote: np.ndarray,
                 exact_pid: np.ndarray, direct_pid: np.ndarray, arrival: np.ndarray,
                 fresh: np.ndarray, conn_key: np.ndarray | None) -> None:
        """The cached rows at index `kept` (in deadline order) plus new rows become the cache."""
        n_kept, n = len(kept), len(rows)
        pool_keys, pool_rows, pool_idx = _merge_keys(self._pool_keys, self._pool[kept], pool_key, counted,
                                                     self._pool_rows, rows)
        remote_keys, remote_rows, remote_idx = _merge_keys(
            self._remote_keys, self._remote[kept], remote_key, np.ones(n, dtype=bool), self._remote_rows,
            rows)
        new_pids = np.concatenate([exact_pid, direct_pid]).astype(np.int64)
        pids, _, pid_idx = _merge_keys(self._pids, np.concatenate([self._exact[kept], self._direct[kept]]),
                                       new_pids, new_pids >= 0)
        exact_idx = np.concatenate([pid_idx[:n_kept], pid_idx[2 * n_kept:2 * n_kept + n]])
        direct_idx = np.concatenate([pid_idx[n_kept:2 * n_kept], pid_idx[2 * n_kept + n:]])
        pair_pids, pair_rkeys, pair_idx = self._merge_pairs(kept, pids, remote_keys, exact_idx[n_kept:],
                                                            remote_idx[n_kept:])
        # Kept rows are sorted already: only the new ones are sorted, then each is put
        # where it goes among the kept (searchsorted), with no sort of the whole cache.
        new_order = np.argsort(deadline, kind="stable")
        kept_deadline = self._deadline[kept]
        new_at = np.searchsorted(kept_deadline, deadline[new_order], side="right") + np.arange(n)
        where = np.empty(n_kept + n, dtype=np.int64)
        where[n_kept + new_order] = new_at
        is_new = np.zeros(n_kept + n, dtype=bool)
        is_new[new_at] = True
        where[:n_kept] = np.flatnonzero(~is_new)

        def joined(kept_part: np.ndarray, added: np.ndarray) -> np.ndarray:
            # Scattered straight into place: a listing holds the old and the new
            # arrays, never a joined copy besides.
            result = np.empty(n_kept + n, dtype=added.dtype)
            _put(result, where[:n_kept], kept_part)
            _put(result, where[n_kept:], added)
            return result

        def placed(index: np.ndarray) -> np.ndarray:
            result = np.empty(n_kept + n, dtype=index.dtype)
            result[where] = index
            return result

        self._rows = joined(self._rows[kept], rows) if self.keep_rows and self._has_rows() else empty_table()
        self._deadline = joined(kept_deadline, deadline.astype(np.float64))
        # Port keys kept per row (whole rows are not, on Linux): slices, and the
        # whole-range judgement (local ports).
        self._port_key = joined(self._port_key[kept], (rows["lport"].astype(np.uint32) << np.uint32(16))
                                | rows["rport"].astype(np.uint32))
        self._pids, self._pool_keys, self._remote_keys = pids, pool_keys, remote_keys
        assert pool_rows is not None and remote_rows is not None
        self._pool_rows, self._remote_rows = pool_rows, remote_rows
        self._pair_pids, self._pair_rkeys = pair_pids, pair_rkeys
        self._pair = placed(pair_idx)
        self._exact = placed(exact_idx)
        self._direct = placed(direct_idx)
        self._rest = (self._exact < 0) & (self._direct < 0)
        self._pool = placed(pool_idx)
        self._remote = placed(remote_idx)
        self._out_remote = joined(self._out_remote[kept], out_remote)
        self._arrived = joined(self._arrived[kept], arrival)
        self._fresh = joined(self._fresh[kept], fresh & (exact_pid >= 0))
        self._start = 0
        self.listed_at = now
        self._window = window
        self._totals = self._aggregate(0, n_kept + n)

        # Arrivals: how new TIME_WAIT spreads, for the rows pending until their next
        # listing; and, per second of the window, the open rates.
        self._arrival_count = int(np.count_nonzero(self._arrived))
        self._arrivals = self._aggregate(0, n_kept + n, self._arrived)
        self._rate_pool, self._rate_pid = {}, {}
        if window > 0:
            # Every outbound TIME_WAIT that arrived is a connection this host opened and
            # closed first: what fills a pool (accepted connections' never count).
            tw = self._arrivals.pool_tw
            self._rate_pool = {int(k): c / window for k, c in zip(self._pool_keys.tolist(), tw.tolist(),
                                                                   strict=True) if c}
            owned = self._exact[self._arrived & self._fresh]
            if len(owned):
                counts = np.bincount(owned, minlength=len(self._pids))
                self._rate_pid = {int(p): c / window for p, c in zip(self._pids.tolist(), counts.tolist(),
                                                                      strict=True) if c}

    def _merge_pairs(self, kept: np.ndarray, pids: np.ndarray, remote_keys: np.ndarray, new_exact: np.ndarray,
                     new_remote: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (owner pid, remote key) dictionary of the exactly owned rows for the kept
        rows (indices) plus new rows whose indices into the merged `pids` / `remote_keys` are
        new_exact / new_remote; returns its pids, its remote keys and every row's index
        (kept rows' first; -1 where not owned). A pair is coded as pid index * len(remote
        keys) + remote index: both dictionaries are sorted, so codes sort as the pairs do
        and, like the other keys, only the dictionary and the new rows are sorted."""
        width = max(len(remote_keys), 1)
        # The cached pairs recoded in the merged dictionaries; a pair whose pid or remote
        # left them is used by no kept row (a kept row keeps both), so it is dropped.
        pid_at = np.searchsorted(pids, self._pair_pids)
        rkey_at = np.searchsorted(remote_keys, self._pair_rkeys)
        present = (pid_at < len(pids)) & (rkey_at < len(remote_keys))
        present[present] &= ((pids[pid_at[present]] == self._pair_pids[present])
                             & (remote_keys[rkey_at[present]] == self._pair_rkeys[present]))
        codes = pid_at[present].astype(np.int64) * width + rkey_at[present]
        renumber = (np.cumsum(present) - 1).astype(np.int32)
        kept_pairs = self._pair[kept]
        renumbered = renumber[np.maximum(kept_pairs, 0)] if len(renumber) else _NONE
        kept_pairs = np.where(kept_pairs >= 0, renumbered, _NONE)
        owned = new_exact >= 0
        new_codes = np.where(owned, new_exact.astype(np.int64) * width + new_remote, 0)
        merged, _, index = _merge_keys(codes, kept_pairs.astype(np.int32), new_codes, owned)
        return pids[merged // width], remote_keys[merged % width], index

    def arrival_share(self, pool_key: int | None) -> float:
        """The share of the TIME_WAIT that arrived before the last listing that went to
        that pool (None: to any counted pool): how new TIME_WAIT spreads until the next."""
        if not self._arrival_count:
            return 0.0
        tw = self._arrivals.pool_tw
        if pool_key is None:
            return float(tw.sum()) / self._arrival_count
        pos = int(np.searchsorted(self._pool_keys, np.uint64(pool_key)))
        if pos >= len(self._pool_keys) or int(self._pool_keys[pos]) != pool_key:
            return 0.0
        return float(tw[pos]) / self._arrival_count

    def _aggregate(self, lo: int, hi: int, where: np.ndarray | None = None) -> _Totals:
        """Counts per pid / remote / pool over the sorted rows lo:hi (optionally masked)."""
        k, r, p = len(self._pids), len(self._remote_keys), len(self._pool_keys)
        q = len(self._pair_pids)

        def count(index: np.ndarray, mask: np.ndarray | None, size: int) -> np.ndarray:
            index = index[lo:hi]
            keep = index >= 0
            if mask is not None:
                keep &= mask[lo:hi]
            if where is not None:
                keep &= where
            return np.bincount(index[keep], minlength=size).astype(np.int64)

        return _Totals(
            exact=count(self._exact, None, k),
            pair=count(self._pair, None, q),
            direct=count(self._direct, None, k),
            rest=count(self._remote, self._rest, r),
            pool_tw=count(self._pool, None, p),
            remote_tw=count(self._remote, self._out_remote, r),
        )

    def _pairs_dict(self, counts: np.ndarray) -> dict[tuple[int, int], int]:
        return {(pid, rkey): int(c) for pid, rkey, c in zip(
            self._pair_pids.tolist(), self._pair_rkeys.tolist(), counts.tolist(), strict=True) if c}

    def remote_row(self, rkey: int) -> np.ndarray | None:
        """A listed row toward that remote endpoint (for its label), if any."""
        keys = self._remote_keys
        pos = int(np.searchsorted(keys, np.uint64(rkey)))
        if pos < len(keys) and int(keys[pos]) == rkey:
            return self._remote_rows[pos]
        return None

    # -- a tick -------------------------------------------------------------------------
    def age(self, now: float) -> None:
        """Drop the rows whose TIME_WAIT has run out by `now`."""
        self._start = max(self._start, int(np.searchsorted(self._deadline, now, side="right")))

    def held_ports(self, held: np.ndarray | None = None) -> np.ndarray:
        """bool per port number 0-65535: some live cached TIME_WAIT row holds it (marked
        in `held` if given). Worked out when asked: a count per port kept per segment
        was 256 KB each."""
        held = np.zeros(65536, dtype=bool) if held is None else held
        held[self._port_key[self._start:] >> np.uint32(16)] = True
        return held

    def counts(self, pending: int) -> TierCounts:
        totals = self._totals.minus(self._aggregate(0, self._start)) if self._start else self._totals
        exact = totals.exact
        pending_pair = np.zeros(len(self._pair_pids), dtype=np.int64)
        direct = totals.direct.copy()
        rest = totals.rest.copy()
        pool_tw = totals.pool_tw.copy()
        remote_tw = totals.remote_tw.copy()
        pending = max(int(pending), 0)
        arr = self._arrivals
        if pending and self._arrival_count:
            n = self._arrival_count
            k, r, q = len(self._pids), len(self._remote_keys), len(self._pair_pids)
            # Each pending row is an arrival: owned (by a pid, toward a remote), on a
            # listener's port, left to the evidence (by remote), or unattributed; and
            # counted in a pool / remote or not.
            owner = apportion(pending, np.concatenate([arr.pair, arr.direct, arr.rest,
                                                       [n - arr.pair.sum() - arr.direct.sum()
                                                        - arr.rest.sum()]]))
            pending_pair += owner[:q]
            direct += owner[q:q + k]
            rest += owner[q + k:q + k + r]
            pool_share = apportion(pending, np.concatenate([arr.pool_tw, [n - arr.pool_tw.sum()]]))[:-1]
            pool_tw += pool_share
            remote_tw += apportion(pending, np.concatenate([arr.remote_tw, [n - arr.remote_tw.sum()]]))[:-1]
        pids = self._pids.tolist()
        live_pools = pool_tw > 0
        live_remotes = remote_tw > 0
        live_rest = rest > 0
        return TierCounts(
            alive=self.alive,
            pending=pending,
            exact={pid: int(c) for pid, c in zip(pids, exact.tolist(), strict=True) if c},
            exact_pairs=self._pairs_dict(totals.pair),
            pending_pairs=self._pairs_dict(pending_pair),
            direct={pid: int(c) for pid, c in zip(pids, direct.tolist(), strict=True) if c},
            rest_keys=self._remote_keys[live_rest],
            rest_counts=rest[live_rest],
            pool_keys=self._pool_keys[live_pools],
            pool_rows=self._pool_rows[live_pools],
            pool_tw=pool_tw[live_pools],
            remote_keys=self._remote_keys[live_remotes],
            remote_rows=self._remote_rows[live_remotes],
            remote_tw=remote_tw[live_remotes],
            open_rate_by_pool=self._rate_pool,
            open_rate_by_pid=self._rate_pid,
        )


def _combined(keys: list[np.ndarray], values: list[list[np.ndarray]], rows: list[np.ndarray] | None = None,
              ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """Per-key arrays of several segments as one: sorted unique keys, each value summed
    (or, for bools, any), and one label row per key."""
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    uniq, first, inverse = np.unique(all_keys, return_index=True, return_inverse=True)
    summed = []
    for parts in values:
        joined = np.concatenate(parts)
        total = np.bincount(inverse, weights=joined.astype(np.float64), minlength=len(uniq))
        summed.append(total > 0 if joined.dtype == bool else total.astype(np.int64))
    label = np.concatenate(rows)[first] if rows is not None else None
    return uniq, summed, label


def _added(dicts: list[dict]) -> dict:
    result: dict = {}
    for d in dicts:
        for k, v in d.items():
            result[k] = result.get(k, 0) + v
    return result


class TimeWaitCache:
    """The cached TIME_WAIT rows as segments, one per slice of port keys, each a
    TimeWaitTier: renewing a slice rebuilds its segment only, so what a listing costs
    (time and memory) follows the slice, not the whole cache. A whole listing is one
    segment; a slice listed across segments cuts the ones it overlaps."""

    def __init__(self) -> None:
        self.keep_rows = True
        self.listed_at: float | None = None
        self._segments: list[tuple[int, int, TimeWaitTier]] = []

    @property
    def alive(self) -> int:
        return sum(tier.alive for _, _, tier in self._segments)

    def alive_rows(self) -> np.ndarray:
        parts = [tier.alive_rows() for _, _, tier in self._segments]
        return np.concatenate(parts) if parts else empty_table()

    def expires_left(self, now: float) -> np.ndarray:
        """Seconds each live cached row has left, sorted (for tests and diagnostics)."""
        parts = [tier.expires_left(now) for _, _, tier in self._segments]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0)

    def rebuild(self, rows: np.ndarray, deadline: np.ndarray, now: float, **keyed: Any) -> None:
        """Replace the whole cache with a listing of every TIME_WAIT row."""
        self._segments = []
        self.replace(0, KEY_END, rows, deadline, now, **keyed)

    def replace(self, lo: int, hi: int, rows: np.ndarray, deadline: np.ndarray, now: float,
                **keyed: Any) -> None:
        """A listing of one slice: every TIME_WAIT row whose port key (local port << 16 |
        remote port) is in [lo, hi). Its rows become a segment of their own; segments
        inside the slice are dropped (their rows ended, or are listed again here), the
        others kept as they are. Arguments as for TimeWaitTier.rebuild."""
        kept = []
        for seg_lo, seg_hi, tier in self._segments:
            if seg_hi <= lo or seg_lo >= hi:
                kept.append((seg_lo, seg_hi, tier))
            elif not (lo <= seg_lo and seg_hi <= hi):
                tier.drop_range(lo, hi)  # a slice across segments: cut (after new cuts)
                if tier.alive:
                    kept.append((seg_lo, seg_hi, tier))
        segment = TimeWaitTier(keep_rows=self.keep_rows)
        segment.rebuild(rows, deadline, now, **keyed)
        kept.append((lo, hi, segment))
        self._segments = sorted(kept, key=lambda s: s[0])
        self.listed_at = now

    def age(self, now: float) -> None:
        for _, _, tier in self._segments:
            tier.age(now)

    def held_ports(self) -> np.ndarray:
        """bool per port number 0-65535: some live cached TIME_WAIT row holds it."""
        held = np.zeros(65536, dtype=bool)
        for _, _, tier in self._segments:
            tier.held_ports(held)
        return held

    def arrival_share(self, pool_key: int | None) -> float:
        total = sum(tier.arrival_count for _, _, tier in self._segments)
        if not total:
            return 0.0
        return sum(tier.arrival_share(pool_key) * tier.arrival_count for _, _, tier in self._segments) / total

    def remote_row(self, rkey: int) -> np.ndarray | None:
        for _, _, tier in self._segments:
            row = tier.remote_row(rkey)
            if row is not None:
                return row
        return None

    def counts(self, pending: int) -> TierCounts:
        """The segments' counts together; TIME_WAIT not listed yet is spread over the
        segments in proportion to their arrivals (each then spreads its share like them)."""
        tiers = [tier for _, _, tier in self._segments]
        if len(tiers) == 1:
            return tiers[0].counts(pending)
        shares = apportion(max(int(pending), 0), np.array([t.arrival_count for t in tiers], dtype=np.int64))
        parts = [t.counts(int(share)) for t, share in zip(tiers, shares.tolist(), strict=True)]
        if not parts:
            return TimeWaitTier().counts(pending)
        rest_keys, (rest_counts,), _ = _combined([p.rest_keys for p in parts],
                                                 [[p.rest_counts for p in parts]])
        pool_keys, (pool_tw,), pool_rows = _combined(
            [p.pool_keys for p in parts], [[p.pool_tw for p in parts]], [p.pool_rows for p in parts])
        remote_keys, (remote_tw,), remote_rows = _combined([p.remote_keys for p in parts],
                                                           [[p.remote_tw for p in parts]],
                                                           [p.remote_rows for p in parts])
        assert pool_rows is not None and remote_rows is not None
        return TierCounts(
            alive=sum(p.alive for p in parts),
            pending=sum(p.pending for p in parts),
            exact=_added([p.exact for p in parts]),
            exact_pairs=_added([p.exact_pairs for p in parts]),
            direct=_added([p.direct for p in parts]),
            pending_pairs=_added([p.pending_pairs for p in parts]),
            rest_keys=rest_keys,
            rest_counts=rest_counts,
            pool_keys=pool_keys,
            pool_rows=pool_rows,
            pool_tw=pool_tw,
            remote_keys=remote_keys,
            remote_rows=remote_rows,
            remote_tw=remote_tw,
            open_rate_by_pool=_added([p.open_rate_by_pool for p in parts]),
            open_rate_by_pid=_added([p.open_rate_by_pid for p in parts]),
        )
