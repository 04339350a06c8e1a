"""The main window: verdict banner, live plot, top processes and remote endpoints,
the outbound test and OS settings panels when present, and the status bar.

Samples arrive from the sampling thread through a queued signal; this thread only
appends them to the History and updates the views.

Replay (File > Open recording, or `gui --open FILE`): the recording is loaded off this
thread (gui/replay.py), live sampling stops, the plot shows the whole recording and
the time cursor picks the sample whose tables, banner and captions are shown, through
the same `_show_sample` path as a live sample, without touching the live history.
File > Back to live (or the bar's button) resumes sampling.

Record (File > Record to file): a core.recording.Recorder is handed to the sampling
worker, which appends every live sample in its own thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QModelIndex, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from core.cli import SMALLEST_WINDOW
from core.history import DAY_AT_1HZ, History, HistorySnapshot
from core.model import ProbeFailure, Sample
from core.recording import Recorder, Recording, RecordingError, check_recording
from core.report import Evidence, ReportError, safe_host
from gui.evidence import build_evidence, panel_rows, save_evidence
from gui.help_page import HelpAction
from gui.keyboard import EnterOpens, details_action
from gui.probe_panel import ProbePanel
from gui.process_dialog import ProcessDialog
from gui.replay import RecordingLoader, ReplayBar, describe, peak_index, when
from gui.sampling_worker import SamplerLike, SamplingThread, SamplingWorker, SourceFacts
from gui.settings_panel import SettingsPanel
from gui.state_plot import StatePlot, TextStrip
from gui.status_messages import ElidedLabel, MessageStatusBar
from gui.style import icon_path
from gui.table_models import (
    PROCESS_SOCKETS_COLUMN,
    REMOTE_CONNECTIONS_COLUMN,
    ProcessTableModel,
    RemoteTableModel,
    TableFilterProxy,
)
from gui.verdict_banner import VerdictBanner

log = logging.getLogger(__name__)

FolderChooser = Callable[[QWidget, str], str | None]
FileChooser = Callable[[QWidget, str], str | None]  # (parent, start folder or suggested path)
DEFAULT_SIZE = (1280, 800)
MINIMUM_SIZE = SMALLEST_WINDOW  # `gui --screenshot --size` checks against it
RECORDING_FILTER = "PortPressure recordings (*.jsonl.gz *.jsonl *.gz *.json);;All files (*)"


def _ask_folder(parent: QWidget, start: str) -> str | None:
    folder = QFileDialog.getExistingDirectory(parent, "Save evidence into folder", start)
    return folder or None


def _ask_recording(parent: QWidget, start: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, "Open recording", start, RECORDING_FILTER)
    return path or None


def _ask_record_file(parent: QWidget, suggested: str) -> str | None:
    # An existing recording is appended to (a new session in the same file), not replaced;
    # the Recorder refuses any other existing file: no "replace it?" question here.
    path, _ = QFileDialog.getSaveFileName(parent, "Record samples to file", suggested, RECORDING_FILTER,
                                          options=QFileDialog.Option.DontConfirmOverwrite)
    return path or None


def default_recording_name(moment: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(moment))
    return f"portpressure-{safe_host(socket.gethostname())}-{stamp}.jsonl.gz"


def pixmap_png(pixmap: QPixmap) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, "PNG"):
        raise OSError("could not encode the screenshot as PNG")
    buffer.close()
    return bytes(data.data())


class MainWindow(QMainWindow):
    sample_shown = Signal(object)  # Sample, after every view has taken it (tests, replay)
    evidence_saved = Signal(object)  # Path of the bundle folder
    replay_shown = Signal(int)  # index of the recorded sample now on screen
    loading_finished = Signal(bool)  # a recording loaded (True) or could not be (False)

    def __init__(self, *, make_sampler: Callable[[], SamplerLike] | None = None,
                 interval_s: float = 1.0, settings: QSettings | None = None,
                 choose_folder: FolderChooser = _ask_folder, replay: Iterable[Sample] | None = None,
                 history_capacity: int = DAY_AT_1HZ, start: bool = True,
                 restore_geometry: bool = True, choose_recording: FileChooser = _ask_recording,
                 choose_record_file: FileChooser = _ask_record_file) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.choose_folder = choose_folder
        self.choose_recording = choose_recording
        self.choose_record_file = choose_record_file
        self.history = History(history_capacity)
        self.latest: Sample | None = None  # the sample on screen (live, or the replayed moment)
        self.live_latest: Sample | None = None
        self.facts: SourceFacts | None = None
        self.interval_s = interval_s
        self._make_sampler = make_sampler
        self._dialogs: list[ProcessDialog] = []
        self.recording: Recording | None = None  # being replayed
        self.replay_index = 0
        self._loader: RecordingLoader | None = None
        self.recorder: Recorder | None = None
        self.message_box: QMessageBox | None = None
        self.setWindowTitle(f"PortPressure {__version__}")
        icon = icon_path()
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(*DEFAULT_SIZE)

        self._build_views(history_capacity)
        self._build_status_bar()  # first: View > Messages is the status bar's action
        self._build_actions()
        self._restore_settings(restore_geometry)

        self.sampling: SamplingThread | None = None
        self.probe_panel.exhaustion_detected.connect(self.note_probe_failure)
        if replay is not None:  # samples handed over in memory (tests): fed as if live
            self.source_label.setText("Replaying a recording")
            for sample in replay:
                self.ingest(sample)
        else:
            self.sampling = self._new_sampling()
            if start:
                self.sampling.start()
        self._update_mode_actions()

    def _new_sampling(self) -> SamplingThread:
        make_sampler = self._make_sampler
        worker = (SamplingWorker(make_sampler, self.interval_s) if make_sampler
                  else SamplingWorker(interval_s=self.interval_s))
        # Queued, explicitly: these run in this (the GUI) thread whatever wraps them.
        queued = Qt.ConnectionType.QueuedConnection
        worker.sample_ready.connect(self.ingest, queued)
        worker.facts_ready.connect(self.show_facts, queued)
        worker.error.connect(self._sampling_error, queued)
        worker.recorded.connect(self._recorded, queued)
        worker.recording_failed.connect(self._recording_failed, queued)
        return SamplingThread(worker, self)

    # -- construction -------------------------------------------------------------------
    def _build_views(self, history_capacity: int) -> None:
        self.banner = VerdictBanner()
        self.plot = StatePlot(capacity=history_capacity)
        self.plot.setMinimumHeight(230)  # still readable at 1024x700

        self.process_model = ProcessTableModel(self)
        self.process_proxy = TableFilterProxy(self)
        self.process_proxy.setSourceModel(self.process_model)
        self.process_view = self._table_view(self.process_proxy, PROCESS_SOCKETS_COLUMN)
        self.process_view.doubleClicked.connect(self.open_process_details)
        self.enter_opens = EnterOpens(self.process_view, self.open_process_details)
        self.process_view.setToolTip("Double-click a process (or press Enter) for its path, user, command "
                                     "line and endpoints")
        self.process_view.horizontalHeader().resizeSection(1, 150)
        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter processes by pid, name or state (Ctrl+F)")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self._filter_changed)
        self.process_caption = QLabel("Waiting for the first sample…")
        self.process_caption.setWordWrap(True)
        processes = QWidget()
        layout = QVBoxLayout(processes)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Top processes</b> (busiest first; TIME_WAIT attributed exactly or by inference)")
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self.filter_box)
        layout.addWidget(self.process_view, 1)
        layout.addWidget(self.process_caption)

        self.remote_model = RemoteTableModel(self)
        self.remote_proxy = TableFilterProxy(self)
        self.remote_proxy.setSourceModel(self.remote_model)
        self.remote_view = self._table_view(self.remote_proxy, REMOTE_CONNECTIONS_COLUMN)
        self.remote_caption = QLabel("Waiting for the first sample…")
        self.remote_caption.setWordWrap(True)
        remotes = QWidget()
        layout = QVBoxLayout(remotes)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.remote_view, 1)
        layout.addWidget(self.remote_caption)

        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(remotes, "Remote endpoints")
        # Imported directly: a panel missing from a build must fail loudly, not vanish.
        self.probe_panel = ProbePanel()
        self.side_tabs.addTab(self._scrollable(self.probe_panel), "Outbound test")
        self.settings_panel = SettingsPanel()
        self.side_tabs.addTab(self._scrollable(self.settings_panel), "OS settings")
        self.settings_panel.reboot_pending.connect(self.banner.show_reboot_pending)

        self.bottom_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_splitter.setObjectName("bottomSplitter")
        self.bottom_splitter.addWidget(processes)
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

    @staticmethod
    def _scrollable(panel: QWidget) -> QScrollArea:
        """A panel in a scroll area: its full height must not squeeze the plot at 700 px."""
        area = QScrollArea()
        area.setWidget(panel)
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        return area

    @staticmethod
    def _table_view(proxy: TableFilterProxy, sort_column: int) -> QTableView:
        view = QTableView()
        view.setModel(proxy)
        view.setSortingEnabled(True)
        view.sortByColumn(sort_column, Qt.SortOrder.DescendingOrder)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setAlternatingRowColors(True)
        view.setWordWrap(False)
        view.verticalHeader().hide()
        view.verticalHeader().setDefaultSectionSize(22)
        header = view.horizontalHeader()
        header.setStretchLastSection(True)
        # Interactive, fitted once to the headers and widened when new rows need it:
        # ResizeToContents would measure every cell every second.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.resizeSections(QHeaderView.ResizeMode.ResizeToContents)
        proxy.rowsInserted.connect(lambda *_: MainWindow._widen_columns(view))
        return view

    @staticmethod
    def _widen_columns(view: QTableView) -> None:
        header = view.horizontalHeader()
        for column in range(header.count() - 1):  # the last one stretches
            needed = max(view.sizeHintForColumn(column), header.sectionSizeHint(column))
            if header.sectionSize(column) < needed:
                header.resizeSection(column, needed)

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
        self.filter_action = self._action("Filter processes", self._focus_filter,
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
        self.previous_action.triggered.connect(lambda: self.step_replay(-1))
        self.next_action = QAction("Next sample", self)
        self.next_action.setShortcut(QKeySequence(Qt.Key.Key_Right))
        self.next_action.triggered.connect(lambda: self.step_replay(1))
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
        view_menu.addAction(details_action(self, self.process_view, self.open_process_details))
        view_menu.addAction(self.statusBar().messages_action)
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

    def _build_status_bar(self) -> None:
        bar = MessageStatusBar()
        self.setStatusBar(bar)
        self.error_label = ElidedLabel(bar.log)
        self.error_label.setStyleSheet("color: #b71c1c; font-weight: bold;")
        self.error_label.setWordWrap(False)
        # Its text changes every sample: a TextStrip repaints without re-laying out the window.
        self.interval_label = TextStrip(hint="Every 10 s · last sample 9999.9 ms, 9,999,999 sockets")
        self.interval_label.setText(f"Sampling every {self.interval_s:g} s")
        self.privilege_label = QLabel()
        self.source_label = QLabel("Opening the socket table reader…")
        self.record_label = QLabel()
        self.record_label.setStyleSheet("color: #b71c1c;")
        self.record_label.hide()
        self.loading_bar = QProgressBar()
        self.loading_bar.setRange(0, 0)  # busy: the loader cannot tell how far it got
        self.loading_bar.setMaximumWidth(120)
        self.loading_bar.hide()
        self.mode_label = QLabel()
        self.mode_label.setStyleSheet("color: #1a237e; font-weight: bold;")
        self.mode_label.hide()
        for widget in (self.loading_bar, self.record_label, self.interval_label, self.privilege_label,
                       self.source_label):
            bar.addPermanentWidget(widget)
        bar.addWidget(self.mode_label)
        bar.addWidget(self.error_label, 1)

    # -- settings -----------------------------------------------------------------------
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
        window = self.settings.value("plot/window_s")
        try:
            if window is not None:
                self.plot.set_window(int(str(window)))
        except ValueError:
            pass  # a hand-edited setting: keep the default window

    def save_settings(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/main_splitter", self.main_splitter.saveState())
        self.settings.setValue("window/bottom_splitter", self.bottom_splitter.saveState())
        self.settings.setValue("plot/window_s", self.plot.window_s)
        self.settings.sync()

    # -- samples ------------------------------------------------------------------------
    @Slot(object)
    def ingest(self, sample: Sample) -> None:
        if self.recording is not None:
            return  # a live sample still queued when the replay began: live is stopped
        self.history.append(sample)
        self.live_latest = sample
        if self.error_label.text():
            self.error_label.clear()
        self.plot.append(sample)
        self._show_sample(sample)
        self.sample_shown.emit(sample)

    def _show_sample(self, sample: Sample) -> None:
        """Banner, tables, captions and the cost read-out: one path for a live sample and
        for the replayed moment."""
        self.latest = sample
        self.banner.show_sample(sample)
        self.process_model.update(sample.processes)
        self.remote_model.update(sample.remotes)
        self._update_captions()
        source = sample.extra.get("source", "")
        sockets = sample.extra.get("sockets")
        counted = (f", {sockets:,} socket{'' if sockets == 1 else 's'}" if isinstance(sockets, int)
                   else "")
        if self.recording is None:
            self.interval_label.setText(f"Every {self.interval_s:g} s · last sample "
                                        f"{sample.sample_ms:.1f} ms{counted}")
            self.interval_label.setToolTip("Sampling interval and the cost of the last sample"
                                           + (f", read with {source}" if source else ""))
        else:
            self.interval_label.setText(f"Recorded sample took {sample.sample_ms:.1f} ms{counted}")
            self.interval_label.setToolTip("What the recorded sample cost to take"
                                           + (f", read with {source}" if source else ""))

    def _update_captions(self) -> None:
        sample = self.latest
        shown, total = self.process_proxy.rowCount(), self.process_model.rowCount()
        if sample is None:
            return
        if total == 0:
            text = "No process holds TCP sockets right now (or none is visible to this user)."
        elif shown == 0:
            text = f"No process matches the filter ({total} hidden)."
        else:
            text = (f"{shown} of {total} processes shown" if shown != total else
                    f"{total} process{'' if total == 1 else 'es'}")
        if sample.time_wait_unattributed:
            text += (f" · {sample.time_wait_unattributed:,} TIME_WAIT sockets could not be attributed "
                     "to any process")
        self.process_caption.setText(text)
        remotes = self.remote_model.rowCount()
        self.remote_caption.setText(
            f"{remotes} remote endpoint{'' if remotes == 1 else 's'} this host connects to" if remotes else
            "No outbound connections right now.")

    def _filter_changed(self, text: str) -> None:
        self.process_proxy.set_filter_text(text)
        self._update_captions()

    def _focus_filter(self) -> None:
        self.filter_box.setFocus()
        self.filter_box.selectAll()

    @Slot(object)
    def show_facts(self, facts: SourceFacts) -> None:
        self.facts = facts
        config = facts.port_config
        lo, hi = config.dynamic_range
        admin = "administrator" if config.os_name == "Windows" else "root"
        if facts.privileged:
            self.privilege_label.setText(f"Running as {admin}")
        else:
            self.privilege_label.setText(f"Not {admin}: other users' socket owners hidden")
        hidden = "\n".join(facts.limits)
        self.privilege_label.setToolTip(hidden or "Nothing is hidden: every socket's owner is visible.")
        if facts.limits and facts.privileged:
            self.privilege_label.setText(f"Running as {admin} (limits: hover)")
        reuse = "" if config.tw_reuse is None else f" · tcp_tw_reuse {config.tw_reuse}"
        self.source_label.setText(f"{config.os_name} · ports {lo}-{hi} ({config.capacity:,}) · "
                                  f"TIME_WAIT {config.time_wait_seconds:g} s{reuse}")
        self.source_label.setToolTip(f"Read with {facts.source_name}" + (
            "\n" + "\n".join(config.notes) if config.notes else ""))

    @Slot(str)
    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setToolTip(text)
        log.warning("%s", text)

    @Slot(str)
    def _sampling_error(self, text: str) -> None:
        if self.recording is None:  # not a stopped worker's last words over a replay
            self.show_error(text)

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
        """Start loading `path` in the background (False: refused at once, and said why).
        The window stays as it is, live or replaying, until the recording has loaded."""
        if self._loader is not None:
            self.statusBar().showMessage(f"Still loading {self._loader.path.name}…", 5000)
            return False
        path = Path(path)
        try:
            check_recording(path)
        except RecordingError as exc:
            self._open_failed(str(exc))
            return False
        try:
            size = f" ({path.stat().st_size / 1e6:.1f} MB)"
        except OSError:
            size = ""
        loader = RecordingLoader(path, self)
        loader.loaded.connect(self._recording_loaded)
        loader.failed.connect(self._open_failed)
        loader.finished.connect(self._loader_finished)
        self._loader = loader
        self.open_action.setEnabled(False)
        self.loading_bar.show()
        self.mode_label.setText(f"Loading {path.name}{size}…")
        self.mode_label.show()
        loader.start()
        return True

    @Slot()
    def _loader_finished(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.deleteLater()
        self.loading_bar.hide()
        self.open_action.setEnabled(True)
        if self.recording is None:
            self.mode_label.hide()

    @Slot(str)
    def _open_failed(self, reason: str) -> None:
        self._tell("Open recording", f"Could not open the recording: {reason}")
        if self.recording is None:
            self.mode_label.hide()
        self.loading_finished.emit(False)

    @Slot(object)
    def _recording_loaded(self, recording: Recording) -> None:
        self.stop_sampling()
        if self.recorder is not None:
            self.stop_recording("replay started; live sampling is stopped")
        self.recording = recording
        self.latest = None  # until a recorded sample is on screen: never the live one in its place
        self.error_label.clear()
        self.plot.set_replaying(True)
        self.plot.load(recording.snapshot())
        self.plot.set_whole(True)
        self.replay_bar.show_recording(recording)
        self.replay_bar.show()
        text = describe(recording)
        self.setWindowTitle(f"PortPressure {__version__} — {text}")
        # The status bar is shared with the port settings: the file and the count here, the
        # period in the title, the bar above the plot and the tooltip.
        count = len(recording)
        warned = (f" · {len(recording.warnings)} warning{'' if len(recording.warnings) == 1 else 's'}"
                  if recording.warnings else "")
        plural = "" if count == 1 else "s"
        self.mode_label.setText(f"Replay of {recording.path.name}, {count:,} sample{plural}{warned}")
        self.mode_label.setToolTip("\n".join((text, str(recording.path)) + recording.warnings))
        self.mode_label.show()
        self._show_recording_facts(recording)
        self._update_mode_actions()
        peak = peak_index(recording)
        self.show_replay_index(peak)
        self.replay_bar.slider.blockSignals(True)
        self.replay_bar.slider.setValue(peak)
        self.replay_bar.slider.blockSignals(False)
        self.replay_bar.slider.setFocus()
        log.info("%s, loaded in %.2f s", text, recording.load_seconds)
        self.loading_finished.emit(True)

    def _show_recording_facts(self, recording: Recording) -> None:
        header = recording.header or {}
        host = header.get("host") or "an unknown host"
        self.privilege_label.setText(f"Recorded on {host}")
        self.privilege_label.setToolTip(f"{header.get('os', '')}\nPortPressure {header.get('version', '?')}, "
                                        f"read with {header.get('source') or 'an unknown reader'}")
        config = recording.port_config
        if config is None:
            self.source_label.setText("Port settings not recorded")
            self.source_label.setToolTip("This recording's header does not carry the port range")
            return
        lo, hi = config.dynamic_range
        reuse = "" if config.tw_reuse is None else f" · tcp_tw_reuse {config.tw_reuse}"
        self.source_label.setText(f"{config.os_name} · ports {lo}-{hi} ({config.capacity:,}) · "
                                  f"TIME_WAIT {config.time_wait_seconds:g} s{reuse}")
        self.source_label.setToolTip("The port settings recorded when the recording started"
                                     + ("\n" + "\n".join(config.notes) if config.notes else ""))

    @Slot(int)
    def show_replay_index(self, index: int) -> None:
        """Show recorded sample `index`: tables, banner, captions, cursor and read-out."""
        recording = self.recording
        if recording is None or not 0 <= index < len(recording):
            return
        try:
            sample = recording.samples[index]
        except RecordingError as exc:  # a hand-edited line: the rest of the recording still replays
            self.show_error(str(exc))
            return
        self.replay_index = index
        self._show_sample(sample)
        self.plot.set_replay_cursor(index)
        self.replay_bar.show_moment(index, sample)
        self.replay_shown.emit(index)

    def step_replay(self, step: int) -> None:
        if self.recording is not None:
            slider = self.replay_bar.slider
            slider.setValue(min(max(slider.value() + step, 0), slider.maximum()))

    def show_peak(self) -> None:
        if self.recording is not None:
            index = peak_index(self.recording)
            self.replay_bar.slider.setValue(index)
            self.statusBar().showMessage(
                f"Highest port pressure: {self.recording.snapshot().series('pressure')[index]:.0%} at "
                f"{when(float(self.recording.times[index]))}", 10000)

    def back_to_live(self) -> None:
        """Leave the replay (if any) and sample this machine again."""
        if self.recording is not None:
            self.recording = None
            self.replay_bar.hide()
            self.mode_label.hide()
            self.plot.set_replaying(False)
            self.plot.load(self.history.snapshot())
            self.setWindowTitle(f"PortPressure {__version__}")
            self.latest = self.live_latest
            if self.live_latest is not None:
                self._show_sample(self.live_latest)
            else:
                self.banner.show_waiting()
                self.process_model.update(())
                self.remote_model.update(())
                self.process_caption.setText("Waiting for the first sample…")
                self.remote_caption.setText("Waiting for the first sample…")
            self.interval_label.setText(f"Sampling every {self.interval_s:g} s")
            if self.facts is not None:
                self.show_facts(self.facts)
            else:
                self.privilege_label.setText("")
                self.source_label.setText("Opening the socket table reader…")
        self.start_sampling()
        self._update_mode_actions()
        self.statusBar().showMessage("Live: sampling this machine again", 5000)

    def start_sampling(self) -> None:
        if self.sampling is not None and self.sampling.thread.isRunning():
            return
        if self.sampling is None or self.sampling.thread.isFinished():
            old, self.sampling = self.sampling, self._new_sampling()
            if old is not None:
                old.setParent(None)
                old.deleteLater()
        self.sampling.start()

    def _update_mode_actions(self) -> None:
        replaying = self.recording is not None
        live = self.sampling is not None and self.sampling.thread.isRunning()
        self.live_action.setEnabled(replaying or not live)
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
        """Ask for the file (unless given), open the Recorder, hand it to the sampling
        worker. Any problem: one line in the status bar, and the toggle is off."""
        if self.recorder is not None:
            return True
        if self.recording is not None:
            self._set_record_checked(False)
            self.show_error("Recording needs live samples: go back to live first (File > Back to live)")
            return False
        if path is None:
            path = self.choose_record_file(self, str(self.default_recording_path()))
            if not path:
                self._set_record_checked(False)
                self.statusBar().showMessage("Record: cancelled", 5000)
                return False
        facts = self.facts
        try:
            recorder = Recorder(path, port_config=facts.port_config if facts else None,
                                source=facts.source_name if facts else "")
        except (RecordingError, OSError) as exc:
            self._set_record_checked(False)
            self.show_error(f"Could not record: {exc}")
            return False
        self.settings.setValue("record/folder", str(recorder.path.parent))
        self.settings.sync()
        self.recorder = recorder
        if self.sampling is not None:
            self.sampling.worker.set_recorder(recorder)
        self._set_record_checked(True)
        self.error_label.clear()
        self._show_recorded(recorder, 0)
        self.record_label.show()
        log.info("recording to %s", recorder.path)
        return True

    def stop_recording(self, why: str = "") -> None:
        recorder, self.recorder = self.recorder, None
        if self.sampling is not None:
            self.sampling.worker.set_recorder(None)
        self._set_record_checked(False)
        self.record_label.hide()
        if recorder is None:
            return
        recorder.close()  # writes what is queued (a sample at most) and finishes the file
        if recorder.error:
            self.show_error(f"Recording stopped: {recorder.error}")
            return
        self.statusBar().showMessage(
            f"Recording stopped{': ' + why if why else ''}: {recorder.samples_written:,} samples in "
            f"{recorder.path}", 15000)

    def _show_recorded(self, recorder: Recorder, written: int) -> None:
        self.record_label.setText(f"● Recording to {recorder.path.name} ({written:,} "
                                  f"sample{'' if written == 1 else 's'})")
        self.record_label.setToolTip(f"Every sample is appended to {recorder.path} "
                                     "(File > Record to file again to stop)")

    @Slot(object, int)
    def _recorded(self, recorder: Recorder, written: int) -> None:
        if recorder is self.recorder:
            self._show_recorded(recorder, written)

    @Slot(object, str)
    def _recording_failed(self, recorder: Recorder, error: str) -> None:
        if recorder is not self.recorder:
            return
        self.recorder = None  # the worker has closed it
        self._set_record_checked(False)
        self.record_label.hide()
        self.show_error(f"Recording stopped: {error}")

    def note_probe_failure(self, failure: ProbeFailure) -> None:
        if self.sampling is not None:
            self.sampling.worker.note_probe_failure(failure)

    # -- processes ----------------------------------------------------------------------
    def open_process_details(self, index: QModelIndex) -> ProcessDialog | None:
        source = self.process_proxy.mapToSource(index)
        if not source.isValid():
            return None
        row = self.process_model.row_at(source.row())
        dialog = ProcessDialog(row, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda _obj=None, d=dialog: self._forget_dialog(d))
        self._dialogs.append(dialog)
        dialog.show()
        return dialog

    def _forget_dialog(self, dialog: ProcessDialog) -> None:
        if dialog in self._dialogs:
            self._dialogs.remove(dialog)

    # -- evidence -----------------------------------------------------------------------
    def screenshot(self) -> QPixmap:
        return self.grab()

    def evidence(self) -> Evidence:
        """Everything the window shows, frozen now (raises NothingToSave before a sample)."""
        if self.recording is not None:
            return self._replay_evidence(self.recording)
        facts = self.facts
        notes = [self.banner.reboot_label.text()] if self.banner.reboot_label.text() else []
        if facts is not None:
            notes += [f"Could not see: {limit}" for limit in facts.limits if limit not in
                      (self.latest.limits if self.latest else ())]
        return build_evidence(
            sample=self.latest,
            history=self.history.snapshot(),
            window_png=pixmap_png(self.screenshot()),
            plot_png=pixmap_png(self.plot.grab()),
            port_config=facts.port_config if facts else None,
            source=facts.source_name if facts else "",
            privileged=facts.privileged if facts else None,
            probe_results=panel_rows(self.probe_panel.results, "the outbound tests"),
            settings=panel_rows(self.settings_panel.settings_json, "the OS settings"),
            event_log=self._event_log(),
            notes=notes,
        )

    def _replay_evidence(self, recording: Recording) -> Evidence:
        """The replayed moment, said to be one: its sample, the recorded series up to it,
        the recorded host, OS, reader and port settings. The outbound tests, event log and
        settings panels show this machine now, not the recorded moment: left out."""
        index = self.replay_index
        snapshot = recording.snapshot()
        upto = HistorySnapshot(snapshot.times[:index + 1], snapshot.values[:index + 1])
        header = recording.header or {}
        sample = self.latest
        notes = [
            f"Replayed from the recording {recording.path} ({when(recording.start)} to "
            f"{when(recording.end)}, {len(recording):,} samples): this report shows the moment "
            f"{sample.time_iso if sample else '?'} (sample {index + 1:,} of {len(recording):,}) and the "
            f"series up to it. Made on {socket.gethostname()}.",
            "Outbound test results, the event log and the OS settings are not part of a recording and "
            "are left out.",
        ] + list(recording.warnings)
        evidence = build_evidence(
            sample=sample, history=upto, window_png=pixmap_png(self.screenshot()),
            plot_png=pixmap_png(self.plot.grab()), port_config=recording.port_config,
            source=str(header.get("source") or ""), privileged=None, notes=notes)
        recorded_on = {key: str(header[key]) for key in ("host", "os") if header.get(key)}
        return dataclasses.replace(evidence, host=recorded_on.get("host", evidence.host),
                                   os_name=recorded_on.get("os", evidence.os_name))

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
        self.error_label.clear()
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
        if self.sampling is not None:
            self.sampling.stop()
        if hasattr(self, "live_action"):
            self._update_mode_actions()

    def closeEvent(self, event: QCloseEvent) -> None:
        try:
            self.save_settings()
        finally:
            self.stop_sampling()
            self.stop_recording("the window closed")  # after sampling: the last sample is in
            if self._loader is not None:
                self._loader.wait()  # a QThread must not be destroyed while it runs
            self.probe_panel.shutdown()  # an outbound test in progress is cancelled
            for dialog in list(self._dialogs):
                dialog.close()
        super().closeEvent(event)
