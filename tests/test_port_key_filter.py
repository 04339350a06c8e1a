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
    whole, _ = read_table(diag, ALL_STATES_MASK)
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
