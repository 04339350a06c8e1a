"""Sampling off the GUI thread: a QObject worker with its own QTimer in a QThread.

The worker owns the Sampler (created inside the thread, since opening a source can
take a full /proc scan) and emits immutable Samples through queued signals. A failed
read is reported as text and the next tick simply tries again. The GUI thread never
touches the kernel. On Linux the sampler itself runs in a child process
(core/sampler_process.py) and this thread only waits for its replies. Each sample is
judged here (core.judgement: the verdict with the window's evidence, the settings
re-read and their changes as events) before the window or the recorder sees it.

When the window records (File > Record), the Recorder is handed to the worker and each
sample is appended here, after it has been sent to the window: the disk is never
waited on in the GUI thread, and Recorder.append waits at most its wait_s.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from core.judgement import JudgedSampler, Judgement, RawSampler
from core.model import PortConfig, Sample
from core.recording import Recorder
from core.settings_watch import SettingsWatch
from core.sources.base import SourceError

log = logging.getLogger(__name__)
GIL_SWITCH_INTERVAL_S = 0.001


# What the worker needs from core.sampler.Sampler (a replay can provide it too).
SamplerLike = RawSampler


@dataclass(frozen=True)
class SourceFacts:
    """What the status bar says about the reader: sent when it opens and again when a
    sample changes it (e.g. the port settings)."""

    source_name: str
    privileged: bool
    limits: tuple[str, ...]
    port_config: PortConfig


def _default_sampler() -> SamplerLike:
    from core.sampler_process import open_sampler

    sampler: SamplerLike = open_sampler()
    return sampler


class SamplingWorker(QObject):
    sample_ready = Signal(object)  # Sample
    facts_ready = Signal(object)  # SourceFacts
    error = Signal(str)
    recorded = Signal(object, int)  # (Recorder, samples written so far)
    recording_failed = Signal(object, str)  # (Recorder, its one-line error); it is closed

    def __init__(self, make_sampler: Callable[[], SamplerLike] = _default_sampler,
                 interval_s: float = 1.0, judgement: Judgement | None = None) -> None:
        super().__init__()
        self.judgement = judgement or Judgement()
        self._make_sampler = make_sampler
        self._interval_ms = max(int(interval_s * 1000), 10)
        self._sampler: JudgedSampler | None = None
        self._facts: SourceFacts | None = None
        self._timer: QTimer | None = None
        self._lock = threading.Lock()
        self._recorder: Recorder | None = None

    @property
    def sampler(self) -> SamplerLike | None:
        return self._sampler

    @property
    def interval_s(self) -> float:
        return self._interval_ms / 1000.0

    @Slot()
    def start(self) -> None:
        """Runs in the worker thread: the timer must belong to that thread."""
        self._timer = QTimer(self)
        self._timer.setInterval(self._interval_ms)
        self._timer.timeout.connect(self.tick)
        self._timer.start()
        self.tick()

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._sampler is not None:
            try:
                self._sampler.close()
            except Exception as exc:  # closing must not keep the window from closing
                log.warning("closing the sampler: %s", exc)
            self._sampler = None

    def set_recorder(self, recorder: Recorder | None) -> None:
        """Thread-safe: every sample from the next one on is appended to `recorder`
        (None: stop appending; the caller closes the recorder it gave)."""
        with self._lock:
            self._recorder = recorder

    def _record(self, sample: Sample) -> None:
        with self._lock:
            recorder = self._recorder
        if recorder is None:
            return
        try:
            recorder.append(sample)  # returns once on disk, or after recorder.wait_s at most
            error = recorder.error
        except Exception as exc:  # append never raises by contract; if it did, stop recording
            log.exception("recording a sample")
            error = f"recording to {recorder.path} failed: {type(exc).__name__}: {exc}"
        if error is None:
            self.recorded.emit(recorder, recorder.samples_written)
            return
        with self._lock:
            if self._recorder is recorder:
                self._recorder = None
        recorder.close()
        self.recording_failed.emit(recorder, error)

    def _open(self) -> JudgedSampler:
        # Judged here, in this thread, before the window and the recorder see the sample.
        sampler = JudgedSampler(self._make_sampler(), self.judgement, SettingsWatch())
        with self._lock:
            self._sampler = sampler
        self._tell_facts(sampler)
        return sampler

    def _tell_facts(self, sampler: JudgedSampler) -> None:
        """The reader's facts when it opens and whenever a sample changes them (a port
        setting changed, a limit appeared): the status bar follows each sample."""
        facts = SourceFacts(sampler.source_name, sampler.privileged, sampler.limits, sampler.port_config)
        if facts != self._facts:
            self._facts = facts
            self.facts_ready.emit(facts)

    @Slot()
    def tick(self) -> None:
        try:
            sampler = self._sampler or self._open()
            sample = sampler.sample()
        except Exception as exc:  # every failure is shown and retried, never fatal
            # Expected failures (the kernel read) in one line; anything else with its traceback.
            log.warning("sampling failed: %s", exc, exc_info=not isinstance(exc, (OSError, SourceError)))
            self.error.emit(f"Sampling failed, retrying every {self.interval_s:g} s: {exc}")
            return
        self._tell_facts(sampler)
        self.sample_ready.emit(sample)
        self._record(sample)


class SamplingThread(QObject):
    """Owns the QThread and the worker; start() and stop() from the GUI thread."""

    def __init__(self, worker: SamplingWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("portpressure-sampling")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.start)
        # `finished` is emitted inside the worker thread as its loop ends: the timer
        # and the sampler are stopped and closed in the thread that owns them.
        self.thread.finished.connect(worker.stop, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        # Where the sampler runs in this thread (Windows, PORTPRESSURE_SAMPLER=thread; on
        # Linux it is a child process) it is Python and numpy holding the GIL for ~100 ms
        # a sample at 100k sockets; the GUI thread takes the GIL back at every call into
        # Qt, and each time waits up to the switch interval. 1 ms instead of 5 keeps a
        # repaint from stretching to a visible stall (benchmarks/gui_responsiveness.py).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """End the worker thread's loop (the sampler is closed there) and wait for it."""
        if not self.thread.isRunning():
            return True
        self.thread.quit()  # takes effect after a sample in progress
        finished = self.thread.wait(timeout_ms)
        if not finished:
            log.warning("the sampling thread did not stop within %d ms", timeout_ms)
        return bool(finished)
