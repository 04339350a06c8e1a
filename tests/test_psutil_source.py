"""The psutil fallback reader on real loopback sockets, inside private network namespaces."""

from __future__ import annotations

import errno
import os
import socket
from collections import namedtuple
from typing import Any

import pytest

from core.model import NO_PID, STATE_CODE, STATE_NAMES, format_address
from core.sources import psutil_source
from core.sources.psutil_source import PsutilSource, table_from_connections
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Listener

# The shapes of psutil's own named tuples (their home module moved in psutil 7.2).
sconn = namedtuple("sconn", "fd family type laddr raddr status pid")
addr = namedtuple("addr", "ip port")
Described = tuple[str, int, str, int, str, int, int]  # state, family, laddr, lport, raddr, rport, pid


def described(table: Any) -> list[Described]:
    rows = []
    for r in table:
        family = int(r["family"])
        rows.append((STATE_NAMES[r["state"]], family, format_address(family, bytes(r["laddr"])),
                     int(r["lport"]), format_address(family, bytes(r["raddr"])), int(r["rport"]),
                     int(r["pid"])))
    return sorted(rows)


def _mixed_sockets() -> dict[str, Any]:
    """Listeners on 127.0.0.1 and ::1, three held connections, one client-closed connection
    (TIME_WAIT on the client), one server that never closes (CLOSE_WAIT / FIN_WAIT2)."""
    from core.sources.linux import LinuxSource

    source = PsutilSource()
    with Listener("127.0.0.1", mode="client_closes") as v4, Listener("::1", mode="never_close") as v6:
        held = [socket.create_connection((v4.host, v4.port)) for _ in range(3)]
        closed = socket.create_connection((v4.host, v4.port))
        tw_port = closed.getsockname()[1]
        closed.close()
        half = socket.create_connection((v6.host, v6.port))
        half_port = half.getsockname()[1]
        half.close()

        def settled() -> Any:
            rows = described(source.read().table)
            states = {(state, lport) for state, _, _, lport, _, _, _ in rows}
            # Accepted by the listener's thread, not only queued in the kernel (no owner yet).
            server_rows = sum(1 for state, _, _, lport, _, _, pid in rows
                              if state == "ESTABLISHED" and lport == v4.port and pid == os.getpid())
            return (("TIME_WAIT", tw_port) in states and ("FIN_WAIT2", half_port) in states
                    and ("CLOSE_WAIT", v6.port) in states and server_rows == 3) and rows

        rows = wait_until(settled, 10, "TIME_WAIT, FIN_WAIT2 and CLOSE_WAIT rows in psutil's table")
        read = source.read()
        netlink = LinuxSource(trace=False)
        try:
            netlink_rows = described(netlink.read().table)
        finally:
            netlink.close()
        result = {
            "pid": os.getpid(), "v4": v4.port, "v6": v6.port, "tw_port": tw_port, "half_port": half_port,
            "held": sorted(s.getsockname()[1] for s in held), "rows": rows,
            "psutil_rows_again": described(read.table), "netlink_rows": netlink_rows,
            "established": read.counters.current_established, "time_wait_counter": read.counters.time_wait,
            "opens": read.counters.active_opens, "limits": read.limits, "complete": read.complete,
            "cheap": len(source.read(with_table=False).table),
            "cheap_established": source.read_counters().current_established,
        }
        for s in held:
            s.close()
        return result


@pytest.mark.netns
@requires_netns
def test_table_states_ports_and_owners() -> None:
    r = run_in_netns(_mixed_sockets)
    me, rows = r["pid"], r["rows"]
    v4, v6, tw_port, half_port = r["v4"], r["v6"], r["tw_port"], r["half_port"]

    assert ("LISTEN", 4, "127.0.0.1", v4, "0.0.0.0", 0, me) in rows
    assert ("LISTEN", 6, "::1", v6, "::", 0, me) in rows
    clients = sorted(row for row in rows if row[0] == "ESTABLISHED" and row[5] == v4)
    assert clients == [("ESTABLISHED", 4, "127.0.0.1", port, "127.0.0.1", v4, me) for port in r["held"]]
    servers = sorted(row for row in rows if row[0] == "ESTABLISHED" and row[3] == v4)
    assert servers == [("ESTABLISHED", 4, "127.0.0.1", v4, "127.0.0.1", port, me) for port in r["held"]]
    # Sockets no process holds any more: the kernel names no owner, and neither do we.
    assert ("TIME_WAIT", 4, "127.0.0.1", tw_port, "127.0.0.1", v4, NO_PID) in rows
    assert ("FIN_WAIT2", 6, "::1", half_port, "::1", v6, NO_PID) in rows
    assert ("CLOSE_WAIT", 6, "::1", v6, "::1", half_port, me) in rows  # the server never closed it
    assert len(rows) == 2 + 6 + 1 + 2


@pytest.mark.netns
@requires_netns
def test_table_agrees_with_the_netlink_reader() -> None:
    r = run_in_netns(_mixed_sockets)
    assert r["psutil_rows_again"] == r["netlink_rows"]


@pytest.mark.netns
@requires_netns
def test_counters_and_limits() -> None:
    r = run_in_netns(_mixed_sockets)
    assert r["established"] == 6 == r["cheap_established"]
    assert r["time_wait_counter"] is None and r["opens"] == 0
    assert psutil_source.CUMULATIVE_COUNTERS_LIMIT in r["limits"]
    assert r["complete"] is (os.geteuid() == 0)
    assert r["cheap"] == 0


def _exhaust(port_count: int) -> dict[str, Any]:
    """Connect and close (client first) until the kernel refuses: every local port of the
    range then sits in TIME_WAIT toward the one destination."""
    source = PsutilSource()
    with Listener("127.0.0.1", port=9000, mode="client_closes") as listener:
        ok, failure = 0, None
        for _ in range(port_count * 4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.connect((listener.host, listener.port))
                ok += 1
            except OSError as exc:
                failure = exc.errno
                break
            finally:
                s.close()

        # Not `ok` rows: now and then the kernel ends one fresh loopback TIME_WAIT with a
        # reset (OutRsts +1), which frees its port for one more connection before the
        # range runs out. Exhausted means every port of the range in TIME_WAIT.
        def all_time_wait() -> Any:
            rows = [row for row in described(source.read().table) if row[5] == listener.port]
            return len(rows) == port_count and all(row[0] == "TIME_WAIT" for row in rows) and rows

        rows = wait_until(all_time_wait, 10, "every client socket in TIME_WAIT")
        config = source.port_config()
        return {"ok": ok, "errno": failure, "rows": rows, "range": config.dynamic_range,
                "capacity": config.capacity, "tw_reuse": config.tw_reuse, "os": config.os_name}


@pytest.mark.netns
@requires_netns
def test_exhausted_range_shows_as_time_wait_without_owner() -> None:
    r = run_in_netns(_exhaust, 50, sysctls={"net.ipv4.ip_local_port_range": "40000 40049",
                                            "net.ipv4.tcp_tw_reuse": "0"})
    assert r["errno"] == errno.EADDRNOTAVAIL
    assert r["ok"] >= 50
    assert r["range"] == (40000, 40049) and r["capacity"] == 50 and r["tw_reuse"] == 0 and r["os"] == "Linux"
    assert sorted(row[3] for row in r["rows"]) == list(range(40000, 40050))
    assert {row[6] for row in r["rows"]} == {NO_PID}


def test_psutil_rows_without_pid_or_state() -> None:
    """Shapes psutil reports on other systems: no pid, status NONE, a scoped IPv6 address."""
    rows = [
        sconn(-1, socket.AF_INET6, socket.SOCK_STREAM, addr("fe80::1%en0", 50000), addr("fe80::2", 443),
              "NONE", None),
        sconn(5, socket.AF_INET, socket.SOCK_STREAM, addr("0.0.0.0", 22), (), "LISTEN", 1),
        sconn(6, socket.AF_INET, socket.SOCK_STREAM, addr("10.0.0.5", 50001), addr("10.0.0.9", 443),
              "DELETE_TCB", 7),
        # not TCP/IP: dropped (AF_UNIX is 1 everywhere; Python on Windows does not name it)
        sconn(7, getattr(socket, "AF_UNIX", 1), socket.SOCK_STREAM, "/tmp/x", "", "NONE", 8),
    ]
    assert described(table_from_connections(rows)) == sorted([
        ("BOUND", 6, "fe80::1", 50000, "fe80::2", 443, NO_PID),
        ("LISTEN", 4, "0.0.0.0", 22, "0.0.0.0", 0, 1),
        ("BOUND", 4, "10.0.0.5", 50001, "10.0.0.9", 443, 7),
    ])
    assert set(STATE_CODE) <= set(psutil_source.PSUTIL_STATE)


def test_port_config_off_linux_is_a_noted_default() -> None:
    config = psutil_source.read_port_config(system="darwin")
    assert config.os_name == "darwin"
    assert config.dynamic_range == (49152, 65535) and config.pool_scope == "per_local_address"
    assert any("not read on this OS" in note for note in config.notes)
