"""The main window under pytest-qt (offscreen), fed by the real sampler reading this
machine's socket table: it opens, samples arrive and the curves hold them, Ctrl+S
writes the evidence, errors show in the status bar and sampling goes on."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from core import __version__
from core.history import SERIES_NAMES
from core.model import STATE_NAMES, Sample
from core.sampler import Sampler
from core.sources import SourceError
from gui.main_window import MainWindow
from gui.state_plot import LIVE_STEP_SHARE, PORTS_HELD_LABEL

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"time", "states", "ports", "rates", "forecast", "processes", "remotes", "verdict",
                 "sample_ms"}


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "portpressure.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, settings):
    windows: list[MainWindow] = []

    def make(**kwargs) -> MainWindow:
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("interval_s", 0.2)
        window = MainWindow(**kwargs)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def wait_samples(qtbot, window: MainWindow, count: int, timeout_ms: int = 15_000) -> None:
    qtbot.waitUntil(lambda: len(window.session.history) >= count, timeout=timeout_ms)


def test_window_opens_with_menus_shortcuts_and_icon(make_window) -> None:
    window = make_window(start=False)
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus == ["&File", "&View", "&Help"]
    file_actions = [a.text() for a in window.menuBar().actions()[0].menu().actions() if a.text()]
    assert file_actions == ["&Save evidence", "Save evidence &to…", "&Copy screenshot", "&Record to file…",
                            "&Open recording…", "Back to &live", "&Quit"]
    assert window.open_action.shortcut().toString() == "Ctrl+O"
    view_actions = [a.text() for a in window.menuBar().actions()[1].menu().actions() if a.text()]
    assert view_actions[:4] == ["1 min", "5 min", "1 h", "24 h"] and "Pause" in view_actions
    assert window.save_action.shortcut().toString() == "Ctrl+S"
    assert window.copy_action.shortcut().toString() == "Ctrl+Shift+C"
    assert not window.windowIcon().isNull()
    assert window.minimumSize().width() == 1024 and window.minimumSize().height() == 700
    assert window.banner.level == "unknown"
    assert window.windowTitle() == f"PortPressure {__version__}"


def test_samples_arrive_and_the_curves_hold_them(qtbot, make_window) -> None:
    window = make_window()
    shown: list[Sample] = []
    window.sample_shown.connect(shown.append)
    wait_samples(qtbot, window, 4)
    assert window.session.sampling is not None and window.session.sampling.thread.isRunning()
    plot = window.plot
    n = len(plot.buffer)
    assert n == len(window.session.history) >= 4
    times = window.session.history.times()
    window.plot.set_paused(True)  # hold the data still while comparing
    n = len(plot.buffer)
    times = window.session.history.times()
    for curve, group in zip(plot.curves, plot.groups, strict=True):
        if not curve.isVisible():  # hidden curves (LISTEN + BOUND) catch up when shown
            assert not group.visible
            curve.setVisible(True)
        x, y = curve.getData()
        assert len(x) == n and x[-1] == pytest.approx(times[-1])
        expected = sum(window.session.history.series(s) for s in group.states)
        assert list(y) == pytest.approx(list(expected)), group.label
    x, y = plot.ports_curve.getData()
    assert list(y) == pytest.approx(list(window.session.history.series("in_use")))
    # The samples that reached the window are the ones plotted, in order.
    latest = shown[-1]
    assert plot.values_at(n - 1)["TIME_WAIT"] == latest.states["TIME_WAIT"]
    assert plot.values_at(n - 1)[PORTS_HELD_LABEL] == latest.ports.in_use
    assert window.banner.level == latest.verdict.level
    assert window.banner.title_label.text() == latest.verdict.title
    assert window.banner.reasons_text() == "\n".join(latest.verdict.reasons)
    assert "last sample" in window.status_bar.interval_label.text()
    assert window.session.facts is not None
    assert f"{window.session.facts.port_config.dynamic_range[0]}-" in window.status_bar.source_label.text()
    time_wait_s = window.session.facts.port_config.time_wait_seconds
    assert f"TIME_WAIT {time_wait_s:.0f} s" in window.status_bar.source_label.text()
    # Hover read-out at the first moment names that moment's values.
    plot.show_readout_at(float(times[0]))
    assert plot.cursor_line.isVisible() and "at " in plot.readout.text()


def test_window_selector_and_pause(qtbot, make_window) -> None:
    window = make_window()
    wait_samples(qtbot, window, 2)
    window.plot.window_actions.actions()[0].trigger()  # 1 min
    (x0, x1), _ = window.plot.view_box.viewRange()
    assert x1 - x0 == pytest.approx(60 * (1 + LIVE_STEP_SHARE), rel=0.001)  # and a step for new samples
    window.plot.pause_action.trigger()
    assert window.plot.paused and window.plot.pause_action.text() == "Resume"
    frozen = len(window.plot.curves[0].getData()[0])
    wait_samples(qtbot, window, len(window.session.history) + 2)
    assert len(window.plot.curves[0].getData()[0]) == frozen  # the plot is frozen...
    assert len(window.plot.buffer) > frozen  # ...while sampling and recording go on
    window.plot.pause_action.trigger()
    assert len(window.plot.curves[0].getData()[0]) == len(window.plot.buffer)


def test_ctrl_s_writes_png_and_report(qtbot, make_window, settings, tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    settings.setValue("evidence/folder", str(folder))
    asked: list[str] = []
    window = make_window(choose_folder=lambda _w, start: asked.append(start))
    wait_samples(qtbot, window, 2)
    with qtbot.waitSignal(window.evidence_saved, timeout=10_000) as saved_signal:
        qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    bundle = saved_signal.args[0]
    assert asked == []  # the remembered folder: no dialog
    host = re.sub(r"[^A-Za-z0-9._-]+", "_", socket.gethostname())
    assert bundle.parent == folder and re.fullmatch(rf"portpressure-{re.escape(host)}-\d{{8}}-\d{{6}}",
                                                    bundle.name)
    assert {p.name for p in bundle.iterdir()} >= {"window.png", "plot.png", "report.json", "report.html",
                                                   "history.csv"}
    image = QImage(str(bundle / "window.png"))
    assert not image.isNull() and (image.width(), image.height()) == (window.width(), window.height())
    report = json.loads((bundle / "report.json").read_text())
    sample = report["sample"]
    assert set(sample) >= CONTRACT_KEYS
    assert set(sample["states"]) == set(STATE_NAMES)
    assert {"range", "capacity", "in_use", "pressure", "pool"} <= set(sample["ports"])
    assert sample["verdict"]["level"] in ("ok", "warning", "critical")
    assert sample["time"] == window.session.latest.time_iso
    assert report["host"] == socket.gethostname() and report["privileged"] == window.session.facts.privileged
    page = (bundle / "report.html").read_text()
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert base64.b64decode(embedded[-1]) == (bundle / "window.png").read_bytes()
    assert html.escape(window.session.latest.verdict.title) in page
    assert (bundle / "history.csv").read_text().splitlines()[0].split(",") == ["time", "unix_time",
                                                                                 *SERIES_NAMES]
    assert "Saved the evidence" in window.statusBar().currentMessage()


def test_save_before_the_first_sample_says_so(make_window, tmp_path: Path, settings) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    settings.setValue("evidence/folder", str(folder))
    window = make_window(start=False)
    assert window.save_evidence() is None
    assert "first sample" in window.status_bar.error_label.text()
    assert list(folder.iterdir()) == []


def test_first_save_asks_for_the_folder_and_remembers_it(qtbot, make_window, settings, tmp_path) -> None:
    target = tmp_path / "picked"
    answers = [None, str(target)]
    asked: list[str] = []

    def chooser(_parent, start: str) -> str | None:
        asked.append(start)
        return answers.pop(0)

    window = make_window(choose_folder=chooser)
    wait_samples(qtbot, window, 1)
    assert window.save_evidence() is None  # cancelled: nothing written, nothing remembered
    assert "cancelled" in window.statusBar().currentMessage()
    assert settings.value("evidence/folder") is None
    assert window.save_evidence() is not None
    assert settings.value("evidence/folder") == str(target)
    assert window.save_evidence() is not None  # remembered: no third question
    assert len(asked) == 2
    assert len(list(target.glob("*/report.json"))) == 2


def test_unwritable_folder_is_an_error_line_not_a_crash(qtbot, make_window, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    window = make_window(choose_folder=lambda _w, _s: str(blocker / "sub"))
    wait_samples(qtbot, window, 1)
    assert window.save_evidence() is None
    assert "Could not save the evidence" in window.status_bar.error_label.text()


def test_copy_screenshot_puts_the_window_on_the_clipboard(qtbot, make_window) -> None:
    window = make_window()
    wait_samples(qtbot, window, 1)
    QApplication.clipboard().clear()
    qtbot.keyClick(window, Qt.Key.Key_C,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    image = QApplication.clipboard().image()
    assert not image.isNull() and image.width() == window.width()


class FlakySampler:
    """The real sampler, whose first reads fail the way a broken netlink socket does."""

    def __init__(self, failures: int) -> None:
        self.real = Sampler()
        self.failures = failures

    def sample(self) -> Sample:
        if self.failures:
            self.failures -= 1
            raise SourceError("sock_diag dump failed: [Errno 105] No buffer space available")
        return self.real.sample()

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_sampling_errors_show_in_the_status_bar_and_the_next_tick_retries(qtbot, make_window) -> None:
    opened: list[int] = []

    def make_sampler():
        opened.append(1)
        if len(opened) == 1:
            raise OSError(13, "Permission denied: /proc/net/sockstat")
        return FlakySampler(failures=2)

    window = make_window(make_sampler=make_sampler, start=False)
    errors: list[str] = []
    window.session.sampling.worker.error.connect(errors.append)
    window.session.sampling.start()
    qtbot.waitUntil(lambda: len(errors) >= 3, timeout=10_000)
    assert "Permission denied" in errors[0] and "No buffer space" in errors[1]
    assert "retrying every 0.2 s" in errors[0]
    wait_samples(qtbot, window, 1)
    # cleared by a good sample
    qtbot.waitUntil(lambda: window.status_bar.error_label.text() == "", timeout=5_000)
    assert len(opened) == 2


def test_geometry_splitters_and_time_window_are_remembered(qtbot, make_window) -> None:
    first = make_window(start=False)
    # The offscreen screen is 800x600: Qt clamps a restored width to it (then to our
    # 1024 minimum), so the remembered size shows in the height.
    first.resize(1024, 730)
    first.main_splitter.setSizes([300, 250])
    first.bottom_splitter.setSizes([700, 380])
    first.plot.set_window(3600)
    sizes = (first.main_splitter.sizes(), first.bottom_splitter.sizes())
    first.close()
    second = make_window(start=False)
    assert (second.width(), second.height()) == (1024, 730) != (1280, 800)
    assert (second.main_splitter.sizes(), second.bottom_splitter.sizes()) == sizes
    assert second.plot.window_s == 3600
    assert [a.isChecked() for a in second.plot.window_actions.actions()] == [False, False, True, False]


def test_replay_feeds_the_same_path_and_empty_tables_say_so(make_window) -> None:
    sampler = Sampler()
    try:
        recorded = [dataclasses.replace(sampler.sample(), processes=(), remotes=()) for _ in range(3)]
    finally:
        sampler.close()
    window = make_window(replay=recorded)
    assert window.session.sampling is None and len(window.session.history) == 3
    assert len(window.plot.buffer) == 3
    assert window.processes.process_model.rowCount() == 0
    assert window.processes.process_caption.text().startswith("No process holds TCP sockets")
    assert window.remotes.remote_caption.text() == "No outbound connections right now."


def test_excepthook_shows_the_error_and_keeps_running() -> None:
    from gui.app import install_excepthook

    shown: list[str] = []
    previous = sys.excepthook
    try:
        install_excepthook(shown.append)
        try:
            raise ValueError("a slot failed")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = previous
    assert shown and "ValueError: a slot failed" in shown[0]


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_screenshot_option_writes_the_window_and_exits(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    done = run_cli("gui", "--screenshot", str(out), "--after", "1.5", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 800)


def test_screenshot_into_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "out.png"
    done = run_cli("gui", "--screenshot", str(missing), "--after", "0", tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_open_missing_recording_is_one_line_exit_2(tmp_path: Path) -> None:
    done = run_cli("gui", "--open", str(tmp_path / "rec.jsonl"), tmp_path=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"portpressure gui: --open: {tmp_path / 'rec.jsonl'} does not exist"
