"""Pool arithmetic and verdict thresholds on fixed tables."""

from __future__ import annotations

from core import analysis
from core.model import PortConfig, ProbeFailure, ProcessRow
from tests.tables import churn, table

LINUX = PortConfig("Linux", (50000, 50099), (), 60.0, "per_destination", tw_reuse=0)
WINDOWS = PortConfig("Windows", (50000, 50099), (), 120.0, "per_local_address")


def summary(t, config):
    facts = analysis.split_table(t, config)
    pools, _ = analysis.compute_pools(t, config, facts)
    return analysis.summarize_ports(pools, config, t, facts)


def test_linux_pools_are_per_destination():
    # 60 TIME_WAIT to one destination, 60 to another: the same ports serve both.
    t = table(*churn(60, remote="10.0.0.9:443"), *churn(60, remote="10.0.0.8:443"))
    s = summary(t, LINUX)
    assert s.capacity == 100
    assert s.in_use == 60
    assert s.pressure == 0.6


def test_windows_pool_is_global_per_local_address():
    t = table(*churn(45, remote="10.0.0.9:443"), *churn(45, remote="10.0.0.8:443", first_port=50045))
    s = summary(t, WINDOWS)
    assert s.in_use == 90
    assert s.pressure == 0.9
    assert s.pool.startswith("10.0.0.1")


def test_excluded_ranges_shrink_capacity():
    config = PortConfig("Windows", (50000, 50099), ((50090, 50199),), 120.0, "per_local_address")
    assert config.capacity == 90
    t = table(*churn(95))  # ports 50090-50094 are excluded: never handed out, not counted
    s = summary(t, config)
    assert (s.capacity, s.in_use) == (90, 90)
    assert s.pressure == 1.0


def test_bound_ports_hold_ports_and_listeners_do_not_count():
    rows = [("LISTEN", "0.0.0.0:50010", "0.0.0.0:0", 7),
            ("ESTABLISHED", "10.0.0.1:50010", "10.0.0.7:1234", 7),  # accepted: not ephemeral
            ("BOUND", "0.0.0.0:50011", "0.0.0.0:0", 8)]
    t = table(*rows, *churn(10, first_port=50020))
    linux = summary(t, LINUX)
    # Linux: the listener's port and the explicitly bound port leave every pool.
    assert (linux.capacity, linux.in_use) == (98, 10)
    windows = summary(t, WINDOWS)
    # Windows: a BOUND socket holds its port in the pool (netstat shows it; psutil does not).
    assert windows.capacity == 99
    assert windows.in_use == 11


def test_tw_reuse_makes_time_wait_reusable_on_linux():
    t = table(*churn(95))
    assert summary(t, LINUX).pressure == 0.95
    reuse = PortConfig("Linux", (50000, 50099), (), 60.0, "per_destination", tw_reuse=1)
    assert summary(t, reuse).in_use == 0
    # 2 = loopback only: these are not loopback, so nothing changes...
    loop_only = PortConfig("Linux", (50000, 50099), (), 60.0, "per_destination", tw_reuse=2)
    assert summary(t, loop_only).in_use == 95
    # ...but the same churn on loopback is reusable.
    t_lo = table(*churn(95, local="127.0.0.1", remote="127.0.0.1:9000"))
    assert summary(t_lo, loop_only).in_use == 0


def _row(**kw):
    base = dict(pid=42, name="app", connections=0, time_wait=0, time_wait_exact=0, time_wait_inferred=0,
                opens_per_s=0.0, states={}, close_wait=0)
    base.update(kw)
    return ProcessRow(**base)


def verdict_for(in_use, steady=0, eta=None, failures=(), processes=()):
    from core.model import Forecast, PortsSummary

    ports = PortsSummary((50000, 50099), 100, in_use, in_use / 100, "10.0.0.1 -> 10.0.0.9:443")
    return analysis.judge(ports, Forecast(steady, eta), LINUX, list(processes), [], failures, now=100.0)


def test_verdict_thresholds():
    assert verdict_for(59).level == "ok"
    assert verdict_for(60).level == "warning"
    assert verdict_for(89).level == "warning"
    assert verdict_for(90).level == "critical"


def test_forecast_thresholds():
    assert verdict_for(10, steady=79).level == "ok"
    assert verdict_for(10, steady=80).level == "warning"
    assert verdict_for(10, steady=200, eta=61).level == "warning"
    assert verdict_for(10, steady=200, eta=60).level == "critical"


def test_probe_exhaustion_failure_is_critical_and_quoted():
    failure = ProbeFailure(90.0, "10.0.0.9:443", "[Errno 99] Cannot assign requested address")
    v = verdict_for(5, failures=[failure])
    assert v.level == "critical"
    assert any("Cannot assign requested address" in r and "10 s ago" in r for r in v.reasons)


def test_close_wait_pile_names_the_process():
    leaker = _row(pid=314, name="leaky-service", connections=25, close_wait=25)
    v = verdict_for(1, processes=[leaker])
    assert v.level == "warning"
    assert any("leaky-service (pid 314)" in r and "CLOSE_WAIT" in r for r in v.reasons)
    assert verdict_for(1, processes=[_row(close_wait=19)]).level == "ok"


def test_forecast_eta_only_when_steady_state_does_not_fit():
    from core.model import PortsSummary

    ports = PortsSummary((1, 100), 100, 40, 0.4, "p")
    fits = analysis.forecast(ports, pool_open_rate=1.0, time_wait_seconds=60, growth_per_s=1.0)
    assert fits.steady_state_time_wait == 60 and fits.seconds_to_exhaustion is None
    overflow = analysis.forecast(ports, pool_open_rate=3.0, time_wait_seconds=60, growth_per_s=3.0)
    assert overflow.steady_state_time_wait == 180
    assert overflow.seconds_to_exhaustion == 20.0


def test_ok_without_outbound_connections_says_so_plainly():
    import numpy as np

    from core.model import SOCKET_DTYPE, Forecast

    empty = np.zeros(0, dtype=SOCKET_DTYPE)
    ports = analysis.summarize_ports([], LINUX, empty, analysis.split_table(empty, LINUX))
    verdict = analysis.judge(ports, Forecast(0, None), LINUX, [], [], (), now=100.0)
    assert verdict.level == "ok"
    assert verdict.reasons == (f"No outbound connections right now: all {ports.capacity} ports of the range "
                               "are free.",)
    busy = verdict_for(5)
    assert busy.reasons[0].startswith("The busiest pool (10.0.0.1 -> 10.0.0.9:443) uses 5 of 100 ports")


def test_reused_time_wait_neither_forecasts_exhaustion_nor_warns():
    """tcp_tw_reuse: connections opened fast enough for 2,700 TIME_WAIT in a 100-port pool
    do not run it out while ports are free, and the steady-state sentence would mislead."""
    from core.model import PortsSummary

    ports = PortsSummary((50000, 50099), 100, 10, 0.1, "127.0.0.1 -> 127.0.0.1:9000")
    held = analysis.forecast(ports, 45.0, 60.0, growth_per_s=5.0)
    reused = analysis.forecast(ports, 45.0, 60.0, growth_per_s=5.0, holds_ports=False)
    assert held.seconds_to_exhaustion == 18.0 and reused.seconds_to_exhaustion is None
    assert reused.steady_state_time_wait == held.steady_state_time_wait == 2700
    assert analysis.judge(ports, held, LINUX, [], []).level == "critical"
    assert analysis.judge(ports, reused, LINUX, [], []).level == "ok"
    full = PortsSummary((50000, 50099), 100, 100, 1.0, "127.0.0.1 -> 127.0.0.1:9000")
    assert analysis.forecast(full, 45.0, 60.0, 5.0, holds_ports=False).seconds_to_exhaustion == 0.0
    reuse = PortConfig("Linux", (50000, 50099), (), 60.0, "per_destination", tw_reuse=1)
    loop_only = PortConfig("Linux", (50000, 50099), (), 60.0, "per_destination", tw_reuse=2)
    assert not analysis.time_wait_holds_ports(reuse, loopback_pool=False)
    assert analysis.time_wait_holds_ports(loop_only, loopback_pool=False)
    assert not analysis.time_wait_holds_ports(loop_only, loopback_pool=True)
    assert analysis.time_wait_holds_ports(LINUX, loopback_pool=True)
