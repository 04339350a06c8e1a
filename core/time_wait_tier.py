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


class TimeWaitTier:
    def __init__(self) -> None:
        self._deadline = np.zeros(0, dtype=np.float64)
        self._start = 0
        self._port_rows = np.zeros(65536, dtype=np.int32)  # live cached rows per local port
        self.listed_at: float | None = None
        self._set_rows(empty_table(), np.zeros(0, dtype=np.int64))
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

    def _set_rows(self, rows: np.ndarray, order: np.ndarray) -> None:
        self._rows = rows
        self._order = order

    @property
    def alive(self) -> int:
        return len(self._deadline) - self._start

    def alive_rows(self) -> np.ndarray:
        """The live cached rows as a table (for pools that need whole rows: Windows)."""
        return self._rows[self._order[self._start:]]

    def expires_left(self, now: float) -> np.ndarray:
        """Seconds each live cached row has left (for tests and diagnostics)."""
        return self._deadline[self._start:] - now

    # -- a listing ----------------------------------------------------------------------
    def rebuild(self, rows: np.ndarray, deadline: np.ndarray, now: float, *, pool_key: np.ndarray,
                remote_key: np.ndarray, counted: np.ndarray, out_remote: np.ndarray,
                reusable: np.ndarray, exact_pid: np.ndarray, direct_pid: np.ndarray,
                arrival: np.ndarray, fresh: np.ndarray) -> None:
        """Replace the cache with a listing's TIME_WAIT rows.

        arrival: bool per row, created since the previous listing; fresh: arrivals
        never seen as an outbound connection (new tuples, for the open rates)."""
        interval = None if self.listed_at is None else now - self.listed_at
        order = np.argsort(deadline, kind="stable")
        self._set_rows(rows, order)
        self._deadline = deadline[order]
        self._start = 0
        self._port_rows = np.bincount(rows["lport"], minlength=65536).astype(np.int32)
        self.listed_at = now

        pool_uniq, pool_first, pool_inv = np.unique(pool_key[counted], return_index=True,
                                                    return_inverse=True)
        pool_idx = np.full(len(rows), _NONE, dtype=np.int32)
        pool_idx[counted] = pool_inv
        self._pool_keys = pool_uniq
        self._pool_rows = rows[np.flatnonzero(counted)[pool_first]]
        remote_uniq, remote_first, remote_inv = np.unique(remote_key, return_index=True,
                                                          return_inverse=True)
        self._remote_keys = remote_uniq
        self._remote_rows = rows[remote_first]
        pids = np.unique(np.concatenate([exact_pid[exact_pid >= 0], direct_pid[direct_pid >= 0]]))
        self._pids = pids

        def pid_index(values: np.ndarray) -> np.ndarray:
            index = np.full(len(values), _NONE, dtype=np.int32)
            has = values >= 0
            index[has] = np.searchsorted(pids, values[has])
            return index

        exact_idx = pid_index(exact_pid)
        direct_idx = pid_index(direct_pid)
        # (owner, remote endpoint) of the exactly owned rows: whose TIME_WAIT goes where.
        owned = exact_idx >= 0
        pair_code = exact_idx[owned].astype(np.int64) * max(len(remote_uniq), 1) + remote_inv[owned]
        pair_uniq, pair_inv = np.unique(pair_code, return_inverse=True)
        pair_idx = np.full(len(rows), _NONE, dtype=np.int32)
        pair_idx[owned] = pair_inv
        self._pair_pids = pids[pair_uniq // max(len(remote_uniq), 1)]
        self._pair_rkeys = remote_uniq[pair_uniq % max(len(remote_uniq), 1)]
        self._pair = pair_idx[order]
        self._exact = exact_idx[order]
        self._direct = direct_idx[order]
        self._rest = ((exact_idx < 0) & (direct_idx < 0))[order]
        self._pool = pool_idx[order]
        self._remote = remote_inv.astype(np.int32)[order]
        self._held = (counted & ~reusable)[order]
        self._reusable = (counted & reusable)[order]
        self._out_remote = out_remote[order]
        self._totals = self._aggregate(0, len(order))

        # Arrivals: how new TIME_WAIT spreads, for the rows pending until the next listing.
        arrived = arrival[order]
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
            gone = self._rows["lport"][self._order[self._start:start]]
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
