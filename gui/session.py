"""What the window follows, without a widget: one Session owns the sampling thread,
the live history, the recorder, the replay, the outbound-test evidence and the facts
of the reader, and says through signals what is to be shown. The banner, the plot,
the process pane and the status bar subscribe; the window only lays them out and
holds the menus. Every value on screen comes from one of these signals.

Live: samples come from the sampling worker (judged there, with this session's
core.judgement.Judgement) through a queued signal; each is appended to the history
and shown. Replay (`open_recording`): the recording is loaded off this thread
(gui/replay.py), live sampling stops, and `show_replay_index` picks the sample on
screen; `back_to_live` resumes sampling. Record (`start_recording`): a
core.recording.Recorder is handed to the sampling worker, which appends every sample
in its own thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from core.history import DAY_AT_1HZ, History, HistorySnapshot
from core.judgement import Judgement
from core.model import Event, Sample
from core.probe import ProbeResult
from core.recording import Recorder, Recording, RecordingError, check_recording
from core.report import Evidence
from gui.evidence import build_evidence
from gui.replay import RecordingLoader, when
from gui.sampling_worker import SamplerLike, SamplingThread, SamplingWorker, SourceFacts

log = logging.getLogger(__name__)

LIVE, LOADING, REPLAY = "live", "loading", "replay"
MAX_EVENTS = 10_000  # kept for the plot's markers and the report; the oldest go first


class Session(QObject):
    appended = Signal(object)  # a live Sample added to the history (the plot appends it)
    shown = Signal(object)  # the Sample on screen: live, or the replayed moment
    ingested = Signal(object)  # a live Sample, after every view has shown it
    cleared = Signal()  # nothing to show (back to live before the first sample)
    mode_changed = Signal(str)  # LIVE, LOADING or REPLAY
    facts_changed = Signal(object)  # SourceFacts of the live reader, or None
    events_added = Signal(object)  # tuple[Event, ...] new since the last sample (plot markers)
    recording_loaded = Signal(object)  # Recording, now being replayed
    load_failed = Signal(str)  # why a recording could not be opened
    replay_moved = Signal(int, object)  # (index, Sample) of the replayed moment now on screen
    recorder_changed = Signal(object, int)  # (Recorder or None, samples written so far)
    error = Signal(str)  # one line for the status bar; "" clears it
    message = Signal(str)  # a passing status-bar message

    def __init__(self, *, make_sampler: Callable[[], SamplerLike] | None = None, interval_s: float = 1.0,
                 history_capacity: int = DAY_AT_1HZ, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_s = interval_s
        self.history = History(history_capacity)
        self.judgement = Judgement()  # evidence outlives a sampling thread (Back to live)
        self.latest: Sample | None = None  # the sample on screen
        self.live_latest: Sample | None = None
        self.facts: SourceFacts | None = None
        self.events: list[Event] = []  # live events, oldest first
        self.recording: Recording | None = None  # being replayed
        self.replay_index = 0
        self.recorder: Recorder | None = None
        self.loader: RecordingLoader | None = None
        self._make_sampler = make_sampler
        self.sampling: SamplingThread | None = None
        # A sample that arrives ends a sampling error, not a recording's: "Recording
        # stopped: the disk is full" must stay on screen after the next sample.
        self._sampling_error_shown = False

    @property
    def mode(self) -> str:
        if self.recording is not None:
            return REPLAY
        return LOADING if self.loader is not None else LIVE

    @property
    def is_sampling(self) -> bool:
        return self.sampling is not None and self.sampling.thread.isRunning()

    # -- live -----------------------------------------------------------------------------
    def _new_sampling(self) -> SamplingThread:
        worker = (SamplingWorker(self._make_sampler, self.interval_s, self.judgement) if self._make_sampler
                  else SamplingWorker(interval_s=self.interval_s, judgement=self.judgement))
        # Queued, explicitly: these run in this (the GUI) thread whatever wraps them.
        queued = Qt.ConnectionType.QueuedConnection
        worker.sample_ready.connect(self.ingest, queued)
        worker.facts_ready.connect(self._facts_ready, queued)
        worker.error.connect(self._sampling_error, queued)
        worker.recorded.connect(self._recorded, queued)
        worker.recording_failed.connect(self._recording_failed, queued)
        return SamplingThread(worker, self)

    def prepare_sampling(self) -> SamplingThread:
        """The sampling thread, made (not started) if there is none that can start."""
        if self.sampling is None or self.sampling.thread.isFinished():
            old, self.sampling = self.sampling, self._new_sampling()
            if old is not None:
                old.setParent(None)
                old.deleteLater()
        return self.sampling

    def start_sampling(self) -> None:
        if not self.is_sampling:
            self.prepare_sampling().start()

    def stop_sampling(self) -> None:
        if self.sampling is not None:
            self.sampling.stop()

    @Slot(object)
    def ingest(self, sample: Sample) -> None:
        if self.recording is not None:
            return  # a live sample still queued when the replay began: live is stopped
        self.history.append(sample)
        self.live_latest = sample
        if self._sampling_error_shown:
            self._sampling_error_shown = False
            self.error.emit("")
        if sample.events:
            self.events.extend(sample.events)
            del self.events[:-MAX_EVENTS]
            self.events_added.emit(sample.events)
        self.appended.emit(sample)
        self._show(sample)
        self.ingested.emit(sample)

    def _show(self, sample: Sample) -> None:
        self.latest = sample
        self.shown.emit(sample)

    @Slot(object)
    def _facts_ready(self, facts: SourceFacts) -> None:
        self.facts = facts
        if self.recording is None:
            self.facts_changed.emit(facts)

    @Slot(str)
    def _sampling_error(self, text: str) -> None:
        if self.recording is None:  # not a stopped worker's last words over a replay
            self._sampling_error_shown = True
            self.error.emit(text)

    def note_probe(self, result: ProbeResult) -> None:
        """An outbound test's result (the Outbound test tab): evidence for the verdict,
        and a `probe` event with the next sample."""
        self.judgement.note_probe(result)

    # -- replay ---------------------------------------------------------------------------
    def open_recording(self, path: str | os.PathLike[str]) -> bool:
        """Start loading `path` in the background (False: refused at once, and said why
        through load_failed). Live or replay stays on screen until it has loaded."""
        if self.loader is not None:
            self.message.emit(f"Still loading {self.loader.path.name}…")
            return False
        path = Path(path)
        try:
            check_recording(path)
        except RecordingError as exc:
            self.load_failed.emit(f"Could not open the recording: {exc}")
            return False
        loader = RecordingLoader(path, self)
        loader.loaded.connect(self._recording_loaded)
        loader.failed.connect(lambda reason: self.load_failed.emit(f"Could not open the recording: {reason}"))
        loader.finished.connect(self._loader_finished)
        self.loader = loader
        self.mode_changed.emit(LOADING)
        loader.start()
        return True

    @Slot()
    def _loader_finished(self) -> None:
        loader, self.loader = self.loader, None
        if loader is not None:
            loader.deleteLater()
        self.mode_changed.emit(self.mode)

    @Slot(object)
    def _recording_loaded(self, recording: Recording) -> None:
        self.stop_sampling()
        if self.recorder is not None:
            self.stop_recording("replay started; live sampling is stopped")
        self.recording = recording
        self.latest = None  # until a recorded sample is on screen: never the live one in its place
        self.error.emit("")
        self.recording_loaded.emit(recording)
        self.mode_changed.emit(REPLAY)

    @Slot(int)
    def show_replay_index(self, index: int) -> None:
        recording = self.recording
        if recording is None or not 0 <= index < len(recording):
            return
        try:
            sample = recording.samples[index]
        except RecordingError as exc:  # a hand-edited line: the rest of the recording still replays
            self.error.emit(str(exc))
            return
        self.replay_index = index
        self._show(sample)
        self.replay_moved.emit(index, sample)

    def back_to_live(self) -> None:
        """Leave the replay (if any) and sample this machine again."""
        if self.recording is not None:
            self.recording = None
            self.latest = self.live_latest
            self.mode_changed.emit(LIVE)
            self.facts_changed.emit(self.facts)
            if self.live_latest is not None:
                self._show(self.live_latest)
            else:
                self.cleared.emit()
        self.start_sampling()
        self.mode_changed.emit(LIVE)
        self.message.emit("Live: sampling this machine again")

    def live_snapshot(self) -> HistorySnapshot:
        return self.history.snapshot()

    def replay_snapshot(self) -> HistorySnapshot | None:
        """The recorded series up to the replayed moment."""
        if self.recording is None:
            return None
        snapshot = self.recording.snapshot()
        end = self.replay_index + 1
        return HistorySnapshot(snapshot.times[:end], snapshot.values[:end])

    def shown_events(self) -> tuple[Event, ...]:
        """The events up to the moment on screen: live, every one kept; in a replay, the
        recording's up to the replayed moment."""
        if self.recording is None:
            return tuple(self.events)
        shown = self.latest.time_iso if self.latest is not None else ""
        return tuple(e for e in self.recording.events if e.time_iso <= shown)

    # -- recording ------------------------------------------------------------------------
    def start_recording(self, path: str | os.PathLike[str]) -> str | None:
        """Open the Recorder and hand it to the sampling worker: None when recording, else
        why not, in one line."""
        if self.recorder is not None:
            return None
        if self.recording is not None:
            return "Recording needs live samples: go back to live first (File > Back to live)"
        facts = self.facts
        try:
            recorder = Recorder(path, port_config=facts.port_config if facts else None,
                                source=facts.source_name if facts else "")
        except (RecordingError, OSError) as exc:
            return f"Could not record: {exc}"
        self.recorder = recorder
        if self.sampling is not None:
            self.sampling.worker.set_recorder(recorder)
        self.recorder_changed.emit(recorder, 0)
        log.info("recording to %s", recorder.path)
        return None

    def stop_recording(self, why: str = "") -> None:
        recorder, self.recorder = self.recorder, None
        if self.sampling is not None:
            self.sampling.worker.set_recorder(None)
        if recorder is None:
            return
        self.recorder_changed.emit(None, 0)
        recorder.close()  # writes what is queued (a sample at most) and finishes the file
        if recorder.error:
            self.error.emit(f"Recording stopped: {recorder.error}")
            return
        self.message.emit(f"Recording stopped{': ' + why if why else ''}: {recorder.samples_written:,} "
                          f"samples in {recorder.path}")

    @Slot(object, int)
    def _recorded(self, recorder: Recorder, written: int) -> None:
        if recorder is self.recorder:
            self.recorder_changed.emit(recorder, written)

    @Slot(object, str)
    def _recording_failed(self, recorder: Recorder, error: str) -> None:
        if recorder is not self.recorder:
            return
        self.recorder = None  # the worker has closed it
        self.recorder_changed.emit(None, 0)
        self.error.emit(f"Recording stopped: {error}")

    # -- evidence -------------------------------------------------------------------------
    def evidence(self, *, window_png: bytes, plot_png: bytes | None,
                 probe_results: Sequence[Mapping[str, Any]], settings: Sequence[Mapping[str, Any]],
                 event_log: Mapping[str, Any] | None,
                 notes: Sequence[str]) -> Evidence:
        """The moment on screen frozen for Save evidence, with the events up to it (raises
        NothingToSave before a sample). Live: this machine, with the window's panels.
        Replay: the recorded moment, said to be one, with the recorded series, events,
        host, OS, reader and port settings; the panels show this machine now, not the
        recording, and are left out."""
        events = tuple(e.to_json() for e in self.shown_events())
        recording = self.recording
        if recording is None:
            facts = self.facts
            limits = self.latest.limits if self.latest else ()
            notes = list(notes) + [f"Could not see: {limit}" for limit in (facts.limits if facts else ())
                                   if limit not in limits]
            evidence = build_evidence(
                sample=self.latest, history=self.live_snapshot(), window_png=window_png, plot_png=plot_png,
                port_config=facts.port_config if facts else None, source=facts.source_name if facts else "",
                privileged=facts.privileged if facts else None, probe_results=probe_results,
                settings=settings, event_log=event_log, notes=notes)
            return dataclasses.replace(evidence, events=events)
        index, header, sample = self.replay_index, recording.header or {}, self.latest
        notes = [
            f"Replayed from the recording {recording.path} ({when(recording.start)} to "
            f"{when(recording.end)}, {len(recording):,} samples): this report shows the moment "
            f"{sample.time_iso if sample else '?'} (sample {index + 1:,} of {len(recording):,}) and the "
            f"series up to it. Made on {socket.gethostname()}.",
            "The outbound test panel, the event log and the OS settings panel show this machine now, not "
            "the recording, and are left out (the recorded tests are among the events).",
        ] + list(recording.warnings)
        evidence = build_evidence(
            sample=sample, history=self.replay_snapshot(), window_png=window_png, plot_png=plot_png,
            port_config=recording.port_config, source=str(header.get("source") or ""), privileged=None,
            notes=notes)
        recorded_on = {key: str(header[key]) for key in ("host", "os") if header.get(key)}
        return dataclasses.replace(evidence, host=recorded_on.get("host", evidence.host),
                                   os_name=recorded_on.get("os", evidence.os_name), events=events)

    # -- the end --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop sampling, then recording (so the last sample is in), then wait for a load."""
        self.stop_sampling()
        self.stop_recording("the window closed")
        if self.loader is not None:
            self.loader.wait()  # a QThread must not be destroyed while it runs
