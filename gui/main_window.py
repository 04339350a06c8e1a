"""The main window: it lays out the verdict banner, the live plot, the process and
remote tables, the outbound test and OS settings panels and the status bar, and holds
the menus and actions. What they show comes from one gui.session.Session (sampling,
history, replay, recording, evidence): each view subscribes to it, so the window
holds no state of its own beyond layout and the folders the user picked.

Replay (File > Open recording, or `gui --open FILE`) and Record (File > Record to
file) are the session's; the window only asks for the file and moves the replay bar.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from core.cli import SMALLEST_WINDOW
from core.history import DAY_AT_1HZ
from core.model import Sample
from core.recording import Recording
from core.report import Evidence, ReportError
from gui.evidence import panel_rows, save_evidence
from gui.file_choosers import (
    FileChooser,
    FolderChooser,
    ask_folder,
    ask_record_file,
    ask_recording,
    default_recording_name,
    pixmap_png,
)
from gui.help_page import HelpAction
from gui.keyboard import details_action
from gui.probe_panel import ProbePanel
from gui.process_pane import ProcessPane, RemotePane
from gui.replay import ReplayBar, describe, peak_index, when
from gui.sampling_worker import SamplerLike
from gui.session import LIVE, LOADING, REPLAY, Session
from gui.settings_panel import SettingsPanel
from gui.state_plot import StatePlot
from gui.status_bar import StatusBar
from gui.style import icon_path
from gui.verdict_banner import VerdictBanner

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1280, 800)
MINIMUM_SIZE = SMALLEST_WINDOW  # `gui --screenshot --size` checks against it

class MainWindow(QMainWindow):
    sample_shown = Signal(object)  # a live Sample, after every view has taken it (tests)
    evidence_saved = Signal(object)  # Path of the bundle folder
    replay_shown = Signal(int)  # index of the recorded sample now on screen
    loading_finished = Signal(bool)  # a recording loaded (True) or could not be (False)

    def __init__(self, *, make_sampler: Callable[[], SamplerLike] | None = None,
                 interval_s: float = 1.0, settings: QSettings | None = None,
                 choose_folder: FolderChooser = ask_folder, replay: Iterable[Sample] | None = None,
                 history_capacity: int = DAY_AT_1HZ, start: bool = True,
                 restore_geometry: bool = True, choose_recording: FileChooser = ask_recording,
                 choose_record_file: FileChooser = ask_record_file) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.choose_folder = choose_folder
        self.choose_recording = choose_recording
        self.choose_record_file = choose_record_file
        self.message_box: QMessageBox | None = None
        self.session = Session(make_sampler=make_sampler, interval_s=interval_s,
                               history_capacity=history_capacity, parent=self)
        self.setWindowTitle(f"PortPressure {__version__}")
        icon = icon_path()
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(*DEFAULT_SIZE)

        self._build_views(history_capacity)
        self.status_bar = StatusBar(self.session, self)  # first: View > Messages is its action
        self.setStatusBar(self.status_bar)
        self._build_actions()
        self._follow_session()
        self._restore_settings(restore_geometry)

        self.probe_panel.attempted.connect(self.session.note_probe)
        if replay is not None:  # samples handed over in memory (tests): fed as if live
            self.status_bar.source_label.setText("Replaying a recording")
            for sample in replay:
                self.session.ingest(sample)
        else:
            self.session.prepare_sampling()
            if start:
                self.session.start_sampling()
        self._update_mode_actions()

    # -- construction -------------------------------------------------------------------
    def _build_views(self, history_capacity: int) -> None:
        self.banner = VerdictBanner()
        self.plot = StatePlot(capacity=history_capacity)
        self.plot.setMinimumHeight(230)  # still readable at 1024x700
        self.processes = ProcessPane()
        self.remotes = RemotePane()

        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.remotes, "Remote endpoints")
        # Imported directly: a panel missing from a build must fail loudly, not vanish.
        self.probe_panel = ProbePanel()
        self.side_tabs.addTab(self._scrollable(self.probe_panel), "Outbound test")
        self.settings_panel = SettingsPanel()
        self.side_tabs.addTab(self._scrollable(self.settings_panel), "OS settings")
        self.settings_panel.reboot_pending.connect(self.banner.show_reboot_pending)

        self.bottom_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_splitter.setObjectName("bottomSplitter")
        self.bottom_splitter.addWidget(self.processes)
        self.bottom_splitter.addWidget(self.side_tabs)
        self.bottom_splitter.setStretchFactor(0, 2)
        self.bottom_splitter.setStretchFactor(1, 1)
        self.bottom_splitter.setChildrenCollapsible(False)
        self.main_splitter = QSplitter(Qt.Orientation.Vertical)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.addWidget(self.plot)
        self.main_splitter.addWidget(self.bottom_splitter)
        self.main_splitter.setStretchFactor(0, 1)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setChildrenCollapsible(False)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.setSpacing(6)
        layout.addWidget(self.banner)
        self.replay_bar = ReplayBar()
        self.replay_bar.hide()
        self.replay_bar.slider.valueChanged.connect(self.show_replay_index)
        self.replay_bar.back_to_live.connect(self.back_to_live)
        self.replay_bar.peak_requested.connect(self.show_peak)
        self.plot.cursor_moved.connect(self.replay_bar.slider.setValue)
        layout.addWidget(self.replay_bar)
        layout.addWidget(self.main_splitter, 1)
        self.setCentralWidget(central)

    def _follow_session(self) -> None:
        """Each view takes what it shows from the session (the status bar subscribes itself)."""
        session = self.session
        session.appended.connect(self.plot.append)
        session.events_added.connect(self.plot.markers.add)
        for view in (self.banner, self.processes, self.remotes):
            session.shown.connect(view.show_sample)
            session.cleared.connect(view.show_waiting if view is self.banner else view.clear)
        session.ingested.connect(self.sample_shown)
        session.recording_loaded.connect(self._recording_loaded)
        session.replay_moved.connect(self._replay_moved)
        session.mode_changed.connect(self._mode_changed)
        session.load_failed.connect(self._open_failed)
        session.recorder_changed.connect(lambda recorder, _n: self._set_record_checked(recorder is not None))

    @staticmethod
    def _scrollable(panel: QWidget) -> QScrollArea:
        """A panel in a scroll area: its full height must not squeeze the plot at 700 px."""
        area = QScrollArea()
        area.setWidget(panel)
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        return area

    def _action(self, text: str, slot: Callable[[], Any], shortcut: QKeySequence | str | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(f"{tip} ({action.shortcut().toString()})" if shortcut else tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.save_action = self._action(
            "&Save evidence", self.save_evidence, QKeySequence.StandardKey.Save,
            "Save a screenshot and a report (JSON + HTML) for the ticket")
        self.save_as_action = self._action(
            "Save evidence &to…", self.save_evidence_to, "Ctrl+Shift+S",
            "Pick the folder, then save the screenshot and the report")
        self.copy_action = self._action("&Copy screenshot", self.copy_screenshot, "Ctrl+Shift+C",
                                        "Copy a screenshot of the window to the clipboard")
        # Evidence shortcuts work from the process details dialogs too.
        for action in (self.save_action, self.save_as_action, self.copy_action):
            action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit,
                                        "Quit PortPressure")
        self.about_action = self._action("&About PortPressure", self.show_about, None, "Version and purpose")
        self.filter_action = self._action("Filter processes", lambda: self.processes.focus_filter(),
                                          QKeySequence.StandardKey.Find)
        self.open_action = self._action(
            "&Open recording…", self.open_recording_dialog, QKeySequence.StandardKey.Open,
            "Replay a recording made with Record or `portpressure watch --record`")
        self.live_action = self._action("Back to &live", self.back_to_live, "Ctrl+L",
                                        "Leave the replay and sample this machine again")
        self.record_action = QAction("&Record to file…", self)
        self.record_action.setCheckable(True)
        self.record_action.setShortcut(QKeySequence("Ctrl+R"))
        self.record_action.setToolTip("Append every sample to a file, e.g. overnight, to replay later "
                                      "(Ctrl+R; again to stop)")
        self.record_action.setStatusTip("Append every sample to a file, to replay later")
        self.record_action.toggled.connect(self._record_toggled)
        self.addAction(self.record_action)
        # Left/Right step the replay one sample wherever the focus is in the bar or the plot.
        self.previous_action = QAction("Previous sample", self)
        self.previous_action.setShortcut(QKeySequence(Qt.Key.Key_Left))
        self.previous_action.triggered.connect(lambda: self.replay_bar.step(-1))
        self.next_action = QAction("Next sample", self)
        self.next_action.setShortcut(QKeySequence(Qt.Key.Key_Right))
        self.next_action.triggered.connect(lambda: self.replay_bar.step(1))
        for action in (self.previous_action, self.next_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.replay_bar.addAction(action)
            self.plot.addAction(action)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.save_action)
        file_menu.addAction(self.save_as_action)
        file_menu.addAction(self.copy_action)
        file_menu.addSeparator()
        file_menu.addAction(self.record_action)
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.live_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = menu.addMenu("&View")
        for action in self.plot.window_actions.actions():
            view_menu.addAction(action)
        view_menu.addAction(self.plot.whole_action)
        view_menu.addSeparator()
        view_menu.addAction(self.plot.pause_action)
        view_menu.addAction(self.filter_action)
        view_menu.addAction(details_action(self, self.processes.process_view, self.processes.open_details))
        view_menu.addAction(self.status_bar.messages_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(HelpAction(self))
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addAction(self.save_action)
        toolbar.addAction(self.copy_action)
        toolbar.addSeparator()
        toolbar.addAction(self.record_action)
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.live_action)
        toolbar.addSeparator()
        toolbar.addAction(self.plot.pause_action)

    # -- settings (each component keeps its own group) -------------------------------------
    def _restore_settings(self, restore_geometry: bool) -> None:
        geometry = self.settings.value("window/geometry")
        if restore_geometry and isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        self._default_splits = True
        for key, splitter in (("window/main_splitter", self.main_splitter),
                              ("window/bottom_splitter", self.bottom_splitter)):
            state = self.settings.value(key)
            if isinstance(state, QByteArray) and not state.isEmpty():
                self._default_splits = not splitter.restoreState(state)
        self.plot.restore_settings(self.settings)

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/main_splitter", self.main_splitter.saveState())
        self.settings.setValue("window/bottom_splitter", self.bottom_splitter.saveState())
        self.plot.save_settings(self.settings)
        self.settings.sync()

    # -- problems -------------------------------------------------------------------------
    @Slot(str)
    def show_error(self, text: str) -> None:
        self.status_bar.show_error(text)

    def _tell(self, title: str, text: str) -> None:
        """A one-line problem in the status bar and in a message box that does not block
        (a modal one would stall --screenshot runs and tests)."""
        self.show_error(text)
        if self.message_box is not None:
            self.message_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.destroyed.connect(lambda _obj=None: setattr(self, "message_box", None))
        self.message_box = box
        box.open()

    # -- replay -------------------------------------------------------------------------
    def open_recording_dialog(self) -> bool:
        start = (str(self.settings.value("replay/folder", "") or "") or self.evidence_folder()
                 or str(Path.home()))
        path = self.choose_recording(self, start)
        if not path:
            self.statusBar().showMessage("Open recording: cancelled", 5000)
            return False
        self.settings.setValue("replay/folder", str(Path(path).parent))
        self.settings.sync()
        return self.open_recording(path)

    def open_recording(self, path: str | os.PathLike[str]) -> bool:
        """Start loading `path` in the background (False: refused at once, and said why)."""
        return self.session.open_recording(path)

    @Slot(str)
    def _open_failed(self, reason: str) -> None:
        self._tell("Open recording", reason)
        self.loading_finished.emit(False)

    @Slot(object)
    def _recording_loaded(self, recording: Recording) -> None:
        self.plot.set_replaying(True)
        self.plot.load(recording.snapshot(), recording.events)
        self.plot.set_whole(True)
        text = describe(recording)
        self.setWindowTitle(f"PortPressure {__version__} — {text}")
        peak = peak_index(recording)
        self.replay_bar.start(recording, peak)
        self.show_replay_index(peak)
        log.info("%s, loaded in %.2f s", text, recording.load_seconds)
        self.loading_finished.emit(True)

    @Slot(int)
    def show_replay_index(self, index: int) -> None:
        """Show recorded sample `index`: tables, banner, captions, cursor and read-out."""
        self.session.show_replay_index(index)

    @Slot(int, object)
    def _replay_moved(self, index: int, sample: Sample) -> None:
        self.plot.set_replay_cursor(index)
        self.replay_bar.show_moment(index, sample)
        self.replay_shown.emit(index)

    def show_peak(self) -> None:
        recording = self.session.recording
        if recording is not None:
            index = peak_index(recording)
            self.replay_bar.slider.setValue(index)
            self.statusBar().showMessage(
                f"Highest port pressure: {recording.snapshot().series('pressure')[index]:.0%} at "
                f"{when(float(recording.times[index]))}", 10000)

    def back_to_live(self) -> None:
        """Leave the replay (if any) and sample this machine again."""
        self.session.back_to_live()

    @Slot(str)
    def _mode_changed(self, mode: str) -> None:
        if mode == LIVE and self.replay_bar.isVisible():  # coming back from a replay
            self.replay_bar.hide()
            self.plot.set_replaying(False)
            self.plot.load(self.session.live_snapshot(), self.session.events)
            self.setWindowTitle(f"PortPressure {__version__}")
        self.open_action.setEnabled(mode != LOADING)
        self._update_mode_actions()

    def _update_mode_actions(self) -> None:
        replaying = self.session.mode == REPLAY
        self.live_action.setEnabled(replaying or not self.session.is_sampling)
        self.record_action.setEnabled(not replaying)
        self.previous_action.setEnabled(replaying)
        self.next_action.setEnabled(replaying)

    # -- recording ------------------------------------------------------------------------
    def default_recording_path(self) -> Path:
        folder = str(self.settings.value("record/folder", "") or "") or self.evidence_folder()
        if not folder or not os.path.isdir(folder):
            folder = str(Path.home())
        return Path(folder) / default_recording_name()

    def _set_record_checked(self, checked: bool) -> None:
        self.record_action.blockSignals(True)
        self.record_action.setChecked(checked)
        self.record_action.blockSignals(False)

    @Slot(bool)
    def _record_toggled(self, checked: bool) -> None:
        if checked:
            self.start_recording()
        else:
            self.stop_recording()

    def start_recording(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Ask for the file (unless given) and record to it. Any problem: one line in the
        status bar, and the toggle is off."""
        if self.session.recorder is not None:
            return True
        if path is None and self.session.recording is None:
            path = self.choose_record_file(self, str(self.default_recording_path()))
            if not path:
                self._set_record_checked(False)
                self.statusBar().showMessage("Record: cancelled", 5000)
                return False
        problem = self.session.start_recording(path or "")
        if problem is not None:
            self._set_record_checked(False)
            self.show_error(problem)
            return False
        assert self.session.recorder is not None
        self.settings.setValue("record/folder", str(self.session.recorder.path.parent))
        self.settings.sync()
        self.show_error("")
        return True

    def stop_recording(self, why: str = "") -> None:
        self.session.stop_recording(why)
        self._set_record_checked(False)

    # -- evidence -----------------------------------------------------------------------
    def screenshot(self) -> QPixmap:
        return self.grab()

    def evidence(self) -> Evidence:
        """Everything the window shows, frozen now (raises NothingToSave before a sample)."""
        reboot = self.banner.reboot_label.text()
        return self.session.evidence(
            window_png=pixmap_png(self.screenshot()), plot_png=pixmap_png(self.plot.grab()),
            probe_results=panel_rows(self.probe_panel.results, "the outbound tests"),
            settings=panel_rows(self.settings_panel.settings_json, "the OS settings"),
            event_log=self._event_log(),
            notes=[reboot] if reboot else [])

    def _event_log(self) -> dict[str, Any] | None:
        """The outbound test panel's Windows event-log summary (Tcpip 4227/4231), if read."""
        try:
            summary = self.probe_panel.event_log()
        except Exception as exc:  # a panel's failure must not cost the rest of the evidence
            log.warning("event log summary: %s", exc)
            return None
        return dict(summary) if summary else None

    def evidence_folder(self) -> str:
        return str(self.settings.value("evidence/folder", "") or "")

    def save_evidence(self) -> Path | None:
        """Into the remembered folder; asks for one the first time (or when it is gone)."""
        folder = self.evidence_folder()
        if not folder or not os.path.isdir(folder):
            return self.save_evidence_to()
        return self._save_into(Path(folder))

    def save_evidence_to(self) -> Path | None:
        start = self.evidence_folder() or str(Path.home())
        folder = self.choose_folder(self, start)
        if not folder:
            self.statusBar().showMessage("Save evidence: cancelled", 5000)
            return None
        self.settings.setValue("evidence/folder", folder)
        self.settings.sync()
        return self._save_into(Path(folder))

    def _save_into(self, folder: Path) -> Path | None:
        try:
            bundle = save_evidence(folder, self.evidence())
        except (ReportError, OSError) as exc:
            self.show_error(f"Could not save the evidence: {exc}")
            return None
        self.show_error("")
        self.statusBar().showMessage(f"Saved the evidence (screenshot, report.html, report.json) in {bundle}",
                                     15000)
        self.evidence_saved.emit(bundle)
        return bundle

    def copy_screenshot(self) -> None:
        QApplication.clipboard().setPixmap(self.screenshot())
        self.statusBar().showMessage("Screenshot copied to the clipboard", 5000)

    def show_about(self) -> None:
        QMessageBox.about(
            self, "About PortPressure",
            f"<b>PortPressure {__version__}</b><p>See, prove and fix ephemeral TCP port exhaustion "
            "(TIME_WAIT pile-up): live socket states, the process behind them, an outbound "
            "connection test, the documented OS fix and evidence for the support ticket.</p>")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._default_splits:
            # First run: the plot gets most of the height, the process table most of the
            # width (the panels' size hints alone would squeeze the plot).
            self._default_splits = False
            height, width = self.main_splitter.height(), self.bottom_splitter.width()
            self.main_splitter.setSizes([height * 58 // 100, height * 42 // 100])
            self.bottom_splitter.setSizes([width * 62 // 100, width * 38 // 100])

    # -- shutdown -----------------------------------------------------------------------
    def stop_sampling(self) -> None:
        self.session.stop_sampling()
        if hasattr(self, "live_action"):
            self._update_mode_actions()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        try:
            self.save_settings()
        finally:
            self.session.shutdown()
            self.probe_panel.shutdown()  # an outbound test in progress is cancelled
            self.processes.close_dialogs()
        super().closeEvent(event)
