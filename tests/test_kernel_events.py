"""The sock:inet_sock_set_state reader: parsing, namespace filtering, instance lifecycle."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from core.model import FIN_WAIT1, SYN_SENT, format_address
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Listener

LINE4 = ("  my churner-12345   [001] ..... 123.456789: inet_sock_set_state: family=AF_INET "
         "protocol=IPPROTO_TCP sport=40001 dport=9000 saddr=127.0.0.1 daddr=127.0.0.2 "
         "saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.2 oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1")
LINE6 = ("python3-77 [000] b..2. 5.000000: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP "
         "sport=0 dport=443 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=:: daddrv6=::1 "
         "oldstate=TCP_CLOSE newstate=TCP_SYN_SENT")


def test_parse_recorded_lines():
    from core.sources.linux_trace import parse_line

    e4 = parse_line(LINE4)
    assert (e4.pid, e4.comm, e4.family, e4.lport, e4.rport, e4.newstate) == (
        12345, "my churner", 4, 40001, 9000, FIN_WAIT1)
    assert format_address(4, e4.laddr) == "127.0.0.1" and format_address(4, e4.raddr) == "127.0.0.2"
    e6 = parse_line(LINE6)
    assert (e6.pid, e6.family, e6.lport, e6.newstate) == (77, 6, 0, SYN_SENT)
    assert format_address(6, e6.raddr) == "::1"
    assert parse_line("CPU:1 [LOST 12 EVENTS]") is None
    assert parse_line("garbage") is None
    assert parse_line(LINE4.replace("TCP_FIN_WAIT1", "TCP_CLOSE")) is None


def _events_body():
    from core.sources.linux_trace import SockStateTrace

    trace = SockStateTrace()
    try:
        with Listener("127.0.0.1", 9000):
            c = socket.create_connection(("127.0.0.1", 9000))
            local = c.getsockname()
            c.close()
            events = wait_until(lambda: [e for e in trace.drain() if e.newstate == FIN_WAIT1] or None,
                                10, "the FIN_WAIT1 event")
            fin = events[0]
        # An exhausted range: connect() fails, and SYN_SENT still names us.
        with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
            f.write("40000 40001")
        with Listener("127.0.0.1", 9001):
            held = [socket.create_connection(("127.0.0.1", 9001)) for _ in range(2)]
            failed = socket.socket()
            with pytest.raises(OSError) as err:
                failed.connect(("127.0.0.1", 9001))
            assert err.value.errno == errno.EADDRNOTAVAIL
            syn = wait_until(lambda: [e for e in trace.drain() if e.newstate == SYN_SENT] or None, 10,
                             "SYN_SENT events")
            for s in held + [failed]:
                s.close()
        instance = trace.instance
    finally:
        trace.close()
    return {"fin": fin, "local": local, "syn": syn, "pid": os.getpid(), "instance": instance,
            "instance_left": os.path.isdir(instance)}


@requires_netns
def test_events_name_the_closing_and_the_connecting_process():
    from core.sources.linux_trace import find_tracefs  # noqa: F401  (skips cleanly below if absent)

    r = run_in_netns(_events_body)
    assert r["fin"].pid == r["pid"]
    assert (format_address(4, r["fin"].laddr), r["fin"].lport) == tuple(r["local"])
    assert r["fin"].rport == 9000
    assert all(e.pid == r["pid"] and e.rport == 9001 for e in r["syn"])
    assert len(r["syn"]) >= 3  # two that connected and the one that failed
    assert not r["instance_left"]


def _stale_body():
    from core.sources.linux_trace import INSTANCE_PREFIX, SockStateTrace, find_tracefs

    instances = os.path.join(find_tracefs(), "instances")
    dead = os.path.join(instances, f"{INSTANCE_PREFIX}999999999")
    live = os.path.join(instances, f"{INSTANCE_PREFIX}1")  # pid 1 is alive
    os.mkdir(dead)
    os.mkdir(live)
    try:
        trace = SockStateTrace()
        trace.close()
        return os.path.isdir(dead), os.path.isdir(live)
    finally:
        for path in (dead, live):
            if os.path.isdir(path):
                os.rmdir(path)


@requires_netns
def test_stale_instances_of_dead_runs_are_removed():
    dead_left, live_left = run_in_netns(_stale_body)
    assert not dead_left and live_left


def _foreign_body():
    from core.sources.linux_trace import SockStateTrace

    trace = SockStateTrace()
    try:
        # Traffic in another namespace (a second run_in_netns child) is not ours.
        run_in_netns(_connect_once)
        with Listener("127.0.0.1", 9002):
            socket.create_connection(("127.0.0.1", 9002)).close()
            mine = wait_until(lambda: [e for e in trace.drain() if e.rport == 9002] or None, 10,
                              "our own event")
        return {"mine": len(mine), "foreign_seen": trace.dropped_foreign}
    finally:
        trace.close()


def _connect_once():
    with Listener("127.0.0.1", 9003):
        socket.create_connection(("127.0.0.1", 9003)).close()


@requires_netns
def test_events_from_other_namespaces_are_dropped():
    r = run_in_netns(_foreign_body)
    assert r["mine"] >= 1
    assert r["foreign_seen"] >= 1
