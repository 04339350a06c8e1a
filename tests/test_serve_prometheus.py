"""`portpressure serve` against a real Prometheus (Debian's package, our own instance).

promtool checks and unit-tests the alert rules; then, in a private namespace whose port
range is exhausted by a churning client, Prometheus scrapes `serve` and its query API
shows the critical verdict, the full pool, the churner on top and the alerts; the Grafana
dashboard's queries are run against the same Prometheus (Debian packages no Grafana).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.prometheus import (
    PROMTOOL,
    RULE_TESTS,
    RULES,
    PrometheusServer,
    dashboard_queries,
    metric_names,
    requires_prometheus,
    requires_promtool,
    rules_with_short_for,
    scrape_when_ready,
    start_serve,
    stop,
)
from tests.support.traffic import Churner, Listener

NARROW = "40000 40099"
ALERT_NAMES = ("PortPressureCritical", "PortPressureExhaustionSoon", "PortPressureCloseWaitLeak",
               "PortPressureCanaryFailing")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@requires_promtool
def test_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(f"alert: {name}" in RULES.read_text() for name in ALERT_NAMES)


@requires_promtool
def test_rules_pass_their_unit_tests():
    result = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _scraped_exhaustion_body(workdir: Path) -> dict:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.02, name="churner") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to hit EADDRNOTAVAIL")
        serve = start_serve("--interval", "1", "--probe", "127.0.0.1:9000", "--probe-every", "1",
                            log=workdir / "serve.log")
        try:
            exposition = scrape_when_ready("http://127.0.0.1:9466/metrics", serve).decode()
            rules = rules_with_short_for(workdir / "rules.yml")
            with PrometheusServer(["127.0.0.1:9466"], rules) as prometheus:
                seen = _watch_prometheus(prometheus, churner.pid)
                names = metric_names(exposition)
                seen["dashboard"] = {expr: prometheus.query(expr) for expr in dashboard_queries()}
                seen["exported"] = names
        finally:
            stop(serve)
    return seen


def _watch_prometheus(prometheus: PrometheusServer, churner_pid: int) -> dict:
    """Poll the query API (bounded) until it shows what the test expects; returns what it saw."""
    seen: dict = {}

    def value(expr: str) -> float | None:
        result = prometheus.query(expr)
        return float(result[0]["value"][1]) if result else None

    def everything() -> bool:
        seen["verdict"] = value("portpressure_verdict_level")
        seen["pool"] = prometheus.query("portpressure_pool_ports_in_use / portpressure_pool_ports_capacity")
        seen["top"] = prometheus.query("topk(1, portpressure_process_time_wait)")
        seen["canary"] = value('portpressure_probe_success{target="127.0.0.1:9000"}')
        alerts = prometheus.alerts()
        seen["alerts"] = {(a["labels"]["alertname"], a["state"]) for a in alerts}
        seen["descriptions"] = {a["labels"]["alertname"]: a["annotations"]["description"] for a in alerts}
        alerting = {name for name, state in seen["alerts"] if state in ("pending", "firing")}
        return (seen["verdict"] == 2 and bool(seen["pool"]) and float(seen["pool"][0]["value"][1]) >= 0.9
                and bool(seen["top"]) and seen["top"][0]["metric"].get("pid") == str(churner_pid)
                and {"PortPressureCritical", "PortPressureCanaryFailing"} <= alerting
                # firing too (its `for:` is 1 s here), so the dashboard's alert annotations have one
                and ("PortPressureCritical", "firing") in seen["alerts"])

    started = time.monotonic()
    try:
        wait_until(everything, 60, "Prometheus to show the exhaustion", poll=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; Prometheus saw {seen}") from None
    seen["seconds"] = time.monotonic() - started
    return seen


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> dict:
    """One run for the module: the exhaustion, scraped by Prometheus, then the dashboard's queries."""
    return run_in_netns(_scraped_exhaustion_body, tmp_path_factory.mktemp("prometheus"), timeout=180,
                        sysctls={"net.ipv4.ip_local_port_range": NARROW, "net.ipv4.tcp_tw_reuse": "0"})


@requires_netns
@requires_prometheus
def test_prometheus_scrapes_the_exhaustion_and_alerts(scraped):
    seen = scraped
    assert seen["verdict"] == 2
    pool = seen["pool"][0]
    assert float(pool["value"][1]) >= 0.9 and "127.0.0.1:9000" in pool["metric"]["pool"]
    assert seen["top"][0]["metric"]["name"] == "churner"
    assert seen["canary"] == 0  # the outbound test finds no free port either
    states = dict(seen["alerts"])
    assert states["PortPressureCritical"] == "firing"
    assert states["PortPressureCanaryFailing"] in ("pending", "firing")
    # The annotations name the pool and the top process from their series' labels.
    critical = seen["descriptions"]["PortPressureCritical"]
    assert re.search(rf"Pool {re.escape(pool['metric']['pool'])} is (9\d|100)% used\.", critical), critical
    assert f"Top process: churner (pid {seen['top'][0]['metric']['pid']})" in critical
    assert "to 127.0.0.1:9000 has failed" in seen["descriptions"]["PortPressureCanaryFailing"]


@requires_netns
@requires_prometheus
def test_dashboard_queries_run_against_the_live_prometheus(scraped):
    """Grafana is not packaged by Debian: the dashboard is checked through its queries. Each
    one must be valid PromQL (the query API refuses it otherwise) and return series
    wherever the exporter exports every metric it reads (portpressure_range_ports_in_use
    appears once `watch --json` carries ports.range_in_use)."""
    assert len(scraped["dashboard"]) >= 12
    checked = 0
    for expr, result in scraped["dashboard"].items():
        if set(re.findall(r"portpressure_\w+", expr)) <= scraped["exported"]:
            assert result, f"dashboard query returned nothing: {expr}"
            checked += 1
    assert checked >= 10
