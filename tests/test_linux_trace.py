"""core.sources.linux_trace: the sock:inet_sock_set_state reader.

Kernel tests are real: a private tracing instance, real sockets on loopback inside private
network namespaces (run_in_netns). The tracepoint is global, so other namespaces on this
machine (other test runs) feed the instance too: assertions are about OUR events (by pid,
port, process name) and counters are compared with >=, never with totals of the machine.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.model import FIN_WAIT1, SYN_SENT, TraceEvent, format_address, pack_address
from tests.support.netns import enter_new_netns, requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener, set_process_name

if sys.platform.startswith("linux"):
    from core.sources import linux_trace
    from core.sources.linux_trace import (
        INSTANCE_PREFIX,
        SockStateTrace,
        TraceParser,
        TraceUnavailable,
        event_filter,
        keep_recorded_pid,
        lost_in,
        parse_line,
    )

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tracefs is Linux-only")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_fork = multiprocessing.get_context("fork")


def _tracefs_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "tracefs is Linux-only"
    if os.geteuid() != 0:
        return "needs root to create a tracing instance"
    # The product's own finder mounts tracefs when it is not (a fresh machine), as the
    # sampler would; checking the directory alone skipped every test there.
    from core.sources.linux_trace import TraceUnavailable, find_tracefs
    try:
        tracefs = find_tracefs()
    except TraceUnavailable as exc:
        return f"tracefs is not available here: {exc}"
    if not os.path.isdir(os.path.join(tracefs, "events/sock/inet_sock_set_state")):
        return "tracefs has no sock:inet_sock_set_state event here"
    return None


requires_trace = pytest.mark.skipif((reason := _tracefs_reason()) is not None, reason=reason or "")

# --- recorded lines (from this machine's trace_pipe, Linux 6.18) ----------------------------

# A worker thread (tid 7054) of process 7013, option record-tgid on.
THREAD_V4_SYN = (
    "         python3-7054    (   7013) [000] .....  8965.067672: inet_sock_set_state: "
    "family=AF_INET protocol=IPPROTO_TCP sport=0 dport=35541 saddr=127.0.0.1 daddr=127.0.0.1 "
    "saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_CLOSE newstate=TCP_SYN_SENT")
# record-tgid off; comm with a space and dashes.
ODD_COMM_V6_SYN = (
    "  my we-ird-x-99-21627   [000] .....  9318.997609: inet_sock_set_state: family=AF_INET6 "
    "protocol=IPPROTO_TCP sport=0 dport=9000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=::1 "
    "oldstate=TCP_CLOSE newstate=TCP_SYN_SENT")
ODD_COMM_V6_FIN = (
    "  my we-ird-x-99-21627   [000] .....  9318.997739: inet_sock_set_state: family=AF_INET6 "
    "protocol=IPPROTO_TCP sport=54510 dport=9000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=::1 "
    "oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1")
# An AF_INET6 socket talking to an IPv4-mapped address.
MAPPED_FIN = (
    "         python3-7054    (   7013) [000] .....  8965.067850: inet_sock_set_state: "
    "family=AF_INET6 protocol=IPPROTO_TCP sport=54496 dport=35541 saddr=127.0.0.1 daddr=127.0.0.1 "
    "saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1")
# The kernel no longer knew the comm nor the tgid of pid 4242 when it printed the line.
UNKNOWN_COMM = (
    "           <...>-4242    (-------) [001] b..1.  9001.000001: inet_sock_set_state: "
    "family=AF_INET protocol=IPPROTO_TCP sport=40001 dport=443 saddr=10.1.2.3 daddr=192.0.2.7 "
    "saddrv6=::ffff:10.1.2.3 daddrv6=::ffff:192.0.2.7 oldstate=TCP_ESTABLISHED newstate=TCP_FIN_WAIT1")
LOST = "CPU:1 [LOST 1234 EVENTS]"
OTHER_STATE = THREAD_V4_SYN.replace("newstate=TCP_SYN_SENT", "newstate=TCP_ESTABLISHED")
BAD_ADDRESS = THREAD_V4_SYN.replace("daddr=127.0.0.1 ", "daddr=999.0.0.1 ")
GARBAGE = ["", "garbage", "python3-1 [000] ..... 1.0: sched_switch: prev_comm=x", "\x00\x01 binary"]


def _addr(text: str) -> bytes:
    return pack_address(text)[1]


def test_recorded_lines_parse_to_events() -> None:
    e = parse_line(THREAD_V4_SYN)
    assert e == TraceEvent(pid=7013, comm="python3", family=4, laddr=_addr("127.0.0.1"), lport=0,
                           raddr=_addr("127.0.0.1"), rport=35541, newstate=SYN_SENT)
    e = parse_line(ODD_COMM_V6_SYN)
    assert e is not None and (e.pid, e.comm, e.family, e.lport, e.rport, e.newstate) == (
        21627, "my we-ird-x-99", 6, 0, 9000, SYN_SENT)
    assert format_address(6, e.raddr) == "::1" and format_address(6, e.laddr) == "::1"
    e = parse_line(ODD_COMM_V6_FIN)
    assert e is not None and (e.lport, e.newstate) == (54510, FIN_WAIT1)
    e = parse_line(MAPPED_FIN)
    assert e is not None and e.family == 6
    assert e.raddr == socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")
    e = parse_line(UNKNOWN_COMM)
    assert e is not None and (e.pid, e.comm, e.lport, e.rport) == (4242, "", 40001, 443)
    assert (format_address(4, e.laddr), format_address(4, e.raddr)) == ("10.1.2.3", "192.0.2.7")
    for line in [LOST, OTHER_STATE, BAD_ADDRESS, *GARBAGE]:
        assert parse_line(line) is None, line
    assert lost_in(LOST) == 1234 and lost_in(THREAD_V4_SYN) == 0


def test_parser_counts_lost_and_unparsed_lines_and_keeps_cut_lines() -> None:
    lines = [THREAD_V4_SYN, LOST, ODD_COMM_V6_SYN, OTHER_STATE, *GARBAGE, ODD_COMM_V6_FIN, BAD_ADDRESS,
             UNKNOWN_COMM, "CPU:0 [LOST 6 EVENTS]", MAPPED_FIN]
    data = ("\n".join(lines) + "\n").encode()
    parser = TraceParser()
    events: list[TraceEvent] = []
    # Cut at every 37th byte, as non-blocking reads cut lines anywhere.
    for offset in range(0, len(data), 37):
        events += parser.feed(data[offset:offset + 37], keep_recorded_pid)
    assert [(e.pid, e.newstate) for e in events] == [
        (7013, SYN_SENT), (21627, SYN_SENT), (21627, FIN_WAIT1), (4242, FIN_WAIT1), (7013, FIN_WAIT1)]
    assert parser.lost == 1240
    assert parser.unparsed == 1 + len(GARBAGE) + 1  # other state, garbage, bad address
    assert parser.returned == 5 and parser.pending_bytes == 0
    # An unterminated tail waits for its end.
    assert parser.feed(THREAD_V4_SYN[:50].encode(), keep_recorded_pid) == []
    assert [e.pid for e in parser.feed((THREAD_V4_SYN[50:] + "\n").encode(), keep_recorded_pid)] == [7013]


def test_parser_drops_what_the_namespace_check_rejects_and_stops_at_max_events() -> None:
    lines = [THREAD_V4_SYN, ODD_COMM_V6_SYN, UNKNOWN_COMM, MAPPED_FIN, ODD_COMM_V6_FIN]
    data = ("\n".join(lines) + "\n").encode()
    asked: list[int] = []

    def pid_to_keep(tid: int, tgid: bytes | None) -> int:
        asked.append(tid)
        return {7054: 7013, 21627: -1}.get(tid, -2)  # 21627 foreign, 4242 gone

    parser = TraceParser()
    first = parser.feed(data, pid_to_keep, max_events=1)
    assert [e.pid for e in first] == [7013] and parser.pending_bytes > 0
    rest = parser.feed(b"", pid_to_keep)
    assert [(e.pid, e.newstate) for e in rest] == [(7013, FIN_WAIT1)]
    # Not shown to be ours: 2 of another namespace + 1 of a process already gone.
    assert (parser.dropped_foreign, parser.dropped_gone, parser.unparsed) == (3, 1, 0)
    assert asked.count(21627) == 1  # asked once per thread per chunk


def test_a_chunk_that_may_be_cut_parses_like_one_that_may_not() -> None:
    # At least max_events lines: the parser keeps the matches' positions (finditer), else it
    # takes only their groups (findall). Both ways give the same events, counters and asks.
    lines = [THREAD_V4_SYN, LOST, ODD_COMM_V6_SYN, OTHER_STATE, *GARBAGE, ODD_COMM_V6_FIN, BAD_ADDRESS,
             UNKNOWN_COMM, MAPPED_FIN, THREAD_V4_SYN.replace("(   7013)", "(-------)")]
    data = ("\n".join(lines) + "\n").encode()
    results = []
    for max_events in (len(lines), 1_000_000):
        asked: list[tuple[int, bytes | None]] = []

        def pid_to_keep(tid: int, tgid: bytes | None, asked: list[tuple[int, bytes | None]] = asked) -> int:
            asked.append((tid, tgid))
            return -2 if tid == 4242 else keep_recorded_pid(tid, tgid)

        parser = TraceParser()
        events = parser.feed(data, pid_to_keep, max_events=max_events, comm_of=lambda tid: f"thread {tid}")
        results.append((events, asked, parser.lost, parser.unparsed, parser.dropped_gone, parser.returned))
    assert results[0] == results[1]
    events, asked = results[0][:2]
    assert [(e.pid, e.comm) for e in events] == [(7013, "python3"), *[(21627, "my we-ird-x-99")] * 2,
                                                  *[(7013, "python3")] * 2]
    # Asked once per thread, in order; 4242 is gone (its "<...>" line dropped, never named).
    assert asked == [(7054, b"7013"), (21627, None), (4242, b"-------")]


def test_parse_of_100k_lines_fed_in_chunks() -> None:
    # Lines cut across 64 KiB chunks all parse. The rate is printed for a reader; it is not
    # asserted (absolute times fail on a loaded machine).
    lines = [THREAD_V4_SYN.replace("sport=0 ", f"sport={32768 + i % 28000} ") if i % 4 else ODD_COMM_V6_SYN
             for i in range(100_000)]
    data = ("\n".join(lines) + "\n").encode()
    parser = TraceParser()
    started = time.perf_counter()
    count = 0
    for offset in range(0, len(data), 1 << 16):
        count += len(parser.feed(data[offset:offset + (1 << 16)], keep_recorded_pid))
    elapsed = time.perf_counter() - started
    rate = len(lines) / elapsed
    print(f"\nparsed {len(lines)} trace lines in {elapsed * 1000:.0f} ms: {rate:,.0f} lines/s")
    assert count == len(lines) and parser.unparsed == 0


def test_filter_is_built_from_the_event_format() -> None:
    fmt_path = "/sys/kernel/tracing/events/sock/inet_sock_set_state/format"
    recorded = ('field:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;\n print fmt: "...", '
                '__print_symbolic(REC->newstate, { 1, "TCP_ESTABLISHED" }, { 2, "TCP_SYN_SENT" }, '
                '{ 3, "TCP_SYN_RECV" }, { 4, "TCP_FIN_WAIT1" })')
    assert event_filter(recorded) == ("protocol == 6 && (newstate == 2 || newstate == 4) "
                                      "&& !(common_flags & 0x58)")
    # A kernel numbering the states differently (and without the protocol field) is obeyed.
    assert event_filter('{ 7, "TCP_SYN_SENT" }, { 9, "TCP_FIN_WAIT1" }') == (
        "(newstate == 7 || newstate == 9) && !(common_flags & 0x58)")
    if os.access(fmt_path, os.R_OK):
        with open(fmt_path) as f:
            assert event_filter(f.read()) == event_filter(recorded)


# --- kernel: helpers ------------------------------------------------------------------------


def _time_wait_tuples() -> set[tuple[int, bytes, int, bytes, int]]:
    """(family, laddr16, lport, raddr16, rport) of every TIME_WAIT socket in /proc/net/tcp{,6}."""
    found = set()
    for family, path in ((4, "/proc/net/tcp"), (6, "/proc/net/tcp6")):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] != "06":
                    continue
                ends = []
                for end in fields[1:3]:
                    hex_addr, hex_port = end.split(":")
                    raw = bytes.fromhex(hex_addr)
                    # /proc prints each 32-bit word in host (little-endian) order.
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    ends.append((words + bytes(16 - len(words)), int(hex_port, 16)))
                found.add((family, ends[0][0], ends[0][1], ends[1][0], ends[1][1]))
    return found


def _collect(trace: SockStateTrace, into: list[TraceEvent], want: Callable[[list[TraceEvent]], Any],
             what: str, timeout: float = 10.0) -> Any:
    """Drain into `into` until want(into) is truthy."""
    def step() -> Any:
        into.extend(trace.drain())
        return want(into)
    return wait_until(step, timeout, what)


def _instance_dirs() -> set[str]:
    instances = os.path.join(linux_trace.find_tracefs(), "instances")
    return {n for n in os.listdir(instances) if n.startswith(INSTANCE_PREFIX)}


# --- kernel: (1) connect + close names us, with the exact TIME_WAIT 4-tuple ------------------


def _connect_close_body(host: str) -> dict[str, Any]:
    trace = SockStateTrace()
    try:
        events: list[TraceEvent] = []
        with Listener(host, 0) as listener:
            client = socket.create_connection((host, listener.port))
            local, peer = client.getsockname()[:2], client.getpeername()[:2]
            client.close()
            family, laddr = pack_address(local[0])
            tuple_ = (family, laddr, local[1], pack_address(peer[0])[1], peer[1])
            wait_until(lambda: tuple_ in _time_wait_tuples(), 10, "our socket in TIME_WAIT")
            _collect(trace, events, lambda evs: any(e.newstate == FIN_WAIT1 and e.lport == local[1]
                                                    for e in evs), "the FIN_WAIT1 event")
        with open("/proc/self/comm") as f:
            comm = f.read().strip()
        return {"events": [e for e in events if e.rport == listener.port], "tuple": tuple_,
                "pid": os.getpid(), "comm": comm, "port": listener.port,
                "netns_only": trace.own_netns_only}
    finally:
        trace.close()


@requires_trace
@requires_netns
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_connect_and_close_name_our_pid_and_the_time_wait_tuple(host: str) -> None:
    r = run_in_netns(_connect_close_body, host)
    assert r["netns_only"]
    syn = [e for e in r["events"] if e.newstate == SYN_SENT]
    fin = [e for e in r["events"] if e.newstate == FIN_WAIT1]
    family, laddr, lport, raddr, rport = r["tuple"]
    assert len(syn) == 1 and len(fin) == 1, r["events"]
    assert (syn[0].pid, syn[0].comm, syn[0].family, syn[0].raddr, syn[0].rport) == (
        r["pid"], r["comm"], family, raddr, r["port"])
    assert syn[0].lport == 0  # no port chosen yet when SYN_SENT fires
    assert (fin[0].pid, fin[0].family, fin[0].laddr, fin[0].lport, fin[0].raddr, fin[0].rport) == (
        r["pid"], family, laddr, lport, raddr, rport)


def _thread_body() -> dict[str, Any]:
    """A connect+close from a named worker thread: the event's pid is the process (tgid),
    its comm the thread's name."""
    trace = SockStateTrace()
    try:
        events: list[TraceEvent] = []
        tids: list[int] = []
        with Listener("127.0.0.1", 0) as listener:
            def work() -> None:
                set_process_name("pp worker-1")
                tids.append(threading.get_native_id())
                socket.create_connection(("127.0.0.1", listener.port)).close()
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
            _collect(trace, events, lambda evs: sum(e.rport == listener.port for e in evs) >= 2,
                     "the worker's events")
        return {"events": [e for e in events if e.rport == listener.port], "pid": os.getpid(),
                "tid": tids[0]}
    finally:
        trace.close()


@requires_trace
@requires_netns
def test_events_of_a_thread_name_its_process() -> None:
    r = run_in_netns(_thread_body)
    assert r["tid"] != r["pid"]
    assert sorted(e.newstate for e in r["events"]) == [SYN_SENT, FIN_WAIT1]
    assert all(e.pid == r["pid"] and e.comm == "pp worker-1" for e in r["events"])


# --- kernel: (2) failing connects (EADDRNOTAVAIL) still name the process ---------------------

NARROW = {"net.ipv4.ip_local_port_range": "40000 40004", "net.ipv4.tcp_tw_reuse": "0"}


def _exhausted_body() -> dict[str, Any]:
    trace = SockStateTrace()
    try:
        events: list[TraceEvent] = []
        with Listener("127.0.0.1", 9000):
            # Connect until the range is exhausted and 20 attempts have failed. (connect()
            # may use only 4 of these 5 ports: the kernel rounds an odd range size down.)
            held: list[socket.socket] = []
            failures = 0
            while failures < 20:
                s = socket.socket()
                try:
                    s.connect(("127.0.0.1", 9000))
                    held.append(s)
                except OSError as exc:
                    assert exc.errno == errno.EADDRNOTAVAIL, exc
                    assert held, "the very first connect failed"
                    failures += 1
                    s.close()
            attempts = len(held) + failures
            _collect(trace, events, lambda evs: sum(e.rport == 9000 for e in evs) >= attempts,
                     f"{attempts} SYN_SENT events")
            for s in held:
                s.close()
        return {"events": [e for e in events if e.rport == 9000], "connected": len(held),
                "failures": failures, "pid": os.getpid()}
    finally:
        trace.close()


@requires_trace
@requires_netns
def test_failing_connects_still_produce_syn_sent_naming_the_process() -> None:
    r = run_in_netns(_exhausted_body, sysctls=NARROW)
    assert 4 <= r["connected"] <= 5 and r["failures"] == 20
    syn = [e for e in r["events"] if e.newstate == SYN_SENT]
    # One per attempt: those that connected and the 20 that failed with EADDRNOTAVAIL.
    assert len(syn) == r["connected"] + 20
    assert all(e.pid == r["pid"] and e.lport == 0 and format_address(4, e.raddr) == "127.0.0.1"
               for e in syn)


def _churner_body() -> dict[str, Any]:
    trace = SockStateTrace()
    try:
        events: list[TraceEvent] = []
        with Listener("127.0.0.1", 9000), \
                Churner("127.0.0.1", 9000, hold_s=0.0, name="pp-churn er") as churner:
            # Draining while it runs: its namespace is checked while it is alive.
            _collect(trace, events, lambda evs: churner.addr_not_avail >= 20, "EADDRNOTAVAIL in the churner")
            churner.stop()
            attempts = churner.ok + churner.failed
            pid = churner.pid
            # Events still buffered when it exited are kept: it was seen in our namespace.
            events.extend(trace.drain())
        return {"events": [e for e in events if e.pid == pid], "attempts": attempts,
                "addr_not_avail": churner.addr_not_avail, "alive": os.path.exists(f"/proc/{pid}")}
    finally:
        trace.close()


@requires_trace
@requires_netns
def test_an_exhausting_process_is_named_by_its_failed_attempts() -> None:
    r = run_in_netns(_churner_body, sysctls=NARROW)
    assert not r["alive"]
    assert r["addr_not_avail"] >= 20  # the range was exhausted
    syn = [e for e in r["events"] if e.newstate == SYN_SENT]
    # Every attempt it counted fired SYN_SENT (it may have fired one more as it was killed).
    assert r["attempts"] <= len(syn) <= r["attempts"] + 1
    assert all(e.comm == "pp-churn er" and e.rport == 9000 for e in r["events"])


def _short_lived_body() -> dict[str, Any]:
    """A process that connects and exits before we ever drain: never seen, so dropped."""
    trace = SockStateTrace()
    try:
        with Listener("127.0.0.1", 9000):
            child = _fork.Process(target=_connect_once, args=(9000, "pp-shortlived"))
            child.start()
            child.join()
            gone_before = trace.dropped_gone
            events: list[TraceEvent] = []
            # Our own connection after it: once ours is read, the child's are read too.
            socket.create_connection(("127.0.0.1", 9000)).close()
            _collect(trace, events, lambda evs: sum(e.pid == os.getpid() for e in evs) >= 2, "our events")
        return {"names": {e.comm for e in events}, "gone": trace.dropped_gone - gone_before}
    finally:
        trace.close()


def _connect_once(port: int, name: str) -> None:
    set_process_name(name)
    socket.create_connection(("127.0.0.1", port)).close()


@requires_trace
@requires_netns
def test_events_of_a_process_gone_before_it_was_seen_are_dropped() -> None:
    r = run_in_netns(_short_lived_body)
    assert "pp-shortlived" not in r["names"]
    assert r["gone"] >= 2


# --- kernel: (3) other network namespaces are dropped ----------------------------------------


def _foreign_churn(port: int, count: int, ready: Any, done: Any, release: Any) -> None:
    """In a namespace of its own: the SAME address and port as ours, `count` connections,
    then stay alive until released (so the reader sees a live foreign task)."""
    enter_new_netns()
    set_process_name("pp-foreign")
    with Listener("127.0.0.1", port):
        ready.set()
        for _ in range(count):
            socket.create_connection(("127.0.0.1", port)).close()
        done.set()
        release.wait(30)


def _foreign_body() -> dict[str, Any]:
    trace = SockStateTrace()
    ready, done, release = _fork.Event(), _fork.Event(), _fork.Event()
    foreign = _fork.Process(target=_foreign_churn, args=(9000, 50, ready, done, release))
    try:
        events: list[TraceEvent] = []
        with Listener("127.0.0.1", 9000):
            foreign.start()
            assert ready.wait(10) and done.wait(30)
            foreign_before = trace.dropped_foreign
            for _ in range(10):
                socket.create_connection(("127.0.0.1", 9000)).close()
            _collect(trace, events, lambda evs: sum(e.pid == os.getpid() for e in evs) >= 20, "our 20 events")
            release.set()
        return {"events": [e for e in events if e.rport == 9000 or e.lport == 9000],
                "pid": os.getpid(), "foreign_pid": foreign.pid,
                "dropped_foreign": trace.dropped_foreign - foreign_before}
    finally:
        release.set()
        foreign.join(10)
        trace.close()


@requires_trace
@requires_netns
def test_events_from_another_network_namespace_are_dropped() -> None:
    r = run_in_netns(_foreign_body)
    # Both namespaces used 127.0.0.1:9000; only ours came through, all 10+10 of them.
    assert all(e.pid == r["pid"] for e in r["events"]), {e.pid for e in r["events"]}
    assert sorted(e.newstate for e in r["events"]) == [SYN_SENT] * 10 + [FIN_WAIT1] * 10
    assert r["dropped_foreign"] >= 100  # its 50 SYN_SENT + 50 FIN_WAIT1 were seen and dropped


# --- kernel: (4) stale instances of crashed runs are removed, live ones kept -----------------


def _crash_with_instance(conn: Any) -> None:
    trace = SockStateTrace()
    conn.send(os.path.basename(trace.instance))
    os._exit(0)  # a crash: no close, no atexit


def _hold_instance(conn: Any, release: Any) -> None:
    trace = SockStateTrace()
    conn.send(os.path.basename(trace.instance))
    release.wait(30)
    trace.close()


@requires_trace
def test_stale_instances_are_removed_on_start_and_live_ones_kept() -> None:
    parent, child = _fork.Pipe()
    release = _fork.Event()
    live = _fork.Process(target=_hold_instance, args=(child, release))
    live.start()
    live_name = parent.recv()
    # A bare directory named after a live pid that is not ours (pid 1) is not ours to remove.
    pid1 = os.path.join(linux_trace.find_tracefs(), "instances", f"{INSTANCE_PREFIX}1")
    made_pid1 = not os.path.exists(pid1)
    if made_pid1:
        os.mkdir(pid1)
    try:
        crashed = _fork.Process(target=_crash_with_instance, args=(child,))
        crashed.start()
        crashed_name = parent.recv()
        crashed.join()
        assert {crashed_name, live_name} <= _instance_dirs()
        trace = SockStateTrace()
        try:
            assert crashed_name in trace.stale_removed
            left = _instance_dirs()
            assert crashed_name not in left
            assert {live_name, f"{INSTANCE_PREFIX}1", os.path.basename(trace.instance)} <= left
        finally:
            trace.close()
    finally:
        release.set()
        live.join(10)
        if made_pid1:
            os.rmdir(pid1)
    assert live_name not in _instance_dirs()  # it closed its own


# --- kernel: (5) close() removes our instance; cleanup paths ---------------------------------


@requires_trace
def test_close_removes_the_instance_and_is_idempotent() -> None:
    trace = SockStateTrace()
    second = SockStateTrace()  # a second reader in one process gets its own instance
    try:
        assert trace.instance != second.instance
        assert os.path.isdir(trace.instance) and os.path.isdir(second.instance)
        with open(os.path.join(trace.instance, linux_trace.EVENT_DIR, "filter")) as f:
            assert "common_flags & 0x58" in f.read()  # the kernel accepted the tight filter
        trace.close()
        assert not os.path.exists(trace.instance) and trace.closed
        trace.close()
        assert trace.drain() == []
        assert os.path.isdir(second.instance)
    finally:
        trace.close()
        second.close()
    assert not os.path.exists(second.instance)


@requires_trace
def test_a_forked_child_neither_holds_nor_removes_our_instance() -> None:
    trace = SockStateTrace()
    try:
        pid = os.fork()
        if pid == 0:  # the child: what atexit would do in it
            code = 3
            try:
                code = 0 if trace.closed else 4  # the inherited trace_pipe was closed at fork
                trace.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.isdir(trace.instance) and not trace.closed
        with open(os.path.join(trace.instance, linux_trace.EVENT_DIR, "enable")) as f:
            assert f.read().strip() == "1"
    finally:
        trace.close()
    assert not os.path.exists(trace.instance)  # no child holds trace_pipe: removable


_EXIT_SCRIPT = """
import signal, sys, time
from core.sources.linux_trace import SockStateTrace
trace = SockStateTrace()
mode = sys.argv[1]
if mode == "signal":
    def on_term(signum, frame):
        trace.close()
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
print(trace.instance, flush=True)
if mode == "signal":
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        trace.drain()
"""


@requires_trace
@pytest.mark.parametrize("mode", ["atexit", "signal"])
def test_instance_is_removed_at_exit_and_from_a_signal_handler(mode: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _EXIT_SCRIPT, mode], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    instance = proc.stdout.readline().strip()
    assert instance.startswith("/"), proc.stderr.read() if proc.stderr else ""
    if mode == "signal":
        assert os.path.isdir(instance)
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not os.path.exists(instance)


# --- kernel: lost events, mounting, refusals -------------------------------------------------


def _lost_body() -> dict[str, Any]:
    trace = SockStateTrace(buffer_kb=8)  # a few hundred events per CPU at most
    try:
        with Listener("127.0.0.1", 9000):
            for _ in range(3000):
                socket.create_connection(("127.0.0.1", 9000)).close()
        events = trace.drain()
        while more := trace.drain():
            events += more
        ours = sum(e.pid == os.getpid() for e in events)
        return {"ours": ours, "lost": trace.lost, "buffer_kb": trace.buffer_kb}
    finally:
        trace.close()


@requires_trace
@requires_netns
def test_events_overwritten_in_a_small_buffer_are_counted_as_lost() -> None:
    r = run_in_netns(_lost_body)
    assert r["buffer_kb"] < 64
    assert r["ours"] < 6000
    # Every one of our 6000 events was either read or reported lost (the kernel's LOST
    # count also covers other namespaces' events, hence >=).
    assert r["ours"] + r["lost"] >= 6000


def _mount_body() -> dict[str, Any]:
    """In a private mount namespace: unmount tracefs, then the reader must mount it again."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private, mnt_detach = 0x00020000, 0x4000, 0x40000, 2
    assert libc.unshare(clone_newns) == 0, os.strerror(ctypes.get_errno())
    assert libc.mount(b"none", b"/", None, ms_rec | ms_private, None) == 0, os.strerror(ctypes.get_errno())
    tracefs = linux_trace.TRACEFS_MOUNT
    while os.path.isdir(os.path.join(tracefs, "instances")):
        assert libc.umount2(tracefs.encode(), mnt_detach) == 0, os.strerror(ctypes.get_errno())
    trace = SockStateTrace()
    try:
        with Listener("127.0.0.1", 9000):
            socket.create_connection(("127.0.0.1", 9000)).close()
            events: list[TraceEvent] = []
            _collect(trace, events, lambda evs: sum(e.pid == os.getpid() for e in evs) >= 2, "our events")
        return {"tracefs": trace.tracefs, "mounted": os.path.isdir(os.path.join(tracefs, "instances"))}
    finally:
        trace.close()


@requires_trace
@requires_netns
def test_tracefs_is_mounted_when_missing() -> None:
    r = run_in_netns(_mount_body)
    assert r == {"tracefs": linux_trace.TRACEFS_MOUNT, "mounted": True}


def _as_nobody() -> str:
    os.setgid(65534)
    os.setuid(65534)
    try:
        SockStateTrace()
    except TraceUnavailable as exc:
        return str(exc)
    return "started"


@requires_trace
def test_refusals_say_why(tmp_path: Any) -> None:
    with pytest.raises(TraceUnavailable, match=str(tmp_path)):
        SockStateTrace(tracefs=str(tmp_path))
    with pytest.raises(ValueError):
        SockStateTrace(buffer_kb=0)
    pool = _fork.Pool(1)
    try:
        message = pool.apply(_as_nobody)
    finally:
        pool.terminate()
    assert "needs root" in message
