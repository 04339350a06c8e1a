"""The sampling side of `portpressure serve`: samples in its own thread at a fixed
interval, turns each sample's `watch --json` object into a rendered exposition, and
keeps only the latest one. A scrape reads `latest` and never waits on the kernel.

The sampler is a core.judgement.JudgedSampler, as for `watch` and the window: the verdict
comes from the same judgement. With canary targets core.canary repeats the window's
outbound test against each of them every `probe_every_s`; each result is evidence for the
verdict and a `probe` event (JudgedSampler.note_probe), exactly as `watch --probe`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric

from core import __version__
from core.canary import DEFAULT_EVERY_S as DEFAULT_PROBE_EVERY_S
from core.canary import Canary
from core.commands.watch import sample_json
from core.judgement import JudgedSampler
from core.metrics import (
    CanaryStatus,
    ExporterStatus,
    canary_families,
    exposition,
    sample_families,
    status_families,
)
from core.model import endpoint_text
from core.probe import DEFAULT_TIMEOUT_S, ProbeResult
from core.sources import SourceError


@dataclass(frozen=True)
class Exposition:
    """One rendered scrape body and the sample it came from."""

    body: bytes
    families: tuple[Metric, ...]  # what body renders (for the textfile writer)
    sample_time: float  # Unix time of the sample


class CanaryState:
    """The latest outbound test result against one target, and the attempts by outcome."""

    def __init__(self, host: str, port: int) -> None:
        self.target = endpoint_text(host, port)
        self._lock = threading.Lock()
        self._latest: ProbeResult | None = None
        self._attempts: Counter[str] = Counter()

    def record(self, result: ProbeResult) -> None:
        with self._lock:
            self._latest = result
            self._attempts[result.category] += 1

    def status(self) -> CanaryStatus | None:
        with self._lock:
            latest, attempts = self._latest, dict(self._attempts)
        if latest is None:
            return None
        return CanaryStatus(self.target, latest.ok, latest.elapsed_ms, attempts)


class Exporter:
    """Owns the sampler (only its sampling thread samples) and the latest exposition."""

    def __init__(self, sampler: JudgedSampler, *, interval_s: float, top: int,
                 canaries: Sequence[tuple[str, int]] = (), probe_every_s: float = DEFAULT_PROBE_EVERY_S,
                 probe_timeout_s: float = DEFAULT_TIMEOUT_S, count: int | None = None,
                 on_exposition: Callable[[Exposition], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self._sampler = sampler
        self.interval_s = interval_s
        self.top = top
        self.canaries = {(host, port): CanaryState(host, port) for host, port in canaries}
        self._canary = (Canary(tuple(self.canaries), self._note_probe, every_s=probe_every_s,
                               timeout_s=probe_timeout_s) if canaries else None)
        self._count = count
        self._on_exposition = on_exposition
        self._on_error = on_error
        self._stop = threading.Event()
        self.finished = threading.Event()  # the sampling loop ended (count reached or stopped)
        self.broken: str | None = None  # why sampling stopped by itself, if it did
        self._events: Counter[str] = Counter()
        self.samples = 0
        self.failures = 0
        self.latest: Exposition | None = None
        self._thread = threading.Thread(target=self._sample_loop, name="portpressure-sampling", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self._canary is not None:
            self._canary.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._canary is not None:
            self._canary.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- threads -------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self._sample_once()
                if self._count is not None and self.samples + self.failures >= self._count:
                    break
                next_at += self.interval_s
                # The cadence (a schedule, not a synchronisation): stop() ends the wait at once.
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    break
        except Exception as exc:  # a bug: say so and end the command with a failure status
            self.broken = f"{type(exc).__name__}: {exc}"
            if self._on_error is not None:
                self._on_error(f"sampling stopped: {self.broken}")
        finally:
            self.finished.set()

    def _sample_once(self) -> None:
        try:
            sample = self._sampler.sample()
        except (SourceError, OSError) as exc:
            self.failures += 1
            if self._on_error is not None:
                self._on_error(f"sample failed, retrying: {exc}")
            return
        self.samples += 1
        doc = sample_json(sample, self.top)
        for event in doc.get("events") or ():
            self._events[str(event.get("kind", "other"))] += 1
        status = ExporterStatus(version=__version__, os_name=sample.os_name, source=self._sampler.source_name,
                                interval_s=self.interval_s, sample_time=sample.timestamp,
                                samples=self.samples, failures=self.failures, events=dict(self._events))
        canaries = [s for s in (c.status() for c in self.canaries.values()) if s is not None]
        families = [*sample_families(doc, self.top), *canary_families(canaries), *status_families(status)]
        latest = Exposition(exposition(families), tuple(families), sample.timestamp)
        self.latest = latest
        if self._on_exposition is not None:
            self._on_exposition(latest)

    def _note_probe(self, result: ProbeResult) -> None:
        """A canary result (from its own thread): the target's latest state for the
        metrics, evidence and a `probe` event for the next verdict."""
        state = self.canaries.get((result.host, result.port)) if result.port is not None else None
        if state is not None:
            state.record(result)
        self._sampler.note_probe(result)
