"""The window's Record toggle (pytest-qt, offscreen) with the real sampler reading this
machine's socket table: the file it writes loads back with exactly the samples the
window showed, appended in the sampling thread, never the GUI thread; switching off
or closing the window finishes the file; a path that cannot be written, or a disk
that fills up mid-recording, is one line in the status bar and the toggle is off.
Opening a replay stops the recording, and the replay of the window's own recording
shows what the window showed live."""

from __future__ import annotations

import contextlib
import gzip
import re
import threading
from pathlib import Path

import pytest

from core.model import Sample
from core.recording import RECORD_TOP, Recorder, load_recording
from gui.main_window import MainWindow
from tests import test_gui_window as window_tests
from tests.test_recording import tmpfs  # a tmpfs mount: read-only, or a disk that fills up

pytestmark = pytest.mark.gui
# The window fixtures of the window tests, shared.
settings = window_tests.settings
make_window = window_tests.make_window


class ThreadNotingRecorder(Recorder):
    """The real Recorder, noting which thread each append comes from."""

    append_threads: list[int] = []

    def append(self, sample: Sample) -> None:
        ThreadNotingRecorder.append_threads.append(threading.get_ident())
        super().append(sample)


def record_to(path: Path | str) -> tuple[list[str], object]:
    """A record-file chooser answering `path`, and the suggestions it was given."""
    suggested: list[str] = []

    def choose(_parent, suggestion: str) -> str:
        suggested.append(suggestion)
        return str(path)

    return suggested, choose


def live_window(qtbot, make_window, **kwargs) -> tuple[MainWindow, list[Sample]]:
    window = make_window(**kwargs)
    shown: list[Sample] = []
    window.sample_shown.connect(shown.append)
    qtbot.waitUntil(lambda: window.session.facts is not None and len(shown) >= 1, timeout=15_000)
    return window, shown


def test_record_writes_exactly_what_the_window_showed(qtbot, make_window, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("gui.session.Recorder", ThreadNotingRecorder)
    ThreadNotingRecorder.append_threads = []
    path = tmp_path / "night.jsonl.gz"
    suggested, choose = record_to(path)
    window, shown = live_window(qtbot, make_window, choose_record_file=choose)
    window.settings.setValue("evidence/folder", str(tmp_path))

    window.record_action.trigger()  # File > Record to file…, or the toolbar button
    assert window.record_action.isChecked() and window.session.recorder is not None
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'portpressure-'))}[\w.-]+-\d{{8}}-\d{{6}}\.jsonl\.gz",
                        suggested[0]), suggested
    qtbot.waitUntil(lambda: window.session.recorder.samples_written >= 5, timeout=15_000)
    qtbot.waitUntil(lambda: re.fullmatch(r"● Recording to night\.jsonl\.gz \(\d+ samples\)",
                                         window.status_bar.record_label.text()) is not None, timeout=5_000)
    assert window.status_bar.record_label.isVisible()
    window.record_action.trigger()  # off
    assert not window.record_action.isChecked() and window.session.recorder is None
    assert not window.status_bar.record_label.isVisible()

    recording = load_recording(path)
    written = len(recording)
    assert written >= 5 and not recording.warnings
    assert f"Recording stopped: {written:,} samples in {path}" == window.statusBar().currentMessage()
    by_time = {s.time_iso: s for s in shown}
    recorded = [recording.samples[i] for i in range(written)]
    for sample in recorded:  # each recorded sample is one the window showed, value for value
        assert sample.to_json() == by_time[sample.time_iso].to_json(top=RECORD_TOP)
    positions = [list(by_time).index(s.time_iso) for s in recorded]
    assert positions == list(range(positions[0], positions[0] + written))  # none skipped
    assert recording.port_config == window.session.facts.port_config
    assert recording.header["source"] == window.session.facts.source_name
    # Every append ran in the sampling thread, not in this (the GUI) thread.
    assert len(ThreadNotingRecorder.append_threads) >= written
    assert threading.main_thread().ident not in ThreadNotingRecorder.append_threads
    # Switched off: the file is finished (plain gzip reads it) and no longer grows.
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert len(lines) == written + 1  # the header, then one line per sample
    before = len(shown)
    qtbot.waitUntil(lambda: len(shown) >= before + 2, timeout=10_000)
    assert len(load_recording(path)) == written


def test_closing_the_window_finishes_the_recording(qtbot, make_window, tmp_path) -> None:
    path = tmp_path / "closed.jsonl.gz"
    _suggested, choose = record_to(path)
    window, _shown = live_window(qtbot, make_window, choose_record_file=choose)
    window.record_action.trigger()
    qtbot.waitUntil(lambda: window.session.recorder.samples_written >= 2, timeout=15_000)
    window.close()
    assert window.session.recorder is None
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()  # complete: no EOFError
    assert len(lines) - 1 == len(load_recording(path)) >= 2


def test_opening_a_replay_stops_recording_and_replays_what_was_shown(qtbot, make_window, tmp_path) -> None:
    path = tmp_path / "own.jsonl.gz"
    _suggested, choose = record_to(path)
    window, shown = live_window(qtbot, make_window, choose_record_file=choose)
    window.record_action.trigger()
    qtbot.waitUntil(lambda: window.session.recorder.samples_written >= 3, timeout=15_000)
    with qtbot.waitSignal(window.loading_finished, timeout=20_000) as blocker:
        window.open_recording(path)
    assert blocker.args == [True]
    assert not window.record_action.isChecked() and not window.record_action.isEnabled()
    assert window.session.recorder is None and "Recording stopped: replay started" in \
        window.statusBar().currentMessage()
    recording = window.session.recording
    assert recording is not None and len(recording) >= 3
    by_time = {s.time_iso: s for s in shown}
    for index in range(len(recording)):
        window.replay_bar.slider.setValue(index)
        latest = window.session.latest
        assert latest.to_json() == by_time[latest.time_iso].to_json(top=RECORD_TOP)
        assert window.banner.title_label.text() == by_time[latest.time_iso].verdict.title
    window.back_to_live()
    assert window.record_action.isEnabled() and not window.record_action.isChecked()


@pytest.mark.parametrize("where, needle", [
    ("missing-folder", "does not exist"),
    ("a-folder", "is a folder"),
    ("read-only", "Read-only file system"),
    ("foreign-file", "is not a PortPressure recording"),
])
def test_an_unwritable_path_is_one_line_and_the_toggle_is_off(qtbot, make_window, tmp_path, where,
                                                              needle) -> None:
    with contextlib.ExitStack() as stack:
        if where == "missing-folder":
            target = tmp_path / "nope" / "rec.jsonl.gz"
        elif where == "a-folder":
            target = tmp_path
        elif where == "read-only":
            target = stack.enter_context(tmpfs(tmp_path / "ro", "ro")) / "rec.jsonl.gz"
        else:
            target = tmp_path / "notes.txt"
            target.write_text("somebody's notes\n")
        _suggested, choose = record_to(target)
        window, shown = live_window(qtbot, make_window, choose_record_file=choose)
        window.record_action.trigger()
        error = window.status_bar.error_label.text()
        assert error.startswith("Could not record: ") and needle in error and "\n" not in error, error
        assert not window.record_action.isChecked() and window.session.recorder is None
        assert not window.status_bar.record_label.isVisible()
        if where == "foreign-file":
            assert target.read_text() == "somebody's notes\n"  # never touched
        before = len(shown)
        qtbot.waitUntil(lambda: len(shown) >= before + 2, timeout=10_000)  # sampling goes on
        window.close()


def test_a_full_disk_stops_recording_with_one_line_and_keeps_the_file(qtbot, make_window, tmp_path) -> None:
    with tmpfs(tmp_path / "tiny", "size=8k") as disk:
        path = disk / "rec.jsonl.gz"
        _suggested, choose = record_to(path)
        window, shown = live_window(qtbot, make_window, choose_record_file=choose, interval_s=0.05)
        window.record_action.trigger()
        assert window.record_action.isChecked()
        qtbot.waitUntil(lambda: not window.record_action.isChecked(), timeout=60_000)
        error = window.status_bar.error_label.text()
        assert error.startswith("Recording stopped: ") and "the disk is full" in error, error
        assert "\n" not in error and window.session.recorder is None
        assert not window.status_bar.record_label.isVisible()
        recording = load_recording(path)  # every sample written before the disk filled
        assert len(recording) >= 1
        by_time = {s.time_iso: s for s in shown}
        assert all(recording.samples[i].to_json() == by_time[recording.samples[i].time_iso].to_json(
            top=RECORD_TOP) for i in range(len(recording)))
        before = len(shown)
        qtbot.waitUntil(lambda: len(shown) >= before + 2, timeout=10_000)  # sampling goes on
        window.close()
