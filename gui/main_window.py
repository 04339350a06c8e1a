"""The main window: verdict banner, live plot, top processes and remote endpoints,
the outbound test and OS settings panels when present, and the status bar.

Samples arrive from the sampling thread through a queued signal; this thread only
appends them to the History and updates the views. A replay (a recording opened
with --open) feeds the same `ingest` path instead of the live worker.
"""

from __future__ import annotations

import logging
import os
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
    QScrollArea,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from core.history import DAY_AT_1HZ, History
from core.model import ProbeFailure, Sample
from core.report import Evidence, ReportError
from gui.evidence import build_evidence, panel_rows, save_evidence
from gui.process_dialog import ProcessDialog
from gui.sampling_worker import SamplerLike, SamplingThread, SamplingWorker, SourceFacts
from gui.state_plot import StatePlot, TextStrip
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
DEFAULT_SIZE = (1280, 800)
MINIMUM_SIZE = (1024, 700)


def _optional_widget(module: str, name: str) -> type[QWidget] | None:
    """Panels built separately (outbound test, OS settings): the window works without them."""
    try:
        imported = __import__(f"gui.{module}", fromlist=[name])
    except ImportError as exc:
        log.info("%s not available: %s", name, exc)
        return None
    widget: type[QWidget] | None = getattr(imported, name, None)
    return widget


def _ask_folder(parent: QWidget, start: str) -> str | None:
    folder = QFileDialog.getExistingDirectory(parent, "Save evidence into folder", start)
    return folder or None


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

    def __init__(self, *, make_sampler: Callable[[], SamplerLike] | None = None,
                 interval_s: float = 1.0, settings: QSettings | None = None,
                 choose_folder: FolderChooser = _ask_folder, replay: Iterable[Sample] | None = None,
                 history_capacity: int = DAY_AT_1HZ, start: bool = True,
                 restore_geometry: bool = True) -> None:
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.choose_folder = choose_folder
        self.history = History(history_capacity)
        self.latest: Sample | None = None
        self.facts: SourceFacts | None = None
        self.interval_s = interval_s
        self._dialogs: list[ProcessDialog] = []
        self.setWindowTitle(f"PortPressure {__version__}")
        icon = icon_path()
        if icon.is_file():
            self.setWindowIcon(QIcon(str(icon)))
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(*DEFAULT_SIZE)

        self._build_views(history_capacity)
        self._build_actions()
        self._build_status_bar()
        self._restore_settings(restore_geometry)

        self.sampling: SamplingThread | None = None
        if replay is not None:
            self.source_label.setText("Replaying a recording")
            for sample in replay:
                self.ingest(sample)
        else:
            worker = SamplingWorker(make_sampler, interval_s) if make_sampler else SamplingWorker(
                interval_s=interval_s)
            # Queued, explicitly: these run in this (the GUI) thread whatever wraps them.
            queued = Qt.ConnectionType.QueuedConnection
            worker.sample_ready.connect(self.ingest, queued)
            worker.facts_ready.connect(self.show_facts, queued)
            worker.error.connect(self.show_error, queued)
            self.sampling = SamplingThread(worker, self)
            if self.probe_panel is not None and hasattr(self.probe_panel, "exhaustion_detected"):
                self.probe_panel.exhaustion_detected.connect(self.note_probe_failure)
            if start:
                self.sampling.start()

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
        self.process_view.setToolTip("Double-click a process for its path, user, command line and endpoints")
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
        probe_class = _optional_widget("probe_panel", "ProbePanel")
        self.probe_panel: Any = probe_class() if probe_class else None
        if self.probe_panel is not None:
            self.side_tabs.addTab(self._scrollable(self.probe_panel), "Outbound test")
        settings_class = _optional_widget("settings_panel", "SettingsPanel")
        self.settings_panel: Any = settings_class() if settings_class else None
        if self.settings_panel is not None:
            self.side_tabs.addTab(self._scrollable(self.settings_panel), "OS settings")
            if hasattr(self.settings_panel, "reboot_pending"):
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

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.save_action)
        file_menu.addAction(self.save_as_action)
        file_menu.addAction(self.copy_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = menu.addMenu("&View")
        for action in self.plot.window_actions.actions():
            view_menu.addAction(action)
        view_menu.addSeparator()
        view_menu.addAction(self.plot.pause_action)
        view_menu.addAction(self.filter_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addAction(self.save_action)
        toolbar.addAction(self.copy_action)
        toolbar.addSeparator()
        toolbar.addAction(self.plot.pause_action)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b71c1c; font-weight: bold;")
        self.error_label.setWordWrap(False)
        # Its text changes every sample: a TextStrip repaints without re-laying out the window.
        self.interval_label = TextStrip(hint="Every 10 s · last sample 9999.9 ms, 9,999,999 sockets")
        self.interval_label.setText(f"Sampling every {self.interval_s:g} s")
        self.privilege_label = QLabel()
        self.source_label = QLabel("Opening the socket table reader…")
        for label in (self.interval_label, self.privilege_label, self.source_label):
            bar.addPermanentWidget(label)
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
        self.history.append(sample)
        self.latest = sample
        if self.error_label.text():
            self.error_label.clear()
        self.banner.show_sample(sample)
        self.plot.append(sample)
        self.process_model.update(sample.processes)
        self.remote_model.update(sample.remotes)
        self._update_captions()
        source = sample.extra.get("source", "")
        sockets = sample.extra.get("sockets")
        counted = (f", {sockets:,} socket{'' if sockets == 1 else 's'}" if isinstance(sockets, int)
                   else "")
        self.interval_label.setText(f"Every {self.interval_s:g} s · last sample {sample.sample_ms:.1f} ms"
                                    f"{counted}")
        self.interval_label.setToolTip("Sampling interval and the cost of the last sample"
                                       + (f", read with {source}" if source else ""))
        self.sample_shown.emit(sample)

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
            probe_results=panel_rows(getattr(self.probe_panel, "results", None), "the outbound tests"),
            settings=panel_rows(getattr(self.settings_panel, "settings_json", None), "the OS settings"),
            event_log=self._event_log(),
            notes=notes,
        )

    def _event_log(self) -> dict[str, Any] | None:
        """The outbound test panel's Windows event-log summary (Tcpip 4227/4231), if read."""
        read = getattr(self.probe_panel, "event_log", None)
        if read is None:
            return None
        try:
            summary = read()
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

    def closeEvent(self, event: QCloseEvent) -> None:
        try:
            self.save_settings()
        finally:
            self.stop_sampling()
            if self.probe_panel is not None and hasattr(self.probe_panel, "shutdown"):
                self.probe_panel.shutdown()  # an outbound test in progress is cancelled
            for dialog in list(self._dialogs):
                dialog.close()
        super().closeEvent(event)
