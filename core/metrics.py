"""One sample's `watch --json` object, as Prometheus metrics (`portpressure serve`).

The metrics are read from the very dict `watch --json` prints (core.commands.watch.sample_json),
never re-derived from the Sample, so the exporter and the terminal cannot disagree; keys
added to that JSON later are exported where this module knows them and are simply
absent from the exposition while the JSON lacks them. Label cardinality is bounded: the
JSON's process and remote lists are cut to `top` (at most MAX_TOP) and state names are a
fixed set.

    >>> doc = {"states": {"TIME_WAIT": 3}, "verdict": {"level": "warning"}}
    >>> [m.name for m in sample_families(doc, top=5)]
    ['portpressure_sockets', 'portpressure_verdict_level']

Only prometheus_client's value types are used here; rendering and serving live in
core.exporter and core.commands.serve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from core.model import LEVEL_ORDER

# Processes and remotes exported per sample: the sampler keeps 50 rows, and a fleet's
# Prometheus should not grow by more than a few hundred series per server.
MAX_TOP = 50
DEFAULT_TOP = 10

PREFIX = "portpressure_"


def _gauge(name: str, doc: str, value: float | None = None,
           labels: Sequence[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)


def _number(value: Any) -> float | None:
    """A JSON figure as a float, None when absent or not a number (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _if_number(name: str, doc: str, value: Any, scale: float = 1.0) -> Iterator[Metric]:
    """A gauge for a JSON figure, nothing when the key is absent (or not a number)."""
    number = _number(value)
    if number is not None:
        yield _gauge(name, doc, number * scale)


def _state_families(doc: Mapping[str, Any]) -> Iterator[Metric]:
    states = doc.get("states")
    if isinstance(states, Mapping):
        sockets = _gauge("sockets", "TCP sockets in each state (BOUND: bound, not yet connected).",
                         labels=["state"])
        for name, count in states.items():
            sockets.add_metric([str(name).lower()], float(count))
        yield sockets


def _port_families(doc: Mapping[str, Any]) -> Iterator[Metric]:
    ports = doc.get("ports")
    if not isinstance(ports, Mapping):
        return
    capacity = _number(ports.get("capacity"))
    pool = ports.get("pool")
    if isinstance(pool, str) and capacity is not None:
        # ports.in_use / ports.capacity are the busiest pool's figures (the JSON contract).
        in_use = _gauge("pool_ports_in_use", "Local ports held in the pool (the busiest pools).",
                        labels=["pool"])
        in_use.add_metric([pool], float(ports.get("in_use", 0)))
        cap = _gauge("pool_ports_capacity", "Local ports the pool can hand out.", labels=["pool"])
        cap.add_metric([pool], capacity)
        ratio = _gauge("pool_pressure_ratio", "Ports held in the pool / its capacity, 0..1.",
                       labels=["pool"])
        ratio.add_metric([pool], float(ports.get("pressure", 0.0)))
        yield from (in_use, cap, ratio)
    yield from _if_number("pressure_ratio", "Pressure of the busiest pool: ports held / capacity, 0..1.",
                          ports.get("pressure"))
    # ports.range_capacity where the JSON has it; else the contract's capacity, the same figure:
    # a pool (per destination, or per local address on Windows) can use every port of the range.
    range_capacity = _number(ports.get("range_capacity", capacity))
    if range_capacity is not None:
        yield _gauge("range_ports_capacity", "Ports of the whole dynamic range (excluded ports left out).",
                     range_capacity)
    port_range = ports.get("range")
    if isinstance(port_range, Sequence) and len(port_range) == 2:
        yield _gauge("range_first_port", "First port of the dynamic (ephemeral) range.", float(port_range[0]))
        yield _gauge("range_last_port", "Last port of the dynamic (ephemeral) range.", float(port_range[1]))
    yield from _if_number("range_ports_in_use", "Local ports of the dynamic range held by any socket.",
                          ports.get("range_in_use"))
    yield from _if_number("range_pressure_ratio", "Ports of the whole range held / its capacity, 0..1.",
                          ports.get("range_pressure"))


def _forecast_families(doc: Mapping[str, Any]) -> Iterator[Metric]:
    forecast = doc.get("forecast")
    if isinstance(forecast, Mapping):
        eta = _number(forecast.get("seconds_to_exhaustion"))
        yield _gauge("seconds_to_exhaustion", "Forecast seconds until the busiest pool is full; +Inf when "
                     "it is not running out.", math.inf if eta is None else eta)
        yield from _if_number("steady_state_time_wait", "TIME_WAIT the busiest pool settles at: opens per "
                              "second x TIME_WAIT duration.", forecast.get("steady_state_time_wait"))
    rates = doc.get("rates")
    if isinstance(rates, Mapping):
        for key, what in (("active_opens_per_s", "outbound connections opened"),
                          ("passive_opens_per_s", "inbound connections accepted"),
                          ("attempt_fails_per_s", "connection attempts failed")):
            yield from _if_number(key.removesuffix("_per_s") + "_per_second",
                                  f"TCP {what} per second, over the last sampling interval.", rates.get(key))


def _verdict_families(doc: Mapping[str, Any]) -> Iterator[Metric]:
    verdict = doc.get("verdict")
    if isinstance(verdict, Mapping) and verdict.get("level") in LEVEL_ORDER:
        yield _gauge("verdict_level", "PortPressure's verdict: 0 ok, 1 warning, 2 critical.",
                     float(LEVEL_ORDER[verdict["level"]]))
    downstream = doc.get("downstream")
    if isinstance(downstream, Mapping) and downstream.get("level") in LEVEL_ORDER:
        yield _gauge("downstream_verdict_level", "Judgement of the services this host connects to: "
                     "0 ok, 1 warning, 2 critical.", float(LEVEL_ORDER[downstream["level"]]))
    yield from _if_number("time_wait_unattributed", "TIME_WAIT sockets no process could be named for.",
                          doc.get("time_wait_unattributed"))
    yield from _if_number("sample_duration_seconds", "Wall time spent reading the kernel and building the "
                          "latest sample.", doc.get("sample_ms"), scale=0.001)
    limits = doc.get("limits")
    if isinstance(limits, list):
        info = _gauge("limit_info", "What this exporter cannot see, in words (1 per limit).",
                      labels=["limit"])
        for text in limits[:MAX_TOP]:
            info.add_metric([str(text)], 1.0)
        yield info


_PROCESS_FIGURES = (
    ("time_wait", "process_time_wait", "TIME_WAIT sockets attributed to the process (exact + inferred)."),
    ("time_wait_exact", "process_time_wait_exact", "TIME_WAIT sockets attributed to the process exactly."),
    ("connections", "process_connections", "Sockets the process owns, TIME_WAIT excluded."),
    ("opens_per_s", "process_opens_per_second", "Outbound connections the process opens per second."),
    ("instances", "process_instances", "Processes grouped into this row (short-lived ones of one program)."),
    ("exited", "process_exited", "1 when the process has ended while its TIME_WAIT still counts."),
)


def _process_families(doc: Mapping[str, Any], top: int) -> Iterator[Metric]:
    rows = doc.get("processes")
    if not isinstance(rows, list):
        return
    rows = [row for row in rows[:top] if isinstance(row, Mapping)]
    labels = ["pid", "name"]
    for key, name, help_text in _PROCESS_FIGURES:
        if not any(key in row for row in rows) and key not in ("time_wait", "connections"):
            continue
        family = _gauge(name, help_text + " Top processes only.", labels=labels)
        for row in rows:
            value = row.get(key)
            if isinstance(value, bool):
                value = float(value)
            if _number(value) is not None:
                family.add_metric([str(row.get("pid")), str(row.get("name"))], float(value))
        yield family
    states = _gauge("process_sockets", "Sockets the process owns in each state (non-zero states). Top "
                    "processes only.", labels=[*labels, "state"])
    parents = _gauge("process_parent_info", "The parent of a grouped process row.",
                     labels=[*labels, "parent_pid", "parent_name"])
    for row in rows:
        pid, process = str(row.get("pid")), str(row.get("name"))
        for state, count in (row.get("states") or {}).items():
            states.add_metric([pid, process, str(state).lower()], float(count))
        parent = row.get("parent")
        if isinstance(parent, Mapping):
            parents.add_metric([pid, process, str(parent.get("pid")), str(parent.get("name"))], 1.0)
    yield states
    if parents.samples:
        yield parents


def _remote_families(doc: Mapping[str, Any], top: int) -> Iterator[Metric]:
    rows = doc.get("remotes")
    if not isinstance(rows, list):
        return
    time_wait = _gauge("remote_time_wait", "TIME_WAIT sockets toward the remote endpoint. Top remotes only.",
                       labels=["remote"])
    connections = _gauge("remote_connections", "Sockets toward the remote endpoint, TIME_WAIT included. "
                         "Top remotes only.", labels=["remote"])
    for row in rows[:top]:
        address, port = str(row.get("address")), row.get("port")
        remote = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        time_wait.add_metric([remote], float(row.get("time_wait", 0)))
        connections.add_metric([remote], float(row.get("connections", 0)))
    yield from (time_wait, connections)


def sample_families(doc: Mapping[str, Any], top: int = DEFAULT_TOP) -> list[Metric]:
    """Every metric one `watch --json` object gives, gauges, with at most `top` (<= MAX_TOP)
    processes and remotes."""
    top = max(1, min(top, MAX_TOP))
    return [*_state_families(doc), *_port_families(doc), *_forecast_families(doc),
            *_verdict_families(doc), *_process_families(doc, top), *_remote_families(doc, top)]


@dataclass(frozen=True)
class CanaryStatus:
    """The latest outbound test of one target, and how many attempts ended in each category."""

    target: str
    ok: bool
    elapsed_ms: float
    attempts: Mapping[str, int]


def canary_families(canaries: Iterable[CanaryStatus]) -> list[Metric]:
    """`--probe` targets: the outbound test of the window, as metrics."""
    canaries = list(canaries)
    if not canaries:
        return []
    success = _gauge("probe_success", "1 when the latest outbound test connected, else 0.", labels=["target"])
    duration = _gauge("probe_duration_seconds", "Duration of the latest outbound test (lookup + connect).",
                      labels=["target"])
    attempts = CounterMetricFamily(PREFIX + "probe_attempts", "Outbound tests by outcome (the `probe --json` "
                                   "categories).", labels=["target", "category"])
    for canary in canaries:
        success.add_metric([canary.target], 1.0 if canary.ok else 0.0)
        duration.add_metric([canary.target], canary.elapsed_ms / 1000.0)
        for category, count in sorted(canary.attempts.items()):
            attempts.add_metric([canary.target, category], float(count))
    return [success, duration, attempts]


@dataclass(frozen=True)
class ExporterStatus:
    """The exporter's own facts: what it is, when it last sampled, how sampling went."""

    version: str
    os_name: str
    source: str
    interval_s: float
    sample_time: float  # seconds since the epoch of the latest sample
    samples: int
    failures: int
    events: Mapping[str, int]  # kind -> events seen so far (issue 12's `events` key)


def status_families(status: ExporterStatus) -> list[Metric]:
    build = _gauge("build_info", "PortPressure's version and the socket source it reads.",
                   labels=["version", "os", "source"])
    build.add_metric([status.version, status.os_name, status.source], 1.0)
    families: list[Metric] = [
        build,
        _gauge("sample_interval_seconds", "Seconds between samples (--interval).", status.interval_s),
        _gauge("sample_timestamp_seconds", "When the exported sample was taken (Unix time): an old value "
               "means sampling stalled.", status.sample_time),
        CounterMetricFamily(PREFIX + "samples", "Samples taken.", value=status.samples),
        CounterMetricFamily(PREFIX + "sample_failures", "Samples that failed to read the kernel.",
                            value=status.failures),
    ]
    if status.events:
        events = CounterMetricFamily(PREFIX + "events", "Events reported with the samples, by kind.",
                                     labels=["kind"])
        for kind, count in sorted(status.events.items()):
            events.add_metric([kind], float(count))
        families.append(events)
    return families


class FixedCollector:
    """A prometheus_client collector that yields a list of families made once, so one
    rendering serves every scrape until the next sample."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(families: Sequence[Metric]) -> bytes:
    """The Prometheus text exposition (version 0.0.4) of these families."""
    return generate_latest(FixedCollector(families))  # type: ignore[arg-type]
