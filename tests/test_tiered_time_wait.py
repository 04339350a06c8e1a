"""The cached TIME_WAIT tier: reads that leave TIME_WAIT out, rows aged by their kernel
expiry, slices of it renewed one at a time, counts kept equal to the kernel's,
attribution kept across cached ticks.

Real sockets in private namespaces; the source is the real LinuxSource with the tier
switched on at a low threshold (tier_min=1) and listings only when asked for.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import time
from typing import Any

import numpy as np
import pytest

from core.model import TableRead
from core.time_wait_tier import TimeWaitCache, TimeWaitTier, apportion
from tests.support.netns import requires_netns, run_in_netns, sockstat_tw, wait_until
from tests.support.traffic import Listener, set_process_name

pytestmark = requires_netns
SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}
_ctx = multiprocessing.get_context("fork")


def _holder(port: int, count: int, conn: Any) -> None:
    """A client process: opens `count` connections, reports, closes them when told."""
    set_process_name("tw-holder")
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    conn.send("open")
    conn.recv()
    for s in socks:
        s.close()  # the client closes first: the TIME_WAIT is this process's
    conn.send("closed")
    conn.recv()


class Holder:
    def __init__(self, port: int, count: int) -> None:
        self.conn, child = _ctx.Pipe()
        self.proc = _ctx.Process(target=_holder, args=(port, count, child), daemon=True)
        self.proc.start()
        assert self.conn.poll(20) and self.conn.recv() == "open"

    def close_all(self) -> None:
        self.conn.send("close")
        assert self.conn.poll(20) and self.conn.recv() == "closed"

    def stop(self) -> None:
        self.conn.send("exit")
        self.proc.join(10)


class WrappedSource:
    """The real LinuxSource behind a test's change to what its reads say."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.name = source.name

    def read(self, with_table: bool = True) -> TableRead:
        return self.source.read(with_table)

    def request_listing(self) -> None:
        self.source.request_listing()

    def list_time_wait(self, lo: int, hi: int) -> Any:
        return self.source.list_time_wait(lo, hi)

    def read_counters(self) -> Any:
        return self.source.read_counters()

    def port_config(self) -> Any:
        return self.source.port_config()

    def close(self) -> None:
        self.source.close()


class ShiftedClock(WrappedSource):
    """The monotonic time the Sampler sees moved forward: ages the cached rows without
    waiting for TIME_WAIT's fixed 60 s."""

    def __init__(self, source: Any) -> None:
        super().__init__(source)
        self.shift = 0.0

    def read(self, with_table: bool = True) -> TableRead:
        read = self.source.read(with_table)
        counters = dataclasses.replace(read.counters, monotonic=read.counters.monotonic + self.shift)
        return dataclasses.replace(read, counters=counters)


def _client_tw(listener_port: int, settled: tuple[str, ...] = ("06", "0A")) -> int:
    """TIME_WAIT sockets on the client side, once no connection to the listener is still
    closing (0 before). Not a fixed number: now and then the kernel ends one closed
    loopback connection with a reset instead of a TIME_WAIT (OutRsts +1)."""
    port = f"{listener_port:04X}"
    lines = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            lines += f.read().splitlines()[1:]
    states = [line.split()[3] for line in lines
              if line.split()[2].endswith(":" + port) or line.split()[1].endswith(":" + port)]
    if any(state not in settled for state in states):
        return 0
    return states.count("06")


def _exact_across_cached_ticks() -> dict[str, Any]:
    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    listener = Listener(mode="client_closes")
    source = LinuxSource(trace=False, tier_min=1, refresh_seconds=3600.0)
    sampler = Sampler(source)
    first = Holder(listener.port, 40)
    sampler.sample()  # a listing: sees the 40 connections owned by the holder
    first.close_all()
    held = wait_until(lambda: _client_tw(listener.port), 20, "the holder's TIME_WAIT")
    source.request_listing()
    listing = sampler.sample()
    cached = [sampler.sample() for _ in range(3)]
    # TIME_WAIT created after the listing: only counted until the next listing.
    second = Holder(listener.port, 25)
    second.close_all()
    wait_until(lambda: _client_tw(listener.port) > held, 20, "the second holder's TIME_WAIT")
    added = _client_tw(listener.port) - held
    with_pending = sampler.sample()
    kernel_tw = sockstat_tw()
    source.request_listing()
    relisted = sampler.sample()
    kernel_tw_relisted = sockstat_tw()
    holder_pid, second_pid = first.proc.pid, second.proc.pid
    first.stop()
    second.stop()
    sampler.close()

    def view(sample: Any) -> dict[str, Any]:
        rows = {p.pid: p for p in sample.processes}
        mine = rows.get(holder_pid)
        return {"listed": sample.extra["time_wait_listed"], "tw": sample.states["TIME_WAIT"],
                "cached": sample.extra["time_wait_cached"], "pending": sample.extra["time_wait_pending"],
                "exact": mine.time_wait_exact if mine else 0,
                "inferred": mine.time_wait_inferred if mine else 0,
                "pool_in_use": sample.ports.in_use, "remote_tw": sample.remotes[0].time_wait
                if sample.remotes else 0, "unattributed": sample.time_wait_unattributed,
                "second": rows[second_pid].time_wait if second_pid in rows else 0}

    return {"held": held, "added": added, "listing": view(listing), "cached": [view(s) for s in cached],
            "pending": view(with_pending), "kernel_tw": kernel_tw, "relisted": view(relisted),
            "kernel_tw_relisted": kernel_tw_relisted}


def test_attribution_stays_exact_across_cached_ticks_and_new_time_wait_is_counted() -> None:
    r = run_in_netns(_exact_across_cached_ticks, sysctls=SYSCTLS)
    n, m = r["held"], r["added"]
    assert n >= 35 and m >= 20  # of 40 and 25 closed
    listing = r["listing"]
    assert listing["listed"] and listing["tw"] == n and listing["exact"] == n
    assert listing["pool_in_use"] == n and listing["remote_tw"] == n
    for tick in r["cached"]:
        # The dump left TIME_WAIT out; the cached rows say the same as the listing.
        assert not tick["listed"]
        assert (tick["tw"], tick["cached"], tick["pending"]) == (n, n, 0)
        assert (tick["exact"], tick["inferred"], tick["unattributed"]) == (n, 0, 0)
        assert (tick["pool_in_use"], tick["remote_tw"]) == (n, n)
    pending = r["pending"]
    # New TIME_WAIT is only counted (sockstat) until the next listing; it follows the
    # last arrivals (the holder's), labelled inferred, never exact; pools and remotes
    # count it too.
    assert pending["tw"] == r["kernel_tw"] == n + m
    assert (pending["cached"], pending["pending"]) == (n, m)
    assert (pending["exact"], pending["inferred"]) == (n, m)
    assert (pending["pool_in_use"], pending["remote_tw"]) == (n + m, n + m)
    # The next listing sees the real tuples again and matches the kernel: the second
    # holder's connections were never sampled open, so they are not exact; the endpoint
    # tier infers them to the only process seen talking to that listener.
    relisted = r["relisted"]
    assert relisted["listed"] and relisted["tw"] == r["kernel_tw_relisted"] == n + m
    assert (relisted["exact"], relisted["inferred"], relisted["pending"]) == (n, m, 0)
    assert relisted["pool_in_use"] == n + m


def _ageing() -> dict[str, Any]:
    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    listener = Listener(mode="client_closes")
    source = ShiftedClock(LinuxSource(trace=False, tier_min=1, refresh_seconds=3600.0))
    sampler = Sampler(source)
    holder = Holder(listener.port, 30)
    sampler.sample()
    holder.close_all()
    held = wait_until(lambda: _client_tw(listener.port), 20, "the holder's TIME_WAIT")
    source.source.request_listing()
    sampler.sample()
    tier = sampler._tier  # noqa: SLF001 - the deadlines are what this test checks
    listed_at = tier.listed_at or 0.0
    left_first = tier.expires_left(listed_at)
    # Let real time pass (the kernel's expiry is in ms) before listing again.
    wait_until(lambda: time.monotonic() - listed_at > 0.05, 5, "50 ms to pass")
    source.source.request_listing()
    sampler.sample()
    left_second = tier.expires_left(tier.listed_at or 0.0)
    ticks = []
    for shift in (30.0, 61.0):
        source.shift = shift
        s = sampler.sample()
        ticks.append({"listed": s.extra["time_wait_listed"], "cached": s.extra["time_wait_cached"],
                      "pending": s.extra["time_wait_pending"], "tw": s.states["TIME_WAIT"],
                      "kernel": sockstat_tw(),
                      "exact": sum(p.time_wait_exact for p in s.processes)})
    holder.stop()
    sampler.close()
    return {"held": held, "first": left_first.tolist(), "second": left_second.tolist(), "ticks": ticks}


def test_cached_rows_age_by_kernel_expiry_and_counts_follow_the_kernel() -> None:
    r = run_in_netns(_ageing, sysctls=SYSCTLS)
    first, second = np.array(r["first"]), np.array(r["second"])
    n = r["held"]
    assert n >= 25 and len(first) == len(second) == n
    # Remaining time from idiag_expires: within TIME_WAIT's 60 s and shrinking between listings.
    assert ((first > 0) & (first <= 60.0)).all()
    assert second.max() < first.max() and second.min() < first.min()
    half, gone = r["ticks"]
    # 30 s later (by the injected clock) the rows still have time left: all cached, exact.
    assert not half["listed"] and (half["cached"], half["pending"], half["exact"]) == (n, 0, n)
    # 61 s later every cached row has expired by its deadline; the kernel still holds
    # them (real time did not pass), so they are counted as pending, not exact.
    assert not gone["listed"] and (gone["cached"], gone["exact"]) == (0, 0)
    assert gone["tw"] == gone["kernel"] == n and gone["pending"] == n


def test_apportion_splits_exactly_and_proportionally() -> None:
    parts = apportion(10, np.array([5, 3, 2]))
    assert parts.tolist() == [5, 3, 2]
    odd = apportion(7, np.array([1, 1, 1]))
    assert odd.sum() == 7 and odd.max() - odd.min() <= 1
    assert apportion(5, np.zeros(3)).tolist() == [0, 0, 0]
    assert apportion(0, np.array([1, 2])).tolist() == [0, 0]


def test_ageing_subtracts_exactly_what_a_recount_gives() -> None:
    """Counts after dropping the expired prefix equal a tier rebuilt from the survivors."""
    from tests.tables import churn, table

    rows = table(*churn(6, remote="10.0.0.9:443"), *churn(4, remote="10.0.0.8:80", first_port=50100))
    deadline = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 10], dtype=np.float64)
    pool = np.arange(10, dtype=np.uint64) % 2  # two pools
    remote = np.array([1] * 6 + [2] * 4, dtype=np.uint64)
    exact = np.array([7, -1, 7, -1, 8, -1, -1, 7, -1, 8], dtype=np.int32)
    none = np.full(10, -1, dtype=np.int32)
    args = dict(pool_key=pool, remote_key=remote, counted=np.ones(10, bool), out_remote=np.ones(10, bool),
                exact_pid=exact, direct_pid=none,
                arrival=np.zeros(10, bool), fresh=np.zeros(10, bool))
    tier = TimeWaitTier()
    tier.rebuild(rows, deadline, 0.0, window=5.0, **args)
    tier.age(4.5)  # drops deadlines 1, 2, 3, 4
    aged = tier.counts(0)
    keep = deadline > 4.5
    fresh = TimeWaitTier()
    fresh.rebuild(rows[keep], deadline[keep], 0.0, window=5.0,
                  **{k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in args.items()})
    recount = fresh.counts(0)
    assert aged.alive == recount.alive == 6
    assert aged.exact == recount.exact == {7: 2, 8: 2}
    assert dict(zip(aged.pool_keys.tolist(), aged.pool_tw.tolist(), strict=True)) == dict(
        zip(recount.pool_keys.tolist(), recount.pool_tw.tolist(), strict=True))
    assert dict(zip(aged.remote_keys.tolist(), aged.remote_tw.tolist(), strict=True)) == {1: 3, 2: 3}
    assert aged.rest_counts.sum() == recount.rest_counts.sum() == 2


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
def test_vectorised_message_offsets_match_the_walk_on_a_real_mixed_dump(family: str) -> None:
    r = run_in_netns(_mixed_dump, family, sysctls=SYSCTLS)
    assert r["fast"] == r["walk"] and r["count"] >= 60
    assert r["sizes"] > 1  # messages of different lengths in one dump
    assert r["tw"] == r["kernel_tw"] >= 15  # of 20 closed


def _mixed_dump(host: str) -> dict[str, Any]:
    from core.model import TIME_WAIT
    from core.sources.netlink_diag import ALL_STATES_MASK, DiagSocket, datagram_offsets, parse_dump

    listener = Listener(host=host, mode="client_closes")
    held = [socket.create_connection((host, listener.port)) for _ in range(20)]
    closed = [socket.create_connection((host, listener.port)) for _ in range(20)]
    for s in closed:
        s.close()
    wait_until(lambda: listener.accepted == 40, 20, "40 accepted")
    wait_until(lambda: _client_tw(listener.port, ("01", "06", "0A")), 20,
               "the closed connections in TIME_WAIT")
    diag = DiagSocket()
    data, offsets = diag.dump(ALL_STATES_MASK)
    walked, _, _ = datagram_offsets(data.tobytes())
    table, _ = parse_dump(data, offsets)
    sizes = {int.from_bytes(data[o:o + 4].tobytes(), "little") for o in offsets.tolist()}
    kernel_tw = sockstat_tw()
    diag.close()
    for s in held:
        s.close()
    return {"fast": offsets.tolist(), "walk": walked.tolist(), "count": len(offsets), "sizes": len(sizes),
            "tw": int((table["state"] == TIME_WAIT).sum()), "kernel_tw": kernel_tw}


def _tier_view(tier: TimeWaitTier, pending: int = 0) -> dict[str, Any]:
    c = tier.counts(pending)
    return {"alive": c.alive, "exact": c.exact, "direct": c.direct,
            "rest": dict(zip(c.rest_keys.tolist(), c.rest_counts.tolist(), strict=True)),
            "pools": dict(zip(c.pool_keys.tolist(), c.pool_tw.tolist(), strict=True)),
            "remotes": dict(zip(c.remote_keys.tolist(), c.remote_tw.tolist(), strict=True)),
            "pairs": c.exact_pairs, "pending_pairs": c.pending_pairs,
            "held_ports": np.flatnonzero(tier.held_ports()).tolist()}


def test_replacing_a_slice_equals_a_rebuild_from_every_row() -> None:
    """A slice's listing (every TIME_WAIT row whose port key is in [lo, hi)) replaces the
    cached rows of that slice only: rows that ended early there go, new ones come, the
    others stay; the counts equal a tier rebuilt from all of them, and stay equal as
    both age."""
    from core.time_wait_slices import port_keys
    from tests.tables import churn, table

    rows = table(*churn(8, remote="10.0.0.9:443"), *churn(6, remote="10.0.0.8:80", first_port=50100))
    n = len(rows)
    deadline = np.array([0.5, 3, 5, 7, 9, 11, 40, 41, 2, 4, 6, 8, 10, 42], dtype=np.float64)
    args = dict(pool_key=np.arange(n, dtype=np.uint64) % 3, remote_key=np.array([1] * 8 + [2] * 6, np.uint64),
                counted=np.arange(n) % 4 != 0, out_remote=np.ones(n, bool),
                exact_pid=np.array([7, -1, 7, 8, -1, -1, 9, -1, 7, -1, 8, -1, -1, 9], np.int32),
                direct_pid=np.array([-1, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1, 5, -1, -1], np.int32),
                arrival=np.zeros(n, bool), fresh=np.zeros(n, bool),
                conn_key=np.arange(n, dtype=np.uint64) + 100)
    keys = port_keys(rows).astype(np.int64)
    first = deadline < 40  # the earlier listing; rows 6, 7, 13 arrive later
    early_end = np.zeros(n, bool)
    early_end[[3, 10]] = True  # taken over by tcp_tw_reuse or reset: gone before their deadline
    tier = TimeWaitCache()  # as the Sampler holds it: a segment per slice listed
    tier.keep_rows = False
    tier.rebuild(rows[first], deadline[first], 0.0, window=5.0, **{k: v[first] for k, v in args.items()})
    # The slice holds rows of both remotes: the second remote's ports and the first's last three.
    lo, hi = int(keys[5]), int(keys[n - 1]) + 1
    in_slice = (keys >= lo) & (keys < hi)
    assert 0 < in_slice.sum() < n and (in_slice & ~first).any() and (in_slice & early_end).any()
    now = 1.0
    tier.age(now)
    listed = in_slice & ~early_end & (deadline > now)
    tier.replace(lo, hi, rows[listed], deadline[listed], now, window=5.0,
                 **{k: v[listed] for k, v in args.items()})
    alive = (deadline > now) & ((first & ~in_slice) | listed)
    whole = TimeWaitTier(keep_rows=False)
    whole.rebuild(rows[alive], deadline[alive], now, window=5.0, **{k: v[alive] for k, v in args.items()})
    assert tier.alive == whole.alive == int(alive.sum())
    assert _tier_view(tier) == _tier_view(whole)
    assert np.array_equal(tier.expires_left(now), np.sort(whole.expires_left(now)))
    # Row 3 ended early outside the slice: it stays cached until its own slice is listed.
    assert alive[3] and not alive[10]
    later = 7.5  # ageing keeps them in step too
    tier.age(later)
    whole.age(later)
    assert _tier_view(tier) == _tier_view(whole)
    assert len(_tier_view(tier)["held_ports"]) == tier.alive


class Sliced(WrappedSource):
    """The Sampler fed slices as LinuxSource feeds them above its threshold, cut here
    from a whole real dump at the test's command (which slices the next read lists), so
    a test decides when each slice is renewed. The kernel's own slice filter is checked
    in tests/test_port_key_filter.py, the pace in tests/test_time_wait_slices.py."""

    def __init__(self, source: Any, cuts: list[int]) -> None:
        super().__init__(source)
        self.cuts = cuts
        self.next: list[int] = list(range(len(cuts) - 1))  # the first read lists everything
        self.requests = 0

    def request_listing(self) -> None:
        self.requests += 1
        self.next = list(range(len(self.cuts) - 1))

    def read(self, with_table: bool = True) -> TableRead:
        from core.model import TIME_WAIT

        read = self.source.read(with_table)
        assert read.time_wait_listed and read.expires_ms is not None  # a whole dump underneath
        is_tw = read.table["state"] == TIME_WAIT
        self.tw, self.left = read.table[is_tw], read.expires_ms[is_tw]
        slices = tuple((self.cuts[i], self.cuts[i + 1]) for i in self.next)
        self.next = []
        return dataclasses.replace(read, table=read.table[~is_tw], expires_ms=None, time_wait_listed=False,
                                   time_wait_slices=slices)

    def list_time_wait(self, lo: int, hi: int) -> Any:
        from core.model import TimeWaitPiece
        from core.time_wait_slices import port_keys

        keys = port_keys(self.tw).astype(np.int64)
        mine = (keys >= lo) & (keys < hi)
        return TimeWaitPiece(lo, hi, self.tw[mine].copy(), self.left[mine])


def _sliced_vs_whole() -> dict[str, Any]:
    """Two samplers over the same namespace and history: one renews the TIME_WAIT cache
    slice by slice, the other lists everything at every read."""
    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    listener = Listener(mode="client_closes")
    # Three slices of the client ports (the range is 40000-40999): ~1/3 of the rows each.
    cuts = [0, 40333 << 16, 40666 << 16, 1 << 32]
    sliced_source = Sliced(LinuxSource(trace=False, tier_min=1 << 30), cuts)
    sources = [sliced_source, WrappedSource(LinuxSource(trace=False, tier_min=1 << 30))]
    samplers = [Sampler(s) for s in sources]
    sliced, whole = samplers

    def both() -> list[Any]:
        return [s.sample() for s in samplers]

    first = Holder(listener.port, 40)
    both()  # everything listed: the holder's 40 connections are seen owned
    first.close_all()
    held = wait_until(lambda: _client_tw(listener.port), 20, "the first holder's TIME_WAIT")
    sliced_source.next = [0, 1, 2]
    both()
    # Churn after that listing: a second holder seen owned, then closed; a third never
    # seen open (its TIME_WAIT can only be inferred).
    second = Holder(listener.port, 30)
    both()
    second.close_all()
    # Settled before the next fork: a child forked while an accepted socket is still
    # open would hold it open (CLOSE_WAIT) and its client would never reach TIME_WAIT.
    # Most of them (now and then the kernel ends a closed loopback connection with a reset).
    after_second = wait_until(lambda: (n := _client_tw(listener.port)) >= held + 20 and n, 20,
                              "the second holder's TIME_WAIT")
    third = Holder(listener.port, 20)
    third.close_all()
    wait_until(lambda: _client_tw(listener.port) >= after_second + 14, 20, "the third holder's TIME_WAIT")
    renewed = []
    for i in range(3):  # one slice a read, as at a steady pace
        sliced_source.next = [i]
        renewed.append(both())
    kernel_tw = sockstat_tw()
    # tcp_tw_reuse is the pools': followed at once, nothing listed again.
    with open("/proc/sys/net/ipv4/tcp_tw_reuse", "w") as f:
        f.write("1")
    sliced_source.next = [0]
    reuse = sliced.sample()
    requests_after_reuse = sliced_source.requests
    # A new port range changes which rows count at all: the next read lists everything.
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 40499")
    sliced_source.next = [1]
    changed = sliced.sample()
    requests_after_change = sliced_source.requests
    relisted = sliced.sample()
    pids = (first.proc.pid, second.proc.pid, third.proc.pid)
    for holder in (first, second, third):
        holder.stop()
    for s in samplers:
        s.close()

    def view(sample: Any) -> dict[str, Any]:
        rows = {p.pid: (p.time_wait_exact, p.time_wait_inferred, dict(p.time_wait_toward))
                for p in sample.processes if p.pid in pids}
        return {"listing": sample.extra["time_wait_listing"], "tw": sample.states["TIME_WAIT"],
                "cached": sample.extra["time_wait_cached"], "pending": sample.extra["time_wait_pending"],
                "processes": rows, "unattributed": sample.time_wait_unattributed,
                "in_use": sample.ports.in_use, "pool": sample.ports.pool,
                "range_in_use": sample.ports.range_in_use,
                "remotes": [(r.address, r.port, r.time_wait) for r in sample.remotes]}

    return {"held": held, "pids": pids, "renewed": [[view(s) for s in pair] for pair in renewed],
            "kernel_tw": kernel_tw, "reuse": view(reuse), "changed": view(changed),
            "relisted": view(relisted),
            "requests_after_reuse": requests_after_reuse, "requests_after_change": requests_after_change}


def test_slices_renewed_one_by_one_equal_a_whole_listing_after_churn() -> None:
    r = run_in_netns(_sliced_vs_whole, sysctls=SYSCTLS)
    (part1, whole1), (part2, _), (done, whole) = r["renewed"]
    # While slices are renewed the kernel's count holds: rows not yet listed are pending.
    for part in (part1, part2):
        assert part["listing"] == "slice" and part["tw"] == part["cached"] + part["pending"]
    assert part1["pending"] >= part2["pending"] >= done["pending"] == 0 and part1["pending"] > 0
    # Once every slice was renewed, everything the sample says about TIME_WAIT (owners
    # exact and inferred, unattributed, pools, remotes) equals the whole listing's.
    assert done["pending"] == 0 and done["tw"] == done["cached"] == whole["tw"] == r["kernel_tw"]
    assert done == whole | {"listing": "slice"}
    first, second, third = r["pids"]
    exact = {pid: counts[0] for pid, counts in done["processes"].items()}
    assert exact[first] == r["held"] and exact[second] >= 25 and exact.get(third, 0) == 0
    # tcp_tw_reuse 1 on a loopback pool: its TIME_WAIT no longer holds ports, at once.
    assert r["reuse"]["listing"] == "slice" and r["requests_after_reuse"] == 0
    assert r["reuse"]["in_use"] < done["in_use"] and r["reuse"]["tw"] == done["tw"]
    # A new port range: that read renews its slice and asks for everything; the next
    # lists every slice and matches the kernel again.
    assert r["changed"]["listing"] == "slice" and r["requests_after_change"] == 1
    assert r["relisted"]["listing"] == "full" and r["relisted"]["pending"] == 0
    assert r["relisted"]["tw"] == r["relisted"]["cached"] == done["tw"]
