"""core.probe: input parsers (examples and hypothesis properties), error decoding for
both OSes, and the prober against real sockets on loopback, each case in its own
network namespace: success, refused, timeout (full accept queue), ports exhausted by a
churning child (EADDRNOTAVAIL), DNS failure, DNS timeout against a silent server, and
cancellation of each kind of wait."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from core.free_ports import read_free_ports
from core.probe import (
    CATEGORIES,
    MAX_COUNT,
    WSAEADDRINUSE,
    WSAEADDRNOTAVAIL,
    WSAECONNREFUSED,
    WSAEHOSTUNREACH,
    WSAENETUNREACH,
    WSAENOBUFS,
    WSAETIMEDOUT,
    LatencyStats,
    ProbeCancelled,
    ProbeInputError,
    Prober,
    ProbeResult,
    SeriesSummary,
    classify_errno,
    describe_errno,
    diagnose,
    errno_name,
    invalid_input_result,
    parse_count,
    parse_host,
    parse_interval,
    parse_port,
    parse_timeout,
    to_probe_failure,
)
from tests.support.netns import requires_netns, run_in_netns, sockstat_tw, wait_until
from tests.support.traffic import Churner, Listener

CONTRACT_KEYS = {"host", "port", "ok", "phase", "elapsed_ms", "errno", "error", "category", "diagnosis"}
NARROW = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}
PARSERS = (parse_host, parse_port, parse_timeout, parse_count, parse_interval)

pytestmark = pytest.mark.netns


def check_contract(obj: dict) -> None:
    assert set(obj) >= CONTRACT_KEYS
    assert obj["phase"] in ("resolve", "connect")
    assert obj["category"] in CATEGORIES
    assert isinstance(obj["ok"], bool) and (obj["category"] == "ok") == obj["ok"]
    assert obj["diagnosis"] and "\n" not in obj["diagnosis"]
    json.dumps(obj)  # serialisable as is


# -- input: examples -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("example.com", "example.com"),
    ("  server-01.corp.example.com  ", "server-01.corp.example.com"),
    ("example.com.", "example.com."),
    ("localhost", "localhost"),
    ("bücher.example", "bücher.example"),
    ("sql_01.example", "sql_01.example"),
    ("10.0.0.5", "10.0.0.5"),
    ("2001:db8::5", "2001:db8::5"),
    ("[2001:db8::5]", "2001:db8::5"),
    ("::1", "::1"),
    ("fe80::1%eth0", "fe80::1%eth0"),
])
def test_parse_host_accepts_names_and_addresses(text: str, expected: str) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("", "host is empty"),
    ("   ", "host is empty"),
    ("exa mple.com", "contains a space"),
    ("example.com\x00", "control or invisible character (U+0000)"),
    ("exam\x1bple.com", "control or invisible character (U+001B)"),
    ("exa\u200bmple.com", "U+200B"),
    ("a" * 254, "too long (254 characters, at most 253)"),
    (".".join(["abcdefghi"] * 26), "too long"),
    ("a..b", "empty label"),
    (".example.com", "empty label"),
    ("-example.com", "starts or ends with '-'"),
    ("example-.com", "starts or ends with '-'"),
    ("a" * 64 + ".com", "longer than 63 characters"),
    ("ex!ample.com", "'!' is not allowed"),
    ("example.com:443", "includes a port: enter the host and the port 443 in their own fields"),
    ("[2001:db8::5]:443", "includes a port"),
    ("10.0.0.5:8080", "includes a port"),
    ("http://example.com/", "looks like a URL"),
    ("user@example.com", "contains '@'"),
    ("10.0.0.256", "not a valid IPv4 address"),
    ("10.1", "not a valid IPv4 address"),  # inet_aton would read this as 10.0.0.1
    ("0x7f.1", "not a valid IPv4 address"),
    ("2130706433", "not a valid IPv4 address"),
    ("[2001:db8::5", "not a valid IPv6 address in brackets"),
    ("[example.com]", "not a valid IPv6 address in brackets"),
    ("2001:db8::zz", "not a valid IPv6 address"),
])
def test_parse_host_rejects_with_a_message_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(ProbeInputError) as caught:
        parse_host(text)
    assert says in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(("parse", "text", "expected"), [
    (parse_port, "443", 443), (parse_port, " 1 ", 1), (parse_port, "65535", 65535), (parse_port, "0080", 80),
    (parse_timeout, "2", 2.0), (parse_timeout, "0.25", 0.25), (parse_timeout, ".5", 0.5),
    (parse_timeout, "300", 300.0), (parse_timeout, "1e-3", 0.001),
    (parse_count, "1", 1), (parse_count, "1000", 1000),
    (parse_interval, "0", 0.0), (parse_interval, "0.2", 0.2), (parse_interval, "600", 600.0),
])
def test_numbers_accepted(parse, text: str, expected: float) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("parse", "text", "says"), [
    (parse_port, "", "port is empty"),
    (parse_port, "0", "out of range: use 1 to 65535"),
    (parse_port, "65536", "out of range"),
    (parse_port, "-1", "whole number from 1 to 65535"),
    (parse_port, "+80", "whole number"),
    (parse_port, "1_000", "whole number"),
    (parse_port, "٨٠", "whole number"),  # Arabic-Indic digits: int() would take them
    (parse_port, "https", "whole number"),
    (parse_port, "80.0", "whole number"),
    (parse_port, "9" * 400, "out of range"),
    (parse_timeout, "", "timeout is empty"),
    (parse_timeout, "0", "more than 0 seconds"),
    (parse_timeout, "-1", "more than 0 seconds"),
    (parse_timeout, "nan", "number of seconds"),
    (parse_timeout, "inf", "number of seconds"),
    (parse_timeout, "1e999", "not a finite number"),
    (parse_timeout, "301", "at most 300 seconds"),
    (parse_timeout, "2s", "number of seconds"),
    (parse_count, "0", "out of range: use 1 to 1000"),
    (parse_count, "1001", "out of range"),
    (parse_count, "-3", "whole number"),
    (parse_count, "2.5", "whole number"),
    (parse_count, "ten", "whole number"),
    (parse_interval, "-0.5", "at least 0 seconds"),
    (parse_interval, "601", "at most 600 seconds"),
    (parse_interval, "soon", "number of seconds"),
])
def test_numbers_rejected_with_a_message(parse, text: str, says: str) -> None:
    with pytest.raises(ProbeInputError) as caught:
        parse(text)
    assert says in str(caught.value)


def test_each_bad_input_becomes_an_invalid_input_result() -> None:
    bad = [(parse_host, ""), (parse_host, "example.com:80"), (parse_port, "0"), (parse_port, "x"),
           (parse_timeout, "-1"), (parse_timeout, "abc"), (parse_count, "-5"), (parse_count, "many")]
    for parse, text in bad:
        with pytest.raises(ProbeInputError) as caught:
            parse(text)
        obj = invalid_input_result(text, None, caught.value).to_json()
        check_contract(obj)
        assert obj["category"] == "invalid_input" and obj["ok"] is False
        assert obj["error"] == str(caught.value) and str(caught.value) in obj["diagnosis"]
        assert obj["errno"] is None and obj["elapsed_ms"] == 0.0


# -- input: properties ----------------------------------------------------------------------

def _rejected_cleanly(parse, text: str) -> None:
    try:
        parse(text)
    except ProbeInputError as exc:
        message = str(exc)
        assert message.strip(), f"empty message for {text!r}"
        assert len(message.splitlines()) == 1, f"message for {text!r} is not one line: {message!r}"
        assert len(message) < 300


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_no_exception_but_probe_input_error_escapes_any_parser(text: str) -> None:
    for parse in PARSERS:
        _rejected_cleanly(parse, text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abcxyz.-_:[]%/@ \t\n\u00e9\u200b\x00+eE"), max_size=80))
def test_parsers_on_near_miss_text(text: str) -> None:
    # Text made of the characters the parsers care about finds the edge cases faster.
    for parse in PARSERS:
        _rejected_cleanly(parse, text)


@given(st.integers(min_value=-10**6, max_value=10**6))
def test_port_accepts_exactly_1_to_65535(n: int) -> None:
    if 1 <= n <= 65535:
        assert parse_port(str(n)) == n
    else:
        with pytest.raises(ProbeInputError):
            parse_port(str(n))


@given(st.integers(min_value=-5, max_value=MAX_COUNT + 5))
def test_count_accepts_exactly_1_to_1000(n: int) -> None:
    if 1 <= n <= MAX_COUNT:
        assert parse_count(str(n)) == n
    else:
        with pytest.raises(ProbeInputError):
            parse_count(str(n))


@given(st.floats(min_value=1e-6, max_value=300.0))
def test_timeout_round_trips_positive_seconds(seconds: float) -> None:
    assert parse_timeout(repr(seconds)) == seconds


@given(st.ip_addresses())
def test_every_ip_address_is_a_host(address) -> None:
    assert parse_host(str(address)) == str(address)
    if address.version == 6:
        assert parse_host(f"[{address}]") == str(address)


@settings(deadline=None)
@given(domains())
def test_every_domain_name_is_a_host(name: str) -> None:
    assert parse_host(name) == name


# -- error decoding ---------------------------------------------------------------------------

def test_windows_errors_are_decoded_by_number() -> None:
    assert classify_errno(WSAENOBUFS, windows=True) == "ports_exhausted"
    assert classify_errno(WSAEADDRINUSE, windows=True) == "ports_exhausted"
    assert classify_errno(WSAECONNREFUSED, windows=True) == "refused"
    assert classify_errno(WSAETIMEDOUT, windows=True) == "timeout"
    assert classify_errno(WSAENETUNREACH, windows=True) == "unreachable"
    assert classify_errno(WSAEHOSTUNREACH, windows=True) == "unreachable"
    # WSAEADDRNOTAVAIL is "address not valid in its context" on Windows, not exhaustion.
    assert classify_errno(WSAEADDRNOTAVAIL, windows=True) == "unreachable"
    assert errno_name(10055, windows=True) == "WSAENOBUFS"
    # The OS's own text (FormatMessage) where it has one, else Winsock's English text.
    described = describe_errno(10055, windows=True)
    if sys.platform == "win32" and ctypes.FormatError(10055) != "<no description>":
        assert described == f"[WinError 10055] {ctypes.FormatError(10055).strip().rstrip('.')}"
    else:
        assert described.startswith("[WinError 10055] An operation on a socket could not be performed "
                                     "because the system lacked sufficient buffer space")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX errno numbers: Python on Windows has Winsock's")
def test_linux_errors_are_decoded_by_errno_name() -> None:
    assert classify_errno(errno.EADDRNOTAVAIL, windows=False) == "ports_exhausted"
    assert classify_errno(errno.EADDRINUSE, windows=False) == "ports_exhausted"
    assert classify_errno(errno.ECONNREFUSED, windows=False) == "refused"
    assert classify_errno(errno.ETIMEDOUT, windows=False) == "timeout"
    assert classify_errno(errno.ENETUNREACH, windows=False) == "unreachable"
    assert classify_errno(errno.EHOSTUNREACH, windows=False) == "unreachable"
    assert classify_errno(errno.EACCES, windows=False) == "unreachable"  # anything else
    assert describe_errno(errno.EADDRNOTAVAIL, windows=False) == str(
        OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL)))
    assert errno_name(errno.EADDRNOTAVAIL, windows=False) == "EADDRNOTAVAIL"


def test_diagnoses_say_what_a_ticket_needs() -> None:
    error = "[WinError 10055] An operation on a socket could not be performed"
    exhausted = diagnose("ports_exhausted", target="10.0.0.9:443", error=error, windows=True)
    assert error in exhausted and "TIME_WAIT" in exhausted and "local (ephemeral) port" in exhausted
    assert "TcpTimedWaitDelay" in exhausted and "dynamicport" in exhausted
    linux = diagnose("ports_exhausted", target="10.0.0.9:443", error="[Errno 99] x", windows=False)
    assert "tcp_tw_reuse" in linux and "ip_local_port_range" in linux
    refused = diagnose("refused", target="10.0.0.9:443", error="[Errno 111] Connection refused")
    assert "NOT port exhaustion" in refused and "nothing listens" in refused
    timeout = diagnose("timeout", target="10.0.0.9:443", timeout_s=2.0, timed_out=True)
    assert "within 2 s" in timeout and "not port exhaustion" in timeout
    dns = diagnose("dns", target="x.invalid:1", host="x.invalid",
                   error="[Errno -2] Name or service not known")
    assert "could not be resolved" in dns and "says nothing about local ports" in dns
    assert "DNS server did not answer" in diagnose("dns", target="a:1", host="a", timeout_s=1, timed_out=True)
    for category in CATEGORIES:
        assert "\n" not in diagnose(category, target="h:1", error="e")


def test_only_exhaustion_results_become_verdict_evidence() -> None:
    def result(category: str, error: str | None) -> ProbeResult:
        return ProbeResult(host="10.0.0.9", port=443, ok=category == "ok", phase="connect", elapsed_ms=1.0,
                           errno=None, error=error, category=category, diagnosis="d", monotonic=123.0)  # type: ignore[arg-type]

    failure = to_probe_failure(result("ports_exhausted", "[WinError 10055] no buffer space"))
    assert failure is not None
    assert (failure.monotonic, failure.target, failure.error) == (123.0, "10.0.0.9:443",
                                                                  "[WinError 10055] no buffer space")
    for category in ("ok", "refused", "timeout", "unreachable", "dns", "invalid_input"):
        assert to_probe_failure(result(category, "e")) is None


def test_windows_decoding_through_the_prober() -> None:
    failure = Prober(windows=True)._errno_failure(WSAENOBUFS)
    assert failure.category == "ports_exhausted" and failure.errno_name == "WSAENOBUFS"
    assert failure.error is not None and failure.error.startswith("[WinError 10055]")


def test_address_not_available_is_judged_with_the_socket_table() -> None:
    # WSAEADDRNOTAVAIL: "not valid in its context", unless the table shows no free port.
    full = Prober(windows=True, free_ports=lambda: 0)._errno_failure(WSAEADDRNOTAVAIL)
    assert full.category == "ports_exhausted" and full.errno_name == "WSAEADDRNOTAVAIL"
    assert full.evidence is not None and "every local port" in full.evidence
    free = Prober(windows=True, free_ports=lambda: 12)._errno_failure(WSAEADDRNOTAVAIL)
    assert free.category == "unreachable"
    assert free.evidence == "The socket table shows 12 local ports still free."
    unknown = Prober(windows=True, free_ports=lambda: None)._errno_failure(WSAEADDRNOTAVAIL)
    assert unknown.category == "unreachable" and "could not be read" in (unknown.evidence or "")
    text = diagnose("ports_exhausted", target="10.0.0.9:443", error="[WinError 10049] x", windows=True,
                    evidence=full.evidence)
    assert text.endswith(" " + full.evidence) and "TcpTimedWaitDelay" in text
    # Only that error asks the table: the others mean what they say.
    asked: list[int] = []
    Prober(windows=True, free_ports=lambda: asked.append(1) or 0)._errno_failure(WSAECONNREFUSED)
    assert asked == []


def test_latency_percentiles_and_summary_text() -> None:
    stats = LatencyStats.of([float(v) for v in range(1, 101)])
    assert stats is not None
    rounded = (round(stats.p50, 2), round(stats.p90, 2), round(stats.p99, 2), stats.max)
    assert rounded == (50.5, 90.1, 99.01, 100.0)
    assert LatencyStats.of([]) is None


# -- real sockets, one namespace each ------------------------------------------------------------

def _success() -> dict:
    with Listener("127.0.0.1", 0) as listener:
        result = Prober().probe("127.0.0.1", listener.port, timeout_s=2.0)
        wait_until(lambda: listener.accepted == 1, 5, "the listener to accept the probe")
        return {"json": result.to_json(), "tw": sockstat_tw(), "accepted": listener.accepted,
                "listener_port": listener.port}


@requires_netns
def test_success_against_a_local_listener_with_latency() -> None:
    got = run_in_netns(_success)
    obj = got["json"]
    check_contract(obj)
    assert obj["ok"] is True and obj["category"] == "ok" and obj["phase"] == "connect"
    assert obj["errno"] is None and obj["error"] is None
    assert 0 < obj["connect_ms"] <= obj["elapsed_ms"] < 1000
    assert obj["address"] == "127.0.0.1" and obj["port"] == got["listener_port"]
    assert obj["local_port"] and obj["local_port"] != got["listener_port"]
    assert got["accepted"] == 1
    # The probe closes with a reset: it adds no TIME_WAIT socket to a machine short of ports.
    assert got["tw"] == 0


def _series_by_name(count: int) -> dict:
    with Listener("127.0.0.1", 0) as listener:
        seen: list[int] = []
        summary = Prober().series("localhost", listener.port, count=count, interval_s=0.001, timeout_s=2.0,
                                  on_result=lambda r: seen.append(r.attempt))
        wait_until(lambda: listener.accepted == count, 5, "every attempt accepted")
        return {"summary": summary.to_json(), "text": summary.text(), "seen": seen,
                "accepted": listener.accepted}


@requires_netns
def test_a_series_by_name_reports_successes_and_latency_percentiles() -> None:
    got = run_in_netns(_series_by_name, 25)
    summary = got["summary"]
    assert got["seen"] == list(range(1, 26)) and got["accepted"] == 25
    assert (summary["attempts"], summary["successes"], summary["failures"]) == (25, 25, 0)
    assert summary["cancelled"] is False and summary["categories"] == {}
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert "25 connected, 0 failed" in got["text"] and "p99" in got["text"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refused() -> dict:
    port = _free_port()  # bound and closed: nothing listens there now
    return {v: Prober().probe(h, port, 2.0).to_json() for v, h in (("v4", "127.0.0.1"), ("v6", "::1"))}


@requires_netns
def test_refused_on_a_closed_port_is_not_exhaustion() -> None:
    for obj in run_in_netns(_refused).values():
        check_contract(obj)
        assert obj["category"] == "refused" and obj["phase"] == "connect"
        assert obj["errno"] == errno.ECONNREFUSED and obj["errno_name"] == "ECONNREFUSED"
        assert "NOT port exhaustion" in obj["diagnosis"]


def _listen_overflows() -> int:
    with open("/proc/net/netstat") as f:
        names, values = [line.split() for line in f if line.startswith("TcpExt:")][:2]
    return int(values[names.index("ListenOverflows")])


def _full_backlog_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener that never accepts, its queue filled until a handshake no longer
    completes: from then on the kernel drops every SYN it gets (no answer at all)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    clients: list[socket.socket] = []
    while True:
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(server.getsockname())
        clients.append(client)
        if len(clients) > 16:
            raise AssertionError("the accept queue never filled")
        try:
            # A queued connection completes its handshake at once on loopback.
            wait_until(lambda c=client: c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and
                       _connected(c), 0.2, "the handshake")
        except TimeoutError:
            client.close()  # its retransmitted SYNs would blur the drop counts below
            return server, clients[:-1]


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _timeout() -> dict:
    server, clients = _full_backlog_listener()
    before = _listen_overflows()
    started = time.monotonic()
    result = Prober().probe("127.0.0.1", server.getsockname()[1], timeout_s=0.4)
    took = time.monotonic() - started
    return {"json": result.to_json(), "took": took, "queued": len(clients),
            "overflows": _listen_overflows() - before}


@requires_netns
def test_timeout_against_a_listener_whose_accept_queue_is_full() -> None:
    got = run_in_netns(_timeout)
    obj = got["json"]
    check_contract(obj)
    assert obj["category"] == "timeout" and obj["phase"] == "connect" and obj["errno"] is None
    assert 0.4 <= got["took"] < 1.5
    assert obj["error"] == "no answer within 0.4 s (connect timed out)"
    assert got["overflows"] >= 1  # the kernel itself counted the SYN it dropped
    assert "not port exhaustion" in obj["diagnosis"]


def _exhausted() -> dict:
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), \
            Churner("127.0.0.1", 9000, hold_s=0.0, name="pp-probe-churn") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the range")
        result = Prober().probe("127.0.0.1", 9000, timeout_s=2.0)
        other = Prober().probe("127.0.0.1", 9001, timeout_s=2.0)  # another destination, no listener
        free = read_free_ports()
        failure = to_probe_failure(result)
        sampler = JudgedSampler(Sampler())
        try:
            sampler.note_probe(result)
            sample = sampler.sample()
        finally:
            sampler.close()
    return {"json": result.to_json(), "failure": failure, "verdict": sample.verdict.to_json(),
            "other": other.to_json(), "free": free}


@requires_netns
def test_ports_exhausted_after_a_churner_exhausts_the_range() -> None:
    got = run_in_netns(_exhausted, sysctls=NARROW)
    obj = got["json"]
    check_contract(obj)
    assert obj["category"] == "ports_exhausted" and obj["phase"] == "connect"
    assert obj["errno"] == errno.EADDRNOTAVAIL and obj["errno_name"] == "EADDRNOTAVAIL"
    assert obj["error"] == "[Errno 99] Cannot assign requested address"
    assert obj["error"] in obj["diagnosis"] and "TIME_WAIT" in obj["diagnosis"]
    # Linux pools ports per destination: a different port on the same host still answers.
    assert got["other"]["category"] == "refused"
    assert got["free"] == 0  # the socket table agrees: the busiest pool has no free port
    assert run_in_netns(read_free_ports, sysctls=NARROW) == 20  # a quiet namespace: all 20 free
    failure = got["failure"]
    assert failure.target == "127.0.0.1:9000" and failure.error == obj["error"]
    verdict = got["verdict"]
    assert verdict["level"] == "critical"
    assert any("An outbound test to 127.0.0.1:9000 failed" in r and obj["error"] in r
               for r in verdict["reasons"]), verdict


def _dns_failure() -> dict:
    with open("/etc/hosts") as f:
        hosts = f.read()
    routes = subprocess.run(["ip", "-o", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    return {"json": Prober().probe("does-not-exist.invalid", 80, timeout_s=5.0).to_json(),
            "in_hosts": "does-not-exist" in hosts,
            "non_loopback_routes": [r for r in routes if "dev lo" not in r]}


@requires_netns
def test_dns_failure_for_a_name_that_cannot_resolve() -> None:
    got = run_in_netns(_dns_failure)
    # The name is under the reserved .invalid TLD, /etc/hosts does not hold it and the
    # namespace has no route off loopback: nothing can answer it and nothing leaves.
    assert not got["in_hosts"] and got["non_loopback_routes"] == []
    obj = got["json"]
    check_contract(obj)
    assert obj["category"] == "dns" and obj["phase"] == "resolve" and obj["ok"] is False
    assert obj["errno"] in (socket.EAI_NONAME, socket.EAI_AGAIN, socket.EAI_FAIL)
    assert obj["connect_ms"] is None and obj["address"] is None
    assert "could not be resolved" in obj["diagnosis"]


class SilentDnsServer:
    """A UDP socket on 127.0.0.1:53 that reads queries and never answers, with this
    process's /etc/resolv.conf pointing at it (in a private mount namespace)."""

    CLONE_NEWNS = 0x00020000

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(self.CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        folder = tempfile.mkdtemp()
        conf = os.path.join(folder, "resolv.conf")
        with open(conf, "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:3 attempts:1\n")
        subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.queries = 0
        threading.Thread(target=self._swallow, daemon=True).start()

    def _swallow(self) -> None:
        while True:
            self.sock.recvfrom(4096)
            self.queries += 1


def _dns_timeout_and_cancel() -> dict:
    server = SilentDnsServer()
    started = time.monotonic()
    timed_out = Prober().probe("slow.example.test", 80, timeout_s=2.0, resolve_timeout_s=0.3)
    took = time.monotonic() - started
    queries = wait_until(lambda: server.queries, 5, "the lookup to reach the silent server")

    prober = Prober()
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: _record_cancel(prober, outcome, "other.example.test"))
    thread.start()
    wait_until(lambda: server.queries > queries, 5, "the second lookup to reach the silent server")
    cancelled_at = time.monotonic()
    prober.cancel()
    thread.join(5)
    return {"json": timed_out.to_json(), "took": took, "queries": queries, "outcome": outcome,
            "cancel_s": time.monotonic() - cancelled_at}


def _record_cancel(prober: Prober, outcome: list[str], host: str, port: int = 80) -> None:
    try:
        outcome.append(prober.probe(host, port, timeout_s=10.0).category)
    except ProbeCancelled:
        outcome.append("cancelled")


@requires_netns
def test_a_silent_dns_server_times_out_in_the_resolve_phase_and_cancel_stops_the_wait() -> None:
    got = run_in_netns(_dns_timeout_and_cancel)
    obj = got["json"]
    check_contract(obj)
    assert obj["category"] == "dns" and obj["phase"] == "resolve"
    assert obj["error"] == "the name lookup did not finish within 0.3 s"
    assert "DNS server did not answer" in obj["diagnosis"]
    assert 0.3 <= got["took"] < 1.5  # its own timeout, not the resolver's 3 s
    assert got["queries"] >= 1
    assert got["outcome"] == ["cancelled"] and got["cancel_s"] < 0.5


def _cancel_connect_and_series() -> dict:
    server, _clients = _full_backlog_listener()
    prober = Prober()
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: _record_cancel(prober, outcome, "127.0.0.1",
                                                            server.getsockname()[1]))
    overflows = _listen_overflows()
    thread.start()
    wait_until(lambda: _listen_overflows() > overflows, 5, "the probe's SYN to be dropped")
    cancelled_at = time.monotonic()
    prober.cancel()
    thread.join(5)
    connect_cancel_s = time.monotonic() - cancelled_at

    with Listener("127.0.0.1", 0) as listener:
        series = Prober()
        seen: list[ProbeResult] = []
        box: list[SeriesSummary] = []
        worker = threading.Thread(target=lambda: box.append(series.series(
            "127.0.0.1", listener.port, count=MAX_COUNT, interval_s=0.05, timeout_s=2.0,
            on_result=seen.append)))
        worker.start()
        wait_until(lambda: len(seen) >= 3, 10, "three attempts")
        cancelled_at = time.monotonic()
        series.cancel()
        worker.join(5)
        series_cancel_s = time.monotonic() - cancelled_at
    return {"outcome": outcome, "connect_cancel_s": connect_cancel_s, "summary": box[0].to_json(),
            "seen": len(seen), "series_cancel_s": series_cancel_s}


@requires_netns
def test_cancel_ends_a_connect_wait_and_a_series_promptly() -> None:
    got = run_in_netns(_cancel_connect_and_series)
    assert got["outcome"] == ["cancelled"] and got["connect_cancel_s"] < 0.5
    summary = got["summary"]
    assert summary["cancelled"] is True and summary["requested"] == MAX_COUNT
    assert 3 <= summary["attempts"] == got["seen"] < MAX_COUNT
    assert summary["successes"] == summary["attempts"]
    assert got["series_cancel_s"] < 0.5
