"""Replay in the window (pytest-qt, offscreen): a recording of real samples, taken by
the real Sampler in a private network namespace under churn, opened in the window.
At a chosen moment the process and remote tables, the verdict banner, the gauge and
the plotted state counts must show exactly what was recorded for that moment, the
live history must stay untouched, and the way back to live must sample again. A cut
recording opens with a warning; a bad file is one line and the window keeps working;
`gui --open` refuses a bad file with one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from core.model import Sample
from core.recording import RECORD_TOP, Recorder, RecordingError, check_recording, load_recording
from gui.main_window import MainWindow
from gui.state_plot import PORTS_HELD_LABEL
from gui.table_models import SORT_ROLE
from tests import test_gui_window as window_tests
from tests.support.netns import netns_unavailable_reason, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener

pytestmark = pytest.mark.gui
# The window fixtures and the command-line runner of the window tests, shared.
settings = window_tests.settings
make_window = window_tests.make_window
run_cli = window_tests.run_cli
NARROW = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}


def _record_under_churn(count: int, path: str) -> list[Sample]:
    """`count` real samples of a namespace where two named processes churn and one
    server never closes (CLOSE_WAIT), recorded to `path` as the window's Record does."""
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Listener("127.0.0.1", 9002, mode="never_close"), \
            Churner("127.0.0.1", 9000, hold_s=0.002, name="replay-churn") as churn, \
            Churner("127.0.0.1", 9002, hold_s=0.01, name="replay-leaky"):
        wait_until(lambda: churn.ok >= 100, 30, "churn to start")
        sampler = JudgedSampler(Sampler())
        samples: list[Sample] = []
        try:
            with Recorder(path, port_config=sampler.port_config, source=sampler.source_name) as recorder:
                for _ in range(count):
                    sample = sampler.sample()
                    samples.append(sample)
                    recorder.append(sample)
                    # The range fills up between samples: every moment differs from the last.
                    # On a slow machine it can be full before the last sample: then failed
                    # attempts are what changes.
                    wait_until(lambda n=churn.ok, f=churn.failed: churn.ok >= n + 40 or churn.failed > f,
                               10, "more churn")
            assert recorder.error is None, recorder.error
        finally:
            sampler.close()
    return samples


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[Sample]]:
    if (reason := netns_unavailable_reason()) is not None:
        pytest.skip(reason)
    path = tmp_path_factory.mktemp("replay") / "churn.jsonl.gz"
    samples = run_in_netns(_record_under_churn, 8, str(path), sysctls=NARROW)
    return path, samples


def open_and_wait(qtbot, window: MainWindow, path: Path) -> bool:
    with qtbot.waitSignal(window.loading_finished, timeout=20_000) as blocker:
        assert window.open_recording(path)
    return bool(blocker.args[0])


def model_rows(model, key_column: str) -> dict:
    """Each row's raw values by column title, keyed by one column: what the view sorts
    and shows (the display text is made from the same values)."""
    titles = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    rows = {}
    for r in range(model.rowCount()):
        values = {t: model.index(r, c).data(SORT_ROLE) for c, t in enumerate(titles)}
        rows[values[key_column]] = values
    return rows


def expected_processes(line: dict) -> dict:
    return {p["pid"]: {"PID": p["pid"], "Name": p["name"], "Sockets": p["connections"] + p["time_wait"],
                       "Conns": p["connections"], "TIME_WAIT": p["time_wait"], "exact": p["time_wait_exact"],
                       "inferred": p["time_wait_inferred"], "New/s": p["opens_per_s"]}
            for p in line["processes"]}


def shown_processes(window: MainWindow) -> dict:
    rows = model_rows(window.processes.process_model, "PID")
    for values in rows.values():
        del values["States"]  # compact text of the states: checked through the rows below
    return rows


def assert_window_shows(window: MainWindow, line: dict, index: int) -> None:
    """Every view against the recorded line for one moment."""
    assert window.session.replay_index == index
    assert shown_processes(window) == expected_processes(line)
    assert {row.pid: dict(row.states) for row in window.processes.process_model.rows()} == {
        p["pid"]: p["states"] for p in line["processes"]}
    assert model_rows(window.remotes.remote_model, "Address") == {
        r["address"]: {"Address": r["address"], "Port": r["port"], "Connections": r["connections"],
                       "TIME_WAIT": r["time_wait"]} for r in line["remotes"]}
    banner = window.banner
    assert banner.level == line["verdict"]["level"]
    assert banner.title_label.text() == line["verdict"]["title"]
    assert banner.reasons_text() == "\n".join(line["verdict"]["reasons"])
    ports = line["ports"]
    assert banner.gauge.value() == round(min(ports["pressure"], 1.0) * 1000)
    assert f"({ports['in_use']:,} of {ports['capacity']:,} ports)" in banner.gauge.format()
    assert f"Busiest pool: {ports['pool']}" in banner.gauge_caption.text()
    # The plotted state counts at the cursor, and the read-out under the plot.
    plot = window.plot
    assert plot.cursor_index == index and plot.replay_line.isVisible()
    assert plot.replay_line.value() == pytest.approx(plot.buffer.times[index])
    states = line["states"]
    for group in plot.groups:
        assert plot.values_at(index)[group.label] == sum(states[s] for s in group.states), group.label
    assert plot.values_at(index)[PORTS_HELD_LABEL] == ports["in_use"]
    readout = plot.readout.text()
    assert f"TIME_WAIT {states['TIME_WAIT']:,}" in readout
    assert f"ports held {ports['in_use']:,} of {ports['capacity']:,}" in readout
    if line.get("time_wait_unattributed"):
        assert f"{line['time_wait_unattributed']:,} TIME_WAIT sockets could not be attributed" in \
            window.processes.process_caption.text()
    assert window.session.latest is not None and window.session.latest.time_iso == line["time"]


def test_replay_shows_exactly_the_recorded_moment(qtbot, make_window, recorded, tmp_path) -> None:
    path, samples = recorded
    recording = load_recording(path)
    assert len(recording) == len(samples)
    window = make_window()  # live first: the replay must leave the live history alone
    qtbot.waitUntil(lambda: len(window.session.history) >= 2, timeout=15_000)
    assert open_and_wait(qtbot, window, path)
    live_rows = len(window.session.history)
    assert not window.session.sampling.thread.isRunning()  # live sampling is stopped while replaying
    assert window.session.recording is not None and len(window.session.recording) == len(samples)
    title = f"Replay of churn.jsonl.gz ({window.replay_bar.title.text().split('(')[1]}"
    assert title.endswith(f"), {len(samples)} samples") and title in window.windowTitle()
    assert window.status_bar.mode_label.text() == f"Replay of churn.jsonl.gz, {len(samples)} samples"
    assert title in window.status_bar.mode_label.toolTip() and window.replay_bar.isVisible()
    assert not window.record_action.isEnabled() and window.live_action.isEnabled()
    # The whole period is plotted, exactly the recorded series.
    plot = window.plot
    assert len(plot.buffer) == len(samples) and plot.show_whole
    (left, right), _ = plot.view_box.viewRange()
    assert left <= samples[0].timestamp - 0.0005 and right >= samples[-1].timestamp
    for i, sample in enumerate(samples):
        assert plot.buffer.times[i] == pytest.approx(sample.timestamp, abs=0.001)
        assert plot.values_at(i)["TIME_WAIT"] == sample.states["TIME_WAIT"]
    # It opens at the highest pressure.
    pressures = [s.ports.pressure for s in samples]
    assert window.session.replay_index == pressures.index(max(pressures))

    # A chosen moment, by the slider: exactly the recorded line, and the sampler's own values.
    slider = window.replay_bar.slider
    chosen = 5
    slider.setValue(chosen)
    line = json.loads(recording.samples.line(chosen))
    assert_window_shows(window, line, chosen)
    assert window.session.latest.to_json() == samples[chosen].to_json(top=RECORD_TOP)
    assert window.replay_bar.moment.text().endswith(f"sample {chosen + 1} of {len(samples)}")

    # Left/Right step one sample (the slider has the focus after loading, and the plot).
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_Left)
    assert_window_shows(window, json.loads(recording.samples.line(chosen - 1)), chosen - 1)
    window.plot.plot_widget.setFocus()
    QTest.keyClick(window.plot.plot_widget, Qt.Key.Key_Right)
    QTest.keyClick(window.plot.plot_widget, Qt.Key.Key_Right)
    assert_window_shows(window, json.loads(recording.samples.line(chosen + 1)), chosen + 1)

    # Dragging the cursor line on the plot moves the slider and the tables with it.
    window.plot.replay_line.setValue(samples[2].timestamp + 0.01)
    assert slider.value() == 2
    assert_window_shows(window, json.loads(recording.samples.line(2)), 2)
    assert len(window.session.history) == live_rows  # nothing replayed went into the live history

    # Save evidence while replaying: the replayed moment, said to be one.
    window.settings.setValue("evidence/folder", str(tmp_path / "evidence"))
    (tmp_path / "evidence").mkdir()
    bundle = window.save_evidence()
    assert bundle is not None
    report = json.loads((bundle / "report.json").read_text())
    contract = {k: line for k, line in json.loads(recording.samples.line(2)).items()
                if k in ("time", "states", "ports", "verdict", "processes", "remotes")}
    assert {k: report["sample"][k] for k in contract} == contract
    assert report["host"] == recording.header["host"]
    assert any("Replayed from the recording" in note and samples[2].time_iso in note
               for note in report["notes"])
    assert report["history"]["rows"] == 3  # the recorded series up to the moment shown

    # Back to live: the live history is plotted again and new samples arrive.
    window.back_to_live()
    assert window.session.recording is None and not window.replay_bar.isVisible()
    assert window.record_action.isEnabled() and "Replay" not in window.windowTitle()
    assert len(window.plot.buffer) == live_rows
    qtbot.waitUntil(lambda: len(window.session.history) >= live_rows + 2, timeout=15_000)
    assert len(window.plot.buffer) == len(window.session.history)
    assert window.session.latest is window.session.live_latest


def test_a_cut_recording_opens_with_a_warning(qtbot, make_window, recorded, tmp_path) -> None:
    path, samples = recorded
    data = path.read_bytes()
    # The recorder stopped mid-write: find a cut inside the last sample's compressed line.
    cut = tmp_path / "cut.jsonl.gz"
    for end in range(len(data) - 9, len(data) // 2, -16):
        cut.write_bytes(data[:end])
        if load_recording(cut).truncated_lines:
            break
    else:
        pytest.fail("no cut point left a partial line")
    window = make_window(start=False)
    assert open_and_wait(qtbot, window, cut)
    assert len(window.session.recording) == len(samples) - 1
    bar = window.replay_bar
    assert bar.warnings.isVisible() and "cut short" in bar.warnings.text()
    assert window.status_bar.mode_label.text().endswith(" · 1 warning")
    assert "cut short" in window.status_bar.mode_label.toolTip()
    window.replay_bar.slider.setValue(len(samples) - 2)  # the last complete sample replays exactly
    assert window.session.latest.to_json() == samples[-2].to_json(top=RECORD_TOP)


@pytest.mark.parametrize("content, needle", [
    (b"this is not a recording\nat all\n", "is not a PortPressure recording"),
    (b"", "is empty"),
    (b"\x1f\x8b\x08\x00garbage", "is not a PortPressure recording"),
])
def test_a_bad_file_is_one_line_and_the_window_keeps_sampling(qtbot, make_window, tmp_path, content,
                                                            needle) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(content)
    window = make_window()
    qtbot.waitUntil(lambda: len(window.session.history) >= 1, timeout=15_000)
    assert not window.open_recording(bad)
    error = window.status_bar.error_label.text()
    assert needle in error and "\n" not in error and error.startswith("Could not open the recording")
    assert window.message_box is not None and window.message_box.text() == error
    assert window.session.recording is None and window.session.sampling.thread.isRunning()
    before = len(window.session.history)
    qtbot.waitUntil(lambda: len(window.session.history) >= before + 2, timeout=15_000)  # still live


def test_open_dialog_remembers_the_folder_and_a_missing_file_is_one_line(qtbot, make_window, recorded,
                                                                        tmp_path) -> None:
    path, samples = recorded
    asked: list[str] = []

    def choose(_parent, start: str) -> str | None:
        asked.append(start)
        return str(path) if len(asked) == 1 else str(tmp_path / "gone.jsonl.gz")

    window = make_window(start=False, choose_recording=choose)
    with qtbot.waitSignal(window.loading_finished, timeout=20_000) as blocker:
        window.open_action.trigger()
    assert blocker.args == [True] and len(window.session.recording) == len(samples)
    assert window.settings.value("replay/folder") == str(path.parent)
    window.open_action.trigger()  # a second open starts in the remembered folder
    assert asked[1] == str(path.parent)
    assert "gone.jsonl.gz does not exist" in window.status_bar.error_label.text()
    replaying = window.session.recording
    assert replaying is not None and len(replaying) == len(samples)  # the replay stays


def test_a_failure_in_the_loading_thread_is_reported(qtbot, make_window, recorded, tmp_path,
                                                     monkeypatch) -> None:
    """The quick check passes (a sample line comes first) but the full load fails in its
    thread (in life: the file is removed or the disk fails in between; here the loader
    is told to fail): reported like any bad file, and nothing else changes."""
    path, _samples = recorded
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(load_recording(path).samples.line(0) + b"\n")
    check_recording(odd)

    def failing_load(p):
        raise RecordingError(f"{p} could not be read to the end")

    monkeypatch.setattr("gui.replay.load_recording", failing_load)
    window = make_window(start=False)
    assert not open_and_wait(qtbot, window, odd)
    error = window.status_bar.error_label.text()
    assert error == f"Could not open the recording: {odd} could not be read to the end"
    assert window.session.recording is None and window.open_action.isEnabled()
    qtbot.waitUntil(lambda: not window.status_bar.loading_bar.isVisible(), timeout=5_000)


@pytest.mark.parametrize("name, content, needle", [
    ("missing.file", None, "does not exist"),
    ("empty.jsonl.gz", b"", "is empty"),
    ("notes.txt", b"hello\n", "is not a PortPressure recording"),
])
def test_gui_open_bad_file_is_one_line_and_exit_2(tmp_path, name, content, needle) -> None:
    target = tmp_path / name
    if content is not None:
        target.write_bytes(content)
    done = run_cli("gui", "--open", str(target), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"portpressure gui: --open: {target} {needle}" or (
        done.stderr.count("\n") == 1 and needle in done.stderr), done.stderr
    assert done.stdout == ""


def test_gui_open_screenshot_shows_the_replay(tmp_path, recorded) -> None:
    path, _samples = recorded
    out = tmp_path / "replay.png"
    done = run_cli("gui", "--open", str(path), "--screenshot", str(out), "--after", "0.5", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Replay of churn.jsonl.gz" in done.stderr  # logged once the replay is on screen
    from PySide6.QtGui import QImage

    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)
