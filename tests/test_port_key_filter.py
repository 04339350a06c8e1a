"""The kernel's own filter for a TIME_WAIT slice: inet_diag bytecode built by
port_key_filter accepts exactly the sockets whose (local port, remote port) key is in
the asked range, whatever the bounds (checked against the whole dump filtered here)."""

from __future__ import annotations

import random
import socket
import sys
from typing import Any

import numpy as np
import pytest

from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Listener

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sock_diag is Linux-only")
SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}


def _keys(table: np.ndarray) -> list[int]:
    return sorted((table["lport"].astype(np.int64) << 16 | table["rport"]).tolist())


def _settled(table: np.ndarray) -> list[np.ndarray] | None:
    """[table] once every socket is listening, established or in TIME_WAIT (closing ones
    come and go between two dumps), else None."""
    from core.model import ESTABLISHED, LISTEN, TIME_WAIT

    return [table] if np.isin(table["state"], [ESTABLISHED, LISTEN, TIME_WAIT]).all() else None


def _filtered_dumps(ranges: list[tuple[int, int]]) -> dict[str, Any]:
    from core.sources.netlink_diag import ALL_STATES_MASK, DiagSocket, port_key_filter, read_table

    listeners = [Listener(mode="client_closes") for _ in range(3)]
    held = []
    for listener in listeners:
        held += [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(15)]
        for _ in range(15):
            socket.create_connection(("127.0.0.1", listener.port)).close()
    wait_until(lambda: all(listener.accepted == 30 for listener in listeners), 20, "90 accepted")
    diag = DiagSocket()
    (whole,) = wait_until(lambda: _settled(read_table(diag, ALL_STATES_MASK)[0]), 20, "the closes to settle")
    keys = np.array(_keys(whole), dtype=np.int64)
    results = []
    for lo, hi in ranges:
        part, _ = read_table(diag, ALL_STATES_MASK, bytecode=port_key_filter(lo, hi))
        results.append({"got": _keys(part), "want": keys[(keys >= lo) & (keys < hi)].tolist()})
    # Bounds taken from the table itself: on a key, just before and just after it.
    for key in random.Random(7).sample(keys.tolist(), 12):
        for lo, hi in ((key, key + 1), (key + 1, 1 << 32), (0, key), (key - 1, key + 2)):
            lo, hi = max(lo, 0), min(hi, 1 << 32)
            part, _ = read_table(diag, ALL_STATES_MASK, bytecode=port_key_filter(lo, hi))
            results.append({"got": _keys(part), "want": keys[(keys >= lo) & (keys < hi)].tolist()})
    diag.close()
    for s in held:
        s.close()
    return {"results": results, "sockets": len(keys)}


@requires_netns
def test_the_kernel_sends_exactly_the_sockets_in_a_port_key_range() -> None:
    ranges = [(0, 1 << 32), (1, 1 << 32), (0, 40500 << 16), (40500 << 16, 1 << 32),
              ((40200 << 16) + 30000, (40600 << 16) + 5), (65535 << 16, 1 << 32), (0, 1)]
    r = run_in_netns(_filtered_dumps, ranges, sysctls=SYSCTLS)
    assert r["sockets"] >= 100  # listeners, both ends of held connections, TIME_WAIT
    nonempty = 0
    for result in r["results"]:
        assert result["got"] == result["want"]
        nonempty += bool(result["want"])
    assert nonempty >= 20


def test_a_range_outside_the_key_space_is_refused_in_one_line() -> None:
    from core.sources.netlink_diag import port_key_filter

    for lo, hi in ((5, 5), (-1, 3), (0, (1 << 32) + 1)):
        with pytest.raises(ValueError, match="port key range"):
            port_key_filter(lo, hi)
    assert port_key_filter(0, 1 << 32) == b""


def _source_slices(broken_filter: bool) -> dict[str, Any]:
    """LinuxSource above its threshold: a read names one slice, listed from the read's
    own dump (or, where the kernel refuses that filter, from a second dump)."""
    import core.sources.linux as linux
    from core.model import TIME_WAIT
    from core.sources.netlink_diag import ALL_STATES_MASK, DiagSocket, read_table
    from core.time_wait_slices import port_keys

    if broken_filter:  # an op code no kernel knows: EINVAL, as from kernels before 5.10
        linux.full_sockets_and = lambda program: bytes([99, 4, 8, 0]) + program  # type: ignore[assignment]
    listener = Listener(mode="client_closes")
    held = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(10)]
    for i in range(60):
        client = socket.socket()
        if i < 3:  # bound to a device: the kernel's filter cannot leave its TIME_WAIT out
            client.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        client.connect(("127.0.0.1", listener.port))
        client.close()
    wait_until(lambda: listener.accepted == 70, 20, "70 accepted")
    diag = DiagSocket()
    (whole,) = wait_until(lambda: _settled(read_table(diag, ALL_STATES_MASK)[0]), 20, "the closes to settle")
    # Slices of ~15 rows (the real ones hold ~12k): several slices of these 60 TIME_WAIT.
    source = linux.LinuxSource(trace=False, tier_min=1, refresh_seconds=5.0, slice_rows=15, whole_rows=20)
    reads = []
    for _ in range(10):
        read = source.read()
        pieces = [source.list_time_wait(lo, hi) for lo, hi in read.time_wait_slices]
        reads.append({"slices": read.time_wait_slices, "states": sorted(set(read.table["state"].tolist())),
                      "live": len(read.table),
                      "pieces": [(p.lo, p.hi, port_keys(p.rows).tolist()) for p in pieces]})
        # A read's worth of time passes (the slices' own clock, not the test's).
        slices = source._slices  # noqa: SLF001
        slices._listed_at = [None if t is None else t - slices.cycle_seconds / len(slices.ranges())  # noqa: SLF001
                             for t in slices._listed_at]  # noqa: SLF001
    one_dump = source._one_dump  # noqa: SLF001
    source.close()
    diag.close()
    for s in held:
        s.close()
    is_tw = whole["state"] == TIME_WAIT
    return {"reads": reads, "tw_keys": sorted(port_keys(whole[is_tw]).tolist()),
            "live": int((~is_tw).sum()), "time_wait": TIME_WAIT, "one_dump": one_dump}


@pytest.mark.parametrize("broken_filter", [False, True], ids=["one dump", "kernel refuses: two dumps"])
@requires_netns
def test_each_read_lists_one_slice_and_a_round_lists_every_time_wait_once(broken_filter: bool) -> None:
    r = run_in_netns(_source_slices, broken_filter, sysctls=SYSCTLS)
    first, *steady = r["reads"]
    # The first read lists every slice; then one a read at most (a read right after the
    # cuts moved to follow the keys may list none: the new slices are dated by the old
    # ones they overlap). TIME_WAIT never reaches the live table, and no slice holds a
    # key outside its range (a device-bound socket's TIME_WAIT, which the kernel sends
    # with every slice, included).
    assert len(first["slices"]) >= 5
    assert all(len(read["slices"]) <= 1 for read in steady)
    assert sum(len(read["slices"]) for read in steady) >= len(steady) - 1
    for read in r["reads"]:
        assert r["time_wait"] not in read["states"] and read["live"] == r["live"]
        for lo, hi, keys in read["pieces"]:
            assert all(lo <= k < hi for k in keys)
    assert sorted(k for _, _, keys in first["pieces"] for k in keys) == r["tw_keys"]
    # Then the cuts follow the keys (several slices of ~15 rows); a round of single slices
    # covers the key space once and lists every TIME_WAIT once.
    pieces = [piece for read in steady for piece in read["pieces"]]
    count = len({(lo, hi) for lo, hi, _ in pieces})
    assert 3 <= count <= len(pieces)
    round_ = sorted(pieces[:count])
    assert round_[0][0] == 0 and round_[-1][1] == 1 << 32
    assert all(a[1] == b[0] for a, b in zip(round_, round_[1:], strict=False))
    assert sorted(k for _, _, keys in round_ for k in keys) == r["tw_keys"]
    assert r["one_dump"] is (not broken_filter)
