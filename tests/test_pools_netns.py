"""Which ports a pool holds, with real sockets in a private namespace: IPv4-mapped IPv6
clients share the IPv4 pool (DESIGN.md "Attribution rules (second round)")."""

from __future__ import annotations

import os

import pytest

from tests.support.netns import requires_netns, run_in_netns, sample_until, sockstat_tw, wait_until
from tests.support.traffic import Churner, Listener

pytestmark = [requires_netns, pytest.mark.netns]

NARROW = "40000 40099"


def _mapped_body():
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), \
            Churner("127.0.0.1", 9000, hold_s=0.01, name="v4client") as v4, \
            Churner("::ffff:127.0.0.1", 9000, hold_s=0.01, name="javaclient") as mapped:
        wait_until(lambda: v4.addr_not_avail + mapped.addr_not_avail > 0, 30, "EADDRNOTAVAIL")
        sampler = Sampler()
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


def _listener_in_range_body():
    from core.sampler import Sampler

    # The service listens on a port inside the ephemeral range and closes first: the
    # TIME_WAIT sits on its listening port, from accepted connections.
    with Listener("127.0.0.1", 40150, mode="server_closes"), \
            Churner("127.0.0.1", 40150, hold_s=0.05, name="client"):
        wait_until(lambda: sockstat_tw() >= 80, 30, "80 TIME_WAIT on the listening port")
        sampler = Sampler()
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

    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.002, name="churner") as churner:
        wait_until(lambda: churner.ok >= 50, 30, "50 connections")
        # Above the listing threshold: one listing, then every read only counts TIME_WAIT.
        sampler = Sampler(LinuxSource(trace=False, tier_min=1, refresh_seconds=3600.0))
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
        assert 0.4 * expected <= sample.forecast.steady_state_time_wait <= 2.5 * expected, (sample.forecast, rate)
        if sample.forecast.steady_state_time_wait >= sample.ports.capacity and sample.ports.pressure < 0.9:
            assert sample.forecast.seconds_to_exhaustion is not None
            assert sample.verdict.level != "ok"
