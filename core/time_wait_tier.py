"""The TIME_WAIT rows the Sampler keeps between the reads that list them.

At 100k TIME_WAIT sockets, listing and keying every tuple each second costs more than
everything else in a sample together (DESIGN.md "Measured"). A TIME_WAIT tuple never
changes and, on Linux, disappears on a known deadline (idiag_expires), so the reads
between two full listings leave TIME_WAIT out (LinuxSource) and the Sampler keeps the
rows of the last listing here, sorted by deadline: a tick drops the expired prefix and
subtracts its counts from the totals taken at the listing, so a tick costs in
proportion to the rows that expired, not to the rows held.

Per row, what the listing worked out once: pool, remote endpoint, exact owner (from
the attribution memory), listener (inferred owner), reusability. TIME_WAIT created
since the last listing is only a count (sockstat tw minus the live cached rows); it is
spread over pools, endpoints and processes like the TIME_WAIT that appeared between the
last two listings ("arrivals"), and what it gives a process is labelled inferred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.model import empty_table

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
    pool_rows: np.ndarray  # one SOCKET_DTYPE row per pool, for its label
    pool_held: np.ndarray  # TIME_WAIT ports held (not reusable by connect)
    pool_tw: np.ndarray
    pool_reusable: np.ndarray  # bool: some TIME_WAIT there is reusable
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
    pool_held: np.ndarray
    pool_reusable: np.ndarray
    remote_tw: np.ndarray

    def minus(self, other: _Totals) -> _Totals:
        return _Totals(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return (self.exact, self.pair, self.direct, self.rest, self.pool_tw, self.pool_held,
                self.pool_reusable, self.remote_tw)


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
        self._port_rows = np.zeros(65536, dtype=np.int32)  # live cached rows per local port
        self.listed_at: float | None = None
        self._rows = empty_table()
        self._deadline = np.zeros(0, dtype=np.float64)
        self._lport = np.zeros(0, dtype=np.uint16)
        self._conn = np.zeros(0, dtype=np.uint64)
        self._pids = np.zeros(0, dtype=np.int64)
        self._pair_pids = np.zeros(0, dtype=np.int64)
        self._pair_rkeys = np.zeros(0, dtype=np.uint64)
        self._pool_keys = self._remote_keys = np.zeros(0, dtype=np.uint64)
        self._pool_rows = self._remote_rows = empty_table()
        self._exact = self._pair = self._direct = self._pool = self._remote = np.zeros(0, dtype=np.int32)
        self._rest = self._held = self._reusable = self._out_remote = np.zeros(0, dtype=bool)
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
    def rebuild(self, rows: np.ndarray, deadline: np.ndarray, now: float, *, pool_key: np.ndarray,
                remote_key: np.ndarray, counted: np.ndarray, out_remote: np.ndarray,
                reusable: np.ndarray, exact_pid: np.ndarray, direct_pid: np.ndarray,
                arrival: np.ndarray, fresh: np.ndarray, conn_key: np.ndarray | None = None) -> None:
        """Replace the cache with a listing's TIME_WAIT rows.

        arrival: bool per row, created since the previous listing; fresh: arrivals
        never seen as an outbound connection (new tuples, for the open rates);
        conn_key: the rows' 4-tuple keys (core.tuples.connection_keys), needed by merge."""
        self._install(0, 0, rows, deadline, now, pool_key=pool_key, remote_key=remote_key, counted=counted,
                      out_remote=out_remote, reusable=reusable, exact_pid=exact_pid, direct_pid=direct_pid,
                      arrival=arrival, fresh=fresh, conn_key=conn_key)

    def merge(self, rows: np.ndarray, deadline: np.ndarray, now: float, *, keep: tuple[float, float],
              dumped: int, pool_key: np.ndarray, remote_key: np.ndarray, counted: np.ndarray,
              out_remote: np.ndarray, reusable: np.ndarray, exact_pid: np.ndarray, direct_pid: np.ndarray,
              arrival: np.ndarray, fresh: np.ndarray, conn_key: np.ndarray,
              overlap: float = 1.0) -> bool:
        """Add a partial listing to the cache instead of replacing it: keep the cached
        rows with keep[0] < seconds left <= keep[1] (the ones the listing left out, by
        the cache's deadlines), drop the others, add the listed rows; a listed row
        already kept (deadlines differ by the dumps' timing, so rows within `overlap`
        seconds of the kept band's edges are compared by 4-tuple) is added once.

        Returns False, changing nothing, when kept plus added rows are not exactly the
        `dumped` TIME_WAIT sockets the kernel listed (some ended early, e.g. taken over by
        tcp_tw_reuse or killed by a reset; or the cache is not the previous listing's):
        the caller lists everything instead."""
        lo = int(np.searchsorted(self._deadline, now + keep[0], side="right"))
        hi = int(np.searchsorted(self._deadline, now + keep[1], side="right"))
        lo = max(lo, self._start)
        hi = max(hi, lo)
        edges = np.concatenate([
            self._conn[lo:max(lo, int(np.searchsorted(self._deadline, now + keep[0] + overlap, "right")))],
            self._conn[min(hi, int(np.searchsorted(self._deadline, now + keep[1] - overlap, "right"))):hi]])
        new = ~np.isin(conn_key, edges) if len(edges) else np.ones(len(rows), dtype=bool)
        if (hi - lo) + int(np.count_nonzero(new)) != dumped or self.keep_rows and not self._has_rows():
            return False
        new = np.flatnonzero(new)  # an index, not a mask: rows are moved as whole records
        self._install(lo, hi, rows[new], deadline[new], now, pool_key=pool_key[new],
                      remote_key=remote_key[new], counted=counted[new], out_remote=out_remote[new],
                      reusable=reusable[new], exact_pid=exact_pid[new], direct_pid=direct_pid[new],
                      arrival=arrival[new], fresh=fresh[new], conn_key=conn_key[new])
        return True

    def _install(self, lo: int, hi: int, rows: np.ndarray, deadline: np.ndarray, now: float, *,
                 pool_key: np.ndarray, remote_key: np.ndarray, counted: np.ndarray, out_remote: np.ndarray,
                 reusable: np.ndarray, exact_pid: np.ndarray, direct_pid: np.ndarray, arrival: np.ndarray,
                 fresh: np.ndarray, conn_key: np.ndarray | None) -> None:
        """The cached rows lo:hi (sorted by deadline) plus new rows become the cache."""
        interval = None if self.listed_at is None else now - self.listed_at
        n_kept, n = hi - lo, len(rows)
        pool_keys, pool_rows, pool_idx = _merge_keys(self._pool_keys, self._pool[lo:hi], pool_key, counted,
                                                     self._pool_rows, rows)
        remote_keys, remote_rows, remote_idx = _merge_keys(
            self._remote_keys, self._remote[lo:hi], remote_key, np.ones(n, dtype=bool), self._remote_rows,
            rows)
        new_pids = np.concatenate([exact_pid, direct_pid]).astype(np.int64)
        pids, _, pid_idx = _merge_keys(self._pids, np.concatenate([self._exact[lo:hi], self._direct[lo:hi]]),
                                       new_pids, new_pids >= 0)
        exact_idx = np.concatenate([pid_idx[:n_kept], pid_idx[2 * n_kept:2 * n_kept + n]])
        direct_idx = np.concatenate([pid_idx[n_kept:2 * n_kept], pid_idx[2 * n_kept + n:]])
        pair_pids, pair_rkeys, pair_idx = self._merge_pairs(lo, hi, pids, remote_keys, exact_idx[n_kept:],
                                                            remote_idx[n_kept:])
        all_deadline = np.concatenate([self._deadline[lo:hi], deadline])
        # Kept rows are sorted already and new ones mostly later: a stable sort of two runs.
        order = np.argsort(all_deadline, kind="stable")

        # Where each kept and each added row goes: scattered straight into place, so a
        # listing holds the old and the new arrays, never a joined copy besides.
        where = np.empty(len(order), dtype=np.int64)
        where[order] = np.arange(len(order))

        def joined(kept: np.ndarray, added: np.ndarray) -> np.ndarray:
            result = np.empty(len(order), dtype=added.dtype)
            _put(result, where[:n_kept], kept)
            _put(result, where[n_kept:], added)
            return result

        self._rows = joined(self._rows[lo:hi], rows) if self.keep_rows else empty_table()
        self._deadline = all_deadline[order]
        # Local ports kept per row (whole rows are not, on Linux): the whole-range judgement.
        self._lport = joined(self._lport[lo:hi], rows["lport"].astype(np.uint16))
        self._port_rows = np.bincount(self._lport, minlength=65536).astype(np.int32)
        self._conn = joined(self._conn[lo:hi], conn_key if conn_key is not None
                            else np.zeros(n, dtype=np.uint64))
        self._pids, self._pool_keys, self._remote_keys = pids, pool_keys, remote_keys
        assert pool_rows is not None and remote_rows is not None
        self._pool_rows, self._remote_rows = pool_rows, remote_rows
        self._pair_pids, self._pair_rkeys = pair_pids, pair_rkeys
        self._pair = pair_idx[order]
        self._exact = exact_idx[order]
        self._direct = direct_idx[order]
        self._rest = (self._exact < 0) & (self._direct < 0)
        self._pool = pool_idx[order]
        self._remote = remote_idx[order]
        self._held = joined(self._held[lo:hi], counted & ~reusable)
        self._reusable = joined(self._reusable[lo:hi], counted & reusable)
        self._out_remote = joined(self._out_remote[lo:hi], out_remote)
        self._start = 0
        self.listed_at = now
        self._totals = self._aggregate(0, len(order))

        # Arrivals: how new TIME_WAIT spreads, for the rows pending until the next listing.
        arrived = joined(np.zeros(n_kept, dtype=bool), arrival)
        self._arrival_count = int(arrived.sum())
        self._arrivals = self._aggregate(0, len(order), arrived)
        self._rate_pool, self._rate_pid = {}, {}
        if interval and interval > 0:
            # Every outbound TIME_WAIT that arrived is a connection this host opened and
            # closed first: what fills a pool (accepted connections' never count).
            new = arrival & counted
            if new.any():
                uniq, counts = np.unique(pool_key[new], return_counts=True)
                self._rate_pool = {int(k): c / interval for k, c in zip(uniq.tolist(), counts.tolist(),
                                                                         strict=True)}
            owned = fresh & (exact_pid >= 0)
            if owned.any():
                uniq, counts = np.unique(exact_pid[owned], return_counts=True)
                self._rate_pid = {int(p): c / interval for p, c in zip(uniq.tolist(), counts.tolist(),
                                                                        strict=True)}

    def _merge_pairs(self, lo: int, hi: int, pids: np.ndarray, remote_keys: np.ndarray, new_exact: np.ndarray,
                     new_remote: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (owner pid, remote key) dictionary of the exactly owned rows for the kept
        rows lo:hi plus new rows whose indices into the merged `pids` / `remote_keys` are
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
        kept = self._pair[lo:hi]
        kept = np.where(kept >= 0, renumber[np.maximum(kept, 0)] if len(renumber) else _NONE, _NONE)
        owned = new_exact >= 0
        new_codes = np.where(owned, new_exact.astype(np.int64) * width + new_remote, 0)
        merged, _, index = _merge_keys(codes, kept.astype(np.int32), new_codes, owned)
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
            pool_held=count(self._pool, self._held, p),
            pool_reusable=count(self._pool, self._reusable, p),
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
        start = max(self._start, int(np.searchsorted(self._deadline, now, side="right")))
        if start > self._start:
            gone = self._lport[self._start:start]
            self._port_rows -= np.bincount(gone, minlength=65536)
        self._start = start

    def held_ports(self) -> np.ndarray:
        """bool per port number 0-65535: some live cached TIME_WAIT row holds it."""
        return self._port_rows > 0

    def counts(self, pending: int) -> TierCounts:
        totals = self._totals.minus(self._aggregate(0, self._start)) if self._start else self._totals
        exact = totals.exact
        pending_pair = np.zeros(len(self._pair_pids), dtype=np.int64)
        direct = totals.direct.copy()
        rest = totals.rest.copy()
        pool_tw = totals.pool_tw.copy()
        pool_held = totals.pool_held.copy()
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
            held_share = apportion(pending, np.concatenate([arr.pool_held, [n - arr.pool_held.sum()]]))[:-1]
            pool_tw += pool_share
            pool_held += np.minimum(held_share, pool_share)
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
            pool_held=pool_held[live_pools],
            pool_tw=pool_tw[live_pools],
            pool_reusable=(totals.pool_reusable > 0)[live_pools],
            remote_keys=self._remote_keys[live_remotes],
            remote_rows=self._remote_rows[live_remotes],
            remote_tw=remote_tw[live_remotes],
            open_rate_by_pool=self._rate_pool,
            open_rate_by_pid=self._rate_pid,
        )
