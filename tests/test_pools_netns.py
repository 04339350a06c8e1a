"""Which ports a pool holds, with real sockets in a private namespace (DESIGN.md
"Attribution rules (second round)"): IPv4-mapped IPv6 clients share the IPv4 pool, a
listener's accepted connections never count, the forecast follows the kernel between
listings, and the whole range is judged the way bind() before connect() sees it."""

from __future__ import annotations

import os

import pytest

from tests.support.netns import requires_netns, run_in_netns, sample_until, sockstat_tw, wait_until
from tests.support.traffic import Churner, Listener

pytestmark = [requires_netns, pytest.mark.netns]

NARROW = "40000 40099"


def _mapped_body():
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), \
            Churner("127.0.0.1", 9000, hold_s=0.01, name="v4client") as v4, \
            Churner("::ffff:127.0.0.1", 9000, hold_s=0.01, name="javaclient") as mapped:
        wait_until(lambda: v4.addr_not_avail + mapped.addr_not_avail > 0, 30, "EADDRNOTAVAIL")
        sampler = JudgedSampler(Sampler())
        try:
            sample = sample_until(sampler, lambda s: s.verdict.level == "critical", 15, "a critical verdict")
        finally:
            sampler.close()
        return {"sample": sample, "v4": v4.pid, "mapped": mapped.pid}


def test_v4_mapped_clients_share_the_ipv4_pool_and_read_as_ipv4():
    result = run_in_netns(_mapped_body, sysctls={"net.ipv4.ip_local_port_range": NARROW,
                                                  "net.ipv4.tcp_tw_reuse": "0"})
    sample = result["sample"]
    assert sample.ports.pool == "127.0.0.1 -> 127.0.0.1:9000"
    assert sample.ports.pressure >= 0.9
    assert len([p for p in sample.ports.pools if p.remote.endswith(":9000")]) == 1
    assert all("::ffff" not in r.address for r in sample.remotes)
    assert all("::ffff" not in p.label for p in sample.ports.pools)
    # Exhausted: attempts fail before they leave a TIME_WAIT, and still count in the forecast
    # (kernel SYN_SENT events, as root): never "0 in TIME_WAIT at this rate".
    assert sample.forecast.steady_state_time_wait >= sample.ports.capacity


def _listener_in_range_body():
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    # The service listens on a port inside the ephemeral range and closes first: the
    # TIME_WAIT sits on its listening port, from accepted connections.
    with Listener("127.0.0.1", 40150, mode="server_closes"), \
            Churner("127.0.0.1", 40150, hold_s=0.05, name="client"):
        wait_until(lambda: sockstat_tw() >= 80, 30, "80 TIME_WAIT on the listening port")
        sampler = JudgedSampler(Sampler())
        try:
            samples = [sampler.sample() for _ in range(4)]
        finally:
            sampler.close()
    return {"samples": samples, "server": os.getpid()}


def test_time_wait_on_a_listener_port_in_the_range_is_not_outbound_pressure():
    result = run_in_netns(_listener_in_range_body, sysctls={"net.ipv4.ip_local_port_range": "40000 40199",
                                                             "net.ipv4.tcp_tw_reuse": "0"})
    for sample in result["samples"]:
        assert sample.states["TIME_WAIT"] >= 60
        assert sample.ports.pressure < 0.3, sample.ports
        assert sample.forecast.steady_state_time_wait < 0.5 * sample.ports.capacity, sample.forecast
        assert sample.verdict.level == "ok", sample.verdict
    server = next(p for p in result["samples"][-1].processes if p.pid == result["server"])
    assert server.time_wait >= 60


def _forecast_between_listings_body():
    import time

    from core.judgement import JudgedSampler
    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.002, name="churner") as churner:
        wait_until(lambda: churner.ok >= 50, 30, "50 connections")
        # Above the listing threshold: one listing, then every read only counts TIME_WAIT.
        sampler = JudgedSampler(Sampler(LinuxSource(trace=False, tier_min=1, refresh_seconds=3600.0)))
        try:
            samples = []
            for _ in range(5):
                before, started = churner.ok, time.monotonic()
                samples.append(sampler.sample())
                time.sleep(0.5)  # the sampling cadence, not a synchronisation
                samples[-1] = (samples[-1], (churner.ok - before) / (time.monotonic() - started))
            samples.append((sampler.sample(), None))
        finally:
            sampler.close()
        return samples


def test_forecast_between_listings_follows_the_kernel_every_sample():
    samples = run_in_netns(_forecast_between_listings_body, sysctls={
        "net.ipv4.ip_local_port_range": "40000 47999", "net.ipv4.tcp_tw_reuse": "0"})
    for (sample, _), (_, rate) in zip(samples[2:], samples[1:-1], strict=True):
        assert not sample.extra["time_wait_listed"]
        expected = rate * 60
        steady = sample.forecast.steady_state_time_wait
        assert 0.4 * expected <= steady <= 2.5 * expected, (sample.forecast, rate)
        if sample.forecast.steady_state_time_wait >= sample.ports.capacity and sample.ports.pressure < 0.9:
            assert sample.forecast.seconds_to_exhaustion is not None
            assert sample.verdict.level != "ok"


IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h


def _connect_result(port: int, *, bind_first: bool = False, reuseaddr: bool = False,
                    no_port: bool = False, used: set[int] | None = None) -> str:
    import errno
    import socket

    s = socket.socket()
    try:
        if reuseaddr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if no_port:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        if bind_first:
            s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        if used is not None:
            used.add(s.getsockname()[1])
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    finally:
        s.close()


def _whole_range_body(fill: str, tw_reuse: str):
    import time

    from core.judgement import JudgedSampler
    from core.sampler import Sampler
    from tests.support.netns import set_sysctl

    set_sysctl("net.ipv4.tcp_tw_reuse", tw_reuse)
    destinations = [9000, 9001, 9002, 9003]
    listeners = [Listener("127.0.0.1", port) for port in (*destinations, 9009)]
    try:
        used: set[int] = set()
        if fill == "bind":
            # A program that binds before connecting, churning toward four destinations:
            # every port of the range ends in TIME_WAIT, a quarter toward each. Until the
            # kernel counts 100 TIME_WAIT, not for a number of attempts: now and then it
            # ends a closed loopback connection with a reset instead, which frees a port
            # to fill again; while every port is held (the listener has not closed its
            # side yet) bind() fails and the loop polls.
            deadline = time.monotonic() + 10
            i = 0
            while sockstat_tw() < 100 and time.monotonic() < deadline:
                if _connect_result(destinations[i % 4], bind_first=True, used=used) != "ok":
                    time.sleep(0.01)
                i += 1
        else:
            # Plain connect()s until every destination's pool is full.
            for i in range(400):
                _connect_result(destinations[i % 4], used=used)
        wait_until(lambda: len(used) == 100 and sockstat_tw() >= 100, 10, "the range full of TIME_WAIT")
        rules = {
            "connect": _connect_result(9009),
            "bind0_connect": _connect_result(9009, bind_first=True),
            "bind0_reuseaddr_connect": _connect_result(9009, bind_first=True, reuseaddr=True),
            "bind_no_port_connect": _connect_result(9009, bind_first=True, no_port=True),
        }
        sampler = JudgedSampler(Sampler())
        try:
            sample = sampler.sample()
        finally:
            sampler.close()
    finally:
        for listener in listeners:
            listener.close()
    return {"rules": rules, "sample": sample}


# The kernel's rules with every port of the range in TIME_WAIT (Linux 6.x; written down in
# core.analysis.range_ports_in_use): TIME_WAIT left by plain connect()s blocks bind() to
# port 0 whatever the destination, but connect() toward another destination still finds
# a port; TIME_WAIT left by sockets that bound before connecting blocks connect() too.
# SO_REUSEADDR and tcp_tw_reuse change neither.
RULES = {
    "connect": {"connect": "ok", "bind0_connect": "EADDRINUSE", "bind0_reuseaddr_connect": "EADDRINUSE",
                "bind_no_port_connect": "ok"},
    "bind": {"connect": "EADDRNOTAVAIL", "bind0_connect": "EADDRINUSE",
             "bind0_reuseaddr_connect": "EADDRINUSE", "bind_no_port_connect": "EADDRNOTAVAIL"},
}


@pytest.mark.parametrize(("fill", "tw_reuse"), [("connect", "0"), ("bind", "0"), ("bind", "1")])
def test_the_kernels_rules_for_the_whole_range(fill, tw_reuse):
    result = run_in_netns(_whole_range_body, fill, tw_reuse, sysctls={"net.ipv4.ip_local_port_range": NARROW})
    assert result["rules"] == RULES[fill]
    sample = result["sample"]
    assert sample.ports.range_in_use == 100 and sample.ports.range_pressure == 1.0
    assert sample.ports.to_json()["range_in_use"] == 100 and sample.ports.to_json()["range_pressure"] == 1.0


def test_bind_before_connect_across_destinations_is_judged_on_the_whole_range():
    result = run_in_netns(_whole_range_body, "bind", "0", sysctls={"net.ipv4.ip_local_port_range": NARROW})
    sample = result["sample"]
    assert sample.ports.pressure <= 0.3  # no destination's pool is near full
    assert sample.verdict.level != "ok"
    text = " ".join(sample.verdict.reasons)
    assert "bind()" in text and "EADDRINUSE" in text and "EADDRNOTAVAIL" in text


def _listener_port_rule_body():
    import socket

    with Listener("127.0.0.1", 40050), Listener("127.0.0.1", 9000):
        used = set()
        for _ in range(150):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", 9000))
                used.add(s.getsockname()[1])
            except OSError:
                pass
            s.close()
    return used


def test_connect_never_takes_a_listeners_port_in_the_range():
    used = run_in_netns(_listener_port_rule_body, sysctls={"net.ipv4.ip_local_port_range": NARROW,
                                                            "net.ipv4.tcp_tw_reuse": "0"})
    assert len(used) == 99 and 40050 not in used
