"""The verdict of a sample, decided in one place downstream of the sampler.

A Sample comes out of core.sampler with its facts (ports, forecast, processes) and no
verdict. `Judgement.judge` gives it one from those facts, the newest evidence (outbound
test results, per pool) and the port settings in effect, and hands it the events that
happened since the previous sample (setting changes, test results). The window, `watch`,
the recorder and the report all see samples judged here, so they cannot disagree.

Evidence per pool: a test that failed with an exhaustion error keeps the verdict critical
for PROBE_EVIDENCE_SECONDS, unless a later test through the same pool connects: that
ends the failure evidence for the pool at once. A pool is what the OS runs out of: on
Linux the destination (address and port) a connect() without bind() goes to; on Windows
every outbound connection of the machine shares the range, so any success counts.

Thread-safe: tests report from their own threads; the sampling thread judges.
No Qt here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from core import analysis
from core.model import Event, Forecast, PortConfig, ProbeFailure, Sample, endpoint_text
from core.probe import ProbeResult, to_probe_failure

WHOLE_RANGE = "*"  # the pool key where every outbound connection shares the range


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ProbeEvidence:
    """One outbound test result as evidence: which pool it went through and how it ended."""

    monotonic: float
    destination: str  # address:port actually tried (the pool on Linux)
    ok: bool
    failure: ProbeFailure | None  # set when it failed with an exhaustion error


def probe_event(result: ProbeResult) -> Event:
    """A test result for the record, one sentence a ticket can quote."""
    if result.ok:
        latency = f" in {result.connect_ms:.0f} ms" if result.connect_ms is not None else ""
        port = f" from local port {result.local_port}" if result.local_port else ""
        text = f"Outbound test to {result.target} connected{latency}{port}."
    else:
        text = f"Outbound test to {result.target} failed ({result.category}): {result.error or 'no detail'}."
    return Event(result.time_iso, "probe", text,
                 {"target": result.target, "ok": result.ok, "category": result.category,
                  "error": result.error, "elapsed_ms": round(result.elapsed_ms, 1)})


def _destination(result: ProbeResult) -> str:
    return endpoint_text(result.address or result.host, result.port or 0)


class Judgement:
    """Evidence and pending events; `judge` turns a sampler's Sample into the one shown."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._evidence: list[ProbeEvidence] = []
        self._events: list[Event] = []

    def note_probe(self, result: ProbeResult) -> Event:
        """An outbound test ended: evidence for the verdict and a `probe` event. Tests
        refused before any socket was opened (bad input) are neither."""
        event = probe_event(result)
        if result.category == "invalid_input":
            return event
        evidence = ProbeEvidence(result.monotonic, _destination(result), result.ok, to_probe_failure(result))
        with self._lock:
            self._evidence.append(evidence)
            self._events.append(event)
        return event

    def note_events(self, events: Iterable[Event]) -> None:
        """Events (setting changes, notes) to hand to the next sample judged."""
        with self._lock:
            self._events.extend(events)

    def failures(self, config: PortConfig, now: float | None = None) -> tuple[ProbeFailure, ...]:
        """The exhaustion failures still counting: younger than PROBE_EVIDENCE_SECONDS
        and not followed by a success through the same pool."""
        now = self._clock() if now is None else now
        whole_range = config.pool_scope != "per_destination"
        with self._lock:
            self._evidence = [e for e in self._evidence
                              if now - e.monotonic <= analysis.PROBE_EVIDENCE_SECONDS]
            evidence = list(self._evidence)
        last_success: dict[str, float] = {}
        for e in evidence:
            if e.ok:
                key = WHOLE_RANGE if whole_range else e.destination
                last_success[key] = max(last_success.get(key, e.monotonic), e.monotonic)
        standing = []
        for e in evidence:
            if e.failure is None:
                continue
            key = WHOLE_RANGE if whole_range else e.destination
            if last_success.get(key, float("-inf")) < e.monotonic:
                standing.append(e.failure)
        return tuple(standing)

    def judge(self, sample: Sample, config: PortConfig) -> Sample:
        """The sample with its verdict and the events since the previous one."""
        now = self._clock()
        forecast = demand_forecast(sample)
        verdict = analysis.judge(sample.ports, forecast, config, sample.processes, sample.remotes,
                                 self.failures(config, now), now,
                                 unattributed=sample.time_wait_unattributed,
                                 time_wait=sample.states.get("TIME_WAIT", 0),
                                 kernel_events=bool(sample.extra.get("kernel_events", False)),
                                 limits=sample.limits)
        with self._lock:
            events, self._events = self._events, []
        events.sort(key=lambda e: e.time_iso)
        return replace(sample, forecast=forecast, verdict=verdict, events=sample.events + tuple(events))


def demand_forecast(sample: Sample) -> Forecast:
    """While the busiest pool has no free port, new connections into it are too few to
    measure (they fail before they exist); the processes' attempts (counted from kernel
    SYN_SENT events, failed ones too: the process table's New/s) are the rate that
    matters. The steady state is then what those attempts would keep in TIME_WAIT, so
    the gauge's "at this rate" and the table say the same."""
    fc, ports = sample.forecast, sample.ports
    exhausted = ports.capacity > 0 and ports.in_use >= ports.capacity
    attempts = sum(p.opens_per_s for p in sample.processes)
    if not exhausted or attempts <= fc.open_rate_per_s:
        return fc
    return replace(fc, open_rate_per_s=attempts,
                   steady_state_time_wait=int(round(attempts * sample.time_wait_seconds)))


class RawSampler(Protocol):
    """What JudgedSampler needs from core.sampler.Sampler (or its child-process twin)."""

    def sample(self) -> Sample: ...
    def close(self) -> None: ...
    @property
    def port_config(self) -> PortConfig: ...
    @property
    def source_name(self) -> str: ...
    @property
    def privileged(self) -> bool: ...
    @property
    def limits(self) -> tuple[str, ...]: ...


class SettingsPoller(Protocol):
    def poll(self) -> tuple[Event, ...]: ...


class JudgedSampler:
    """A sampler whose samples are judged: each sample() re-reads the settings (their
    changes become events, dated before the sample that first reflects them), reads the
    kernel, then judges. The same interface as the
    sampler it wraps, so `watch`, the report and the window's worker use it alike."""

    def __init__(self, sampler: RawSampler, judgement: Judgement | None = None,
                 settings: SettingsPoller | None = None) -> None:
        self.sampler = sampler
        self.judgement = judgement or Judgement()
        self.settings = settings

    def sample(self) -> Sample:
        if self.settings is not None:
            self.judgement.note_events(self.settings.poll())
        raw = self.sampler.sample()
        return self.judgement.judge(raw, self.sampler.port_config)

    def note_probe(self, result: ProbeResult) -> Event:
        return self.judgement.note_probe(result)

    def close(self) -> None:
        self.sampler.close()

    @property
    def port_config(self) -> PortConfig:
        return self.sampler.port_config

    @property
    def source_name(self) -> str:
        return self.sampler.source_name

    @property
    def privileged(self) -> bool:
        return self.sampler.privileged

    @property
    def limits(self) -> tuple[str, ...]:
        return self.sampler.limits
