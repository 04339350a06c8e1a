"""The outbound test panel: host, port, timeout, count (and interval); Run and Cancel;
progress for a series; Repeat until Cancel (core.canary, as `watch --probe` runs it); the
results kept for the report; on Windows the System log's Tcpip 4227/4231 summary.

Probing runs in a worker thread (core.probe.Prober), never on the GUI thread; results
come back through queued signals as immutable ProbeResults. Cancel sets the prober's
flag, which every wait looks at within core.probe.CANCEL_SLICE_S. Bad input is marked
on its field and never reaches the network: Run stays disabled until every field parses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core import eventlog
from core.canary import Canary
from core.eventlog import EventLogError, EventLogSummary
from core.free_ports import read_free_ports
from core.model import endpoint_text
from core.probe import (
    DEFAULT_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    ProbeInputError,
    Prober,
    ProbeResult,
    SeriesSummary,
    parse_count,
    parse_host,
    parse_interval,
    parse_port,
    parse_timeout,
)

log = logging.getLogger(__name__)

EventLogReader = Callable[[], EventLogSummary | None]

EXPLANATION = (
    "<b>Why outbound fails first:</b> every connection this machine <i>opens</i> needs a fresh local "
    "(ephemeral) port, while a connection it <i>receives</i> reuses the listening port. When sockets in "
    "TIME_WAIT hold every local port, outbound connects fail at once (WSAENOBUFS 10055 / WSAEADDRINUSE "
    "10048 on Windows, EADDRNOTAVAIL on Linux) while inbound ones still work. This test opens real "
    "outbound connections, like <tt>telnet HOST PORT</tt>, and closes each one at once."
)
SUMMARY = "Connects like <tt>telnet HOST PORT</tt> (hover for why outbound fails first)."
TABLE_MIN_PX = 56
COLUMNS = ("Time", "Target", "Outcome", "Latency", "Diagnosis")
MAX_ROWS = 5000  # oldest rows (and kept results) go first beyond this
INVALID_STYLE = "QLineEdit { border: 2px solid #c62828; background: #fff4f4; }"
FAILED_COLOUR = QColor("#fde7e7")
EXHAUSTED_COLOUR = QColor("#f8c4c4")

FIELDS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("host", "Host", parse_host, ""),
    ("port", "Port", parse_port, ""),
    ("timeout", "Timeout (s)", parse_timeout, f"{DEFAULT_TIMEOUT_S:g}"),
    ("count", "Count", parse_count, "1"),
    ("interval", "Interval (s)", parse_interval, f"{DEFAULT_INTERVAL_S:g}"),
)
FIELD_PLACES = ((0, 0, 3), (0, 4, 1), (1, 0, 1), (1, 2, 1), (1, 4, 1))  # (row, column, columns spanned)


class _CurrentRun:
    """The prober of the run in progress, reachable without the widget (which may
    already be gone when the window closes mid-run)."""

    def __init__(self) -> None:
        self.prober: Prober | None = None
        self.thread: threading.Thread | None = None
        self.canary: Canary | None = None
        self.results: list[ProbeResult] = []  # a repeated run's, for its summary

    def cancel(self, *_: object) -> None:
        if self.prober is not None:
            self.prober.cancel()
        if self.canary is not None:
            self.canary.cancel()


class ProbePanel(QWidget):
    attempted = Signal(object)  # every ProbeResult: evidence for the verdict and a `probe` event
    results_changed = Signal()
    # From the worker thread (queued into the GUI thread): (run id, payload).
    _attempt_done = Signal(int, object)  # ProbeResult
    _run_done = Signal(int, object, object)  # SeriesSummary, EventLogSummary | str | None

    def __init__(self, parent: QWidget | None = None,
                 event_log_reader: EventLogReader | None = eventlog.read_tcpip_summary) -> None:
        super().__init__(parent)
        self._event_log_reader = event_log_reader
        self._results: list[dict[str, Any]] = []
        self._event_log: EventLogSummary | None = None
        self._run = _CurrentRun()
        self._run_id = 0
        self._running = False
        self._touched: set[str] = set()
        self._errors: dict[str, str] = {}
        self.last_summary: SeriesSummary | None = None
        self._build()
        self._attempt_done.connect(self._on_attempt, Qt.ConnectionType.QueuedConnection)
        self._run_done.connect(self._on_run_done, Qt.ConnectionType.QueuedConnection)
        self.destroyed.connect(self._run.cancel)
        self._validate()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        # One line on screen (the Run button and the results must fit above the fold at
        # 1280x800); the why in full on hover and in Help > Reading this window.
        self.explanation = QLabel(SUMMARY)
        self.explanation.setWordWrap(True)
        self.explanation.setTextFormat(Qt.TextFormat.RichText)
        self.explanation.setToolTip(EXPLANATION)

        # Host and port on the first row, the repetition settings on the second.
        form = QGridLayout()
        form.setHorizontalSpacing(6)
        form.setVerticalSpacing(4)
        self.fields: dict[str, QLineEdit] = {}
        for (name, label, _parse, default), (row, column, span) in zip(FIELDS, FIELD_PLACES, strict=True):
            edit = QLineEdit(default)
            edit.setObjectName(f"probe_{name}")
            edit.textEdited.connect(lambda _text, n=name: self._touched.add(n))
            edit.textChanged.connect(self._validate)
            edit.returnPressed.connect(self.start)
            self.fields[name] = edit
            caption = QLabel(label)
            caption.setBuddy(edit)
            form.addWidget(caption, row, column)
            form.addWidget(edit, row, column + 1, 1, span)
        for column in (1, 3, 5):
            form.setColumnStretch(column, 1)
        form.setColumnStretch(1, 4)
        self.fields["host"].setPlaceholderText("server.example.com, 10.0.0.5 or [2001:db8::5]")
        self.fields["port"].setPlaceholderText("443")
        self.input_error = QLabel()
        self.input_error.setWordWrap(True)
        self.input_error.setStyleSheet("color: #c62828;")

        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")
        # Beside the buttons, so the panel needs no more height at 1280x800.
        self.repeat_box = QCheckBox("Repeat")
        self.repeat_box.setToolTip("Repeat until Cancel, every Interval seconds, as `portpressure watch "
                                   "--probe` does: each result is evidence for the verdict, a marker on "
                                   "the plot when the outcome turns, and kept in a recording")
        self.repeat_box.toggled.connect(lambda on: self.fields["count"].setEnabled(not on))
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.repeat_box)
        buttons.addWidget(self.progress, 1)

        self.table = QTableWidget(0, len(COLUMNS))
        # A header and a row at least, and no height of its own to ask for: the panel in its
        # scroll area then fits at 1280x800 and the table takes whatever height is left.
        self.table.setMinimumHeight(TABLE_MIN_PX)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((90, 140, 140, 70)):
            header.resizeSection(column, width)

        self.status = QLabel("Enter a host and a port, then Run.")
        self.status.setWordWrap(True)
        self.diagnosis = QLabel()
        self.diagnosis.setWordWrap(True)
        self.diagnosis.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.event_log_label = QLabel()
        self.event_log_label.setWordWrap(True)
        self.event_log_label.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.explanation)
        layout.addLayout(form)
        layout.addWidget(self.input_error)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.diagnosis)
        layout.addWidget(self.event_log_label)
        layout.addWidget(self.table, 1)

    # -- input ----------------------------------------------------------------------------
    @Slot()
    def _validate(self) -> None:
        self._errors = {}
        for name, _label, parse, _default in FIELDS:
            edit = self.fields[name]
            try:
                parse(edit.text())
            except ProbeInputError as exc:
                self._errors[name] = str(exc)
            # Mark only what the user has typed in: an untouched empty field is not an error yet.
            marked = name in self._errors and (name in self._touched or edit.text() != "")
            edit.setStyleSheet(INVALID_STYLE if marked else "")
            edit.setToolTip(self._errors[name] if marked else "")
            edit.setProperty("invalid", marked)
        shown = [self._errors[n] for n, *_ in FIELDS if n in self._errors
                 and (n in self._touched or self.fields[n].text() != "")]
        self.input_error.setText("; ".join(shown))
        self.input_error.setVisible(bool(shown))
        self._update_buttons()

    def field_error(self, name: str) -> str | None:
        """The message for a field's current text, None when it parses."""
        return self._errors.get(name)

    def _update_buttons(self) -> None:
        self.run_button.setEnabled(not self._running and not self._errors)
        for edit in self.fields.values():
            edit.setReadOnly(self._running)

    # -- running ----------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._running

    @Slot()
    def start(self) -> bool:
        """Start a run with the fields' values; False (nothing opened) when busy or invalid."""
        self._validate()
        if self._running or self._errors:
            if self._errors:
                self._touched.update(self._errors)
                self._validate()
            return False
        values = {name: parse(self.fields[name].text()) for name, _label, parse, _default in FIELDS}
        self._run_id += 1
        self._running = True
        repeat = self.repeat_box.isChecked()
        self.progress.setRange(0, 0 if repeat else values["count"])  # repeating: busy, no end
        self.progress.setValue(0)
        self.status.setText(f"Connecting to {values['host']} port {values['port']}…")
        self.diagnosis.clear()
        self.cancel_button.setEnabled(True)
        self._update_buttons()
        if repeat:
            self._start_repeating(self._run_id, values)
            return True
        prober = Prober(free_ports=read_free_ports)  # judges WSAEADDRNOTAVAIL with the socket table
        self._run.prober, self._run.canary = prober, None
        thread = threading.Thread(target=self._work, name="portpressure-probe", daemon=True,
                                  args=(prober, self._run_id, values, self._event_log_reader))
        self._run.thread = thread
        thread.start()
        return True

    def _start_repeating(self, run_id: int, values: dict[str, Any]) -> None:
        run = self._run
        run.prober, run.thread, run.results = None, None, []

        def deliver(result: ProbeResult) -> None:
            run.results.append(result)
            self._emit(self._attempt_done, run_id, result)

        run.canary = Canary([(values["host"], values["port"])], deliver, every_s=values["interval"],
                            timeout_s=values["timeout"]).start()

    @Slot()
    def cancel(self) -> None:
        if not self._running:
            return
        self._run.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("Cancelling…")
        canary = self._run.canary
        if canary is not None:  # a repeated run ends here: there is no series to finish
            canary.stop()
            results = list(self._run.results)
            target = endpoint_text(*canary.targets[0])
            self._run_done.emit(self._run_id, SeriesSummary.of(target, len(results), results, True), None)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Cancel a run in progress and wait for its thread (for the window's close)."""
        self._run.cancel()
        if self._run.canary is not None:
            self._run.canary.stop(timeout_s)
        thread = self._run.thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)

    def _work(self, prober: Prober, run_id: int, values: dict[str, Any],
              read_event_log: EventLogReader | None) -> None:
        """Runs in the worker thread: no widget is touched here, only signals emitted."""
        def deliver(result: ProbeResult) -> None:
            self._emit(self._attempt_done, run_id, result)

        try:
            summary = prober.series(values["host"], values["port"], count=values["count"],
                                    interval_s=values["interval"], timeout_s=values["timeout"],
                                    on_result=deliver)
        except Exception as exc:  # a bug here must not leave the panel stuck in "running"
            log.exception("the outbound test failed")
            summary = SeriesSummary(f"{values['host']}:{values['port']}", values["count"], 0, 0, 0, {},
                                    None, True)
            self._emit(self._run_done, run_id, summary, f"The test stopped with an error: {exc}")
            return
        event_log: EventLogSummary | str | None = None
        if read_event_log is not None and not prober.cancelled:
            try:
                event_log = read_event_log()
            except EventLogError as exc:
                event_log = f"Windows System log not read: {exc}"
            except Exception as exc:
                log.warning("reading the event log: %s", exc)
                event_log = f"Windows System log not read: {exc}"
        self._emit(self._run_done, run_id, summary, event_log)

    def _emit(self, signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the panel was deleted while the thread ran: stop quietly
            self._run.cancel()

    @Slot(int, object)
    def _on_attempt(self, run_id: int, result: ProbeResult) -> None:
        if run_id != self._run_id:
            return  # a late result from a run that was cancelled and replaced
        self._results.append(result.to_json())
        self._add_row(result)
        if len(self._results) > MAX_ROWS:
            del self._results[0]
            self.table.removeRow(0)
        self.progress.setValue(result.attempt)
        self.diagnosis.setText(result.diagnosis)
        self.results_changed.emit()
        self.attempted.emit(result)

    @Slot(int, object, object)
    def _on_run_done(self, run_id: int, summary: SeriesSummary, event_log: object) -> None:
        if run_id != self._run_id:
            return
        self._running = False
        self.last_summary = summary
        self.cancel_button.setEnabled(False)
        self._update_buttons()
        self.status.setText(summary.text() if summary.attempts or not isinstance(event_log, str)
                            else event_log)
        if isinstance(event_log, EventLogSummary):
            self._event_log = event_log
            self.event_log_label.setText(event_log.text())
            self.event_log_label.setStyleSheet("color: #c62828;" if event_log.total else "")
            self.event_log_label.setVisible(True)
        elif isinstance(event_log, str) and summary.attempts:
            self.event_log_label.setText(event_log)
            self.event_log_label.setStyleSheet("")
            self.event_log_label.setVisible(True)

    def _add_row(self, result: ProbeResult) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        outcome = "connected" if result.ok else f"{result.category}"
        if result.errno_name:
            outcome += f" ({result.errno_name})"
        # Connect time for a connect (even a failed one), lookup time for a lookup failure.
        latency = result.connect_ms if result.phase == "connect" else result.resolve_ms
        cells = (result.time_iso[11:23], result.target, outcome,
                 f"{latency:.2f} ms" if latency is not None else "", result.diagnosis)
        tip = result.diagnosis + (f"\n\n{result.error}" if result.error else "")
        colour = None if result.ok else (EXHAUSTED_COLOUR if result.category == "ports_exhausted"
                                         else FAILED_COLOUR)
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            if colour is not None:
                item.setBackground(colour)
            self.table.setItem(row, column, item)
        self.table.scrollToBottom()

    # -- what the report takes ---------------------------------------------------------------
    def results(self) -> list[dict[str, Any]]:
        """Every attempt so far as `probe --json` objects (copies), oldest first."""
        return [dict(r) for r in self._results]

    def event_log(self) -> dict[str, Any] | None:
        """The last Windows event-log summary as the report's event_log section, if read."""
        return None if self._event_log is None else self._event_log.to_json()
