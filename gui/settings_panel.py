"""OS settings: every setting with its stored, effective and default value; a guarded
Apply (the plan, the backup location and the reboot requirement, then an explicit
confirmation); Undo from the latest backup.

All OS access (reading, planning, writing, and on Windows waiting for the elevated
one-shot process) runs in a short-lived worker thread; results come back through a
queued signal as immutable values. Every failure becomes a line in the panel.
`reboot_pending` carries the reminder for the main window's banner ("" when cleared).
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.tuning import (
    Applied,
    Plan,
    SettingState,
    TuningBackend,
    format_value,
    open_backend,
    pending_reboot_reminder,
)
from core.tuning.backups import Backup, latest_backup

log = logging.getLogger(__name__)

# Four columns fit the side panel at 1280 px: the unit goes with the values, the stored
# value shows only where it differs from the one in effect, the rest are notes.
TABLE_MIN_PX = 56
COLUMNS = ("Setting", "In effect", "Default", "Notes")
ERROR_STYLE = "color: #9b1c1c;"
OK_STYLE = "color: #1b5e20;"
CONFIRM_TEXT = "I understand this changes a system setting of this server"


def folded_cells(state: SettingState) -> tuple[str, str, str, str]:
    """('net.ipv4.tcp_fin_timeout', '60 s', '60 s', 'valid: 1-600 · cannot change: ...')."""
    # Units of measure go with the value ("60 s"); a unit that names the kind of value
    # ("ports", "mode") would only repeat the setting's name.
    unit = f" {state.unit}" if state.unit and len(state.unit) <= 2 else ""
    effective = f"{format_value(state.effective)}{unit}"
    if format_value(state.value) != format_value(state.effective):
        effective += f" (stored: {format_value(state.value)}{unit}, after a reboot)"
    notes = [f"valid: {state.range}"] if state.range else []
    if state.needs_reboot:
        notes.append("a change needs a reboot")
    if not state.writable:
        notes.append(f"cannot change: {state.why_not}")
    return state.name, effective, f"{format_value(state.default)}{unit}", " · ".join(notes)


class ApplyDialog(QDialog):
    """The plan in full; OK only after the box is ticked; Cancel is the default button."""

    def __init__(self, plan: Plan, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        undo = plan.reverts is not None
        self.plan = plan
        self.setWindowTitle(("Undo: " if undo else "Change: ") + plan.setting)
        self.resize(640, 420)
        layout = QVBoxLayout(self)
        headline = QLabel(f"<b>{html.escape(plan.change)}</b>")
        headline.setWordWrap(True)
        layout.addWidget(headline)
        self.backup_label = QLabel(f"Backup first, into: {html.escape(str(plan.backup_dir))}")
        self.backup_label.setWordWrap(True)
        self.backup_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.backup_label)
        reboot = ("<b>A reboot is required</b> before Windows uses the new value." if plan.needs_reboot
                  else "No reboot needed: it takes effect at once.")
        self.reboot_label = QLabel(reboot)
        layout.addWidget(self.reboot_label)
        self.plan_text = QPlainTextEdit(plan.describe())
        self.plan_text.setReadOnly(True)
        layout.addWidget(self.plan_text, 1)
        self.blocked_label = QLabel()
        self.blocked_label.setWordWrap(True)
        self.blocked_label.setStyleSheet(ERROR_STYLE)
        self.blocked_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.blocked_label.setVisible(bool(plan.blocked))
        if plan.blocked:
            self.blocked_label.setText(f"Cannot apply from here: {plan.blocked}")
        layout.addWidget(self.blocked_label)
        self.confirm = QCheckBox(CONFIRM_TEXT)
        self.confirm.setEnabled(not plan.blocked)
        layout.addWidget(self.confirm)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button.setText("Undo" if undo else "Apply")
        self.ok_button.setEnabled(False)
        # Return presses the focused button (what it says is what happens); with the focus
        # anywhere else it presses Cancel, the default: never a change by accident.
        self.ok_button.setAutoDefault(True)
        self.cancel_button.setAutoDefault(True)
        self.confirm.toggled.connect(lambda on: self.ok_button.setEnabled(on and not plan.blocked))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        # Set once the buttons are in the dialog and shown: before that the button box
        # makes its first accept button (Apply) the default.
        self.cancel_button.setDefault(True)


class _Results(QObject):
    """Carries a worker's outcome to the GUI thread (queued: emitted from another thread)."""

    done = Signal(str, object, object)  # task, result or None, error text or None


class SettingsPanel(QWidget):
    reboot_pending = Signal(str)  # the reminder text, or "" when nothing is pending
    states_loaded = Signal(object)  # tuple[SettingState, ...]
    change_applied = Signal(object)  # Applied
    failed = Signal(str)  # a one-line error, also shown in the panel

    def __init__(self, backend: TuningBackend | None = None, parent: QWidget | None = None,
                 make_backend: Callable[[], TuningBackend] = open_backend) -> None:
        super().__init__(parent)
        self._backend = backend
        self._make_backend = make_backend
        self._states: tuple[SettingState, ...] = ()
        self._latest: Backup | None = None
        self._reminder = ""
        self._busy = False
        self.apply_dialog: ApplyDialog | None = None
        self._results = _Results(self)
        self._results.done.connect(self._finished)
        self._build()
        self.refresh()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        intro = QLabel("The OS settings behind port exhaustion (hover for how a change is made).")
        intro.setToolTip("A change is planned and shown first, backed up before it is written, and read "
                         "back after; Undo restores the latest backup.")
        intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        # A header and a row at least, and no height of its own to ask for: the panel in its
        # scroll area then fits at 1280x800 and the table takes whatever height is left.
        self.table.setMinimumHeight(TABLE_MIN_PX)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # The notes take the width that is left (in full in the tooltip and below the table).
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.value_edit = QLineEdit()
        self.value_edit.setPlaceholderText("new value for the selected setting")
        self.value_edit.returnPressed.connect(self.start_apply)
        self.apply_button = QPushButton("Apply…")
        self.apply_button.clicked.connect(self.start_apply)
        self.undo_button = QPushButton("Undo last change…")
        self.undo_button.clicked.connect(self.start_undo)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("New value:"))
        controls.addWidget(self.value_edit, 1)
        controls.addWidget(self.apply_button)
        controls.addWidget(self.undo_button)
        controls.addWidget(self.refresh_button)
        self.backup_label = QLabel("Latest backup: none yet")
        self.backup_label.setWordWrap(True)
        self.backup_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addLayout(controls)
        layout.addWidget(self.backup_label)
        layout.addWidget(self.status)
        self._update_buttons()

    # -- what the window and tests use -----------------------------------------------------
    @property
    def states(self) -> tuple[SettingState, ...]:
        return self._states

    @property
    def busy(self) -> bool:
        return self._busy

    def settings_json(self) -> list[dict[str, Any]]:
        """The `tune show --json` rows as last read (for the evidence bundle)."""
        return [state.to_json() for state in self._states]

    def select(self, name: str) -> bool:
        for row, state in enumerate(self._states):
            if state.name == name:
                self.table.selectRow(row)
                return True
        return False

    def selected_state(self) -> SettingState | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._states):
            return None
        return self._states[rows[0].row()]

    # -- actions ---------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        self._run("refresh", self._read)

    @Slot()
    def start_apply(self) -> None:
        state = self.selected_state()
        if state is None:
            self._show_error("Select a setting in the table first.")
            return
        if not state.writable:
            self._show_error(f"{state.name} cannot be changed from here: {state.why_not}")
            return
        text = self.value_edit.text().strip()
        if not text:
            self._show_error(f"Type the new value for {state.name} ({state.range}).")
            return
        name = state.name

        def make_plan(backend: TuningBackend) -> Plan:
            return backend.plan(name, backend.validate(name, text))

        self._run("plan", make_plan)

    @Slot()
    def start_undo(self) -> None:
        latest = self._latest
        if latest is None:
            self._show_error("There is no backup to undo on this machine.")
            return
        self._run("plan", lambda backend: backend.plan_revert(latest.path))

    # -- the worker ------------------------------------------------------------------------
    def _run(self, task: str, job: Callable[[TuningBackend], Any]) -> None:
        if self._busy:
            self._show_error("Busy with the previous request; try again in a moment.")
            return
        self._busy = True
        self._update_buttons()
        if task != "refresh":
            self.status.setStyleSheet("")
            self.status.setText("Working…")
        threading.Thread(target=self._work, args=(task, job), daemon=True,
                         name=f"settings-{task}").start()

    def _work(self, task: str, job: Callable[[TuningBackend], Any]) -> None:
        result: Any = None
        error: str | None = None
        try:
            if self._backend is None:
                self._backend = self._make_backend()
            result = job(self._backend)
            if task == "apply":
                result = (result, self._read(self._backend))
        except Exception as exc:  # the panel reports every failure; it must never take the window down
            log.info("settings %s failed: %s", task, exc, exc_info=True)
            error = str(exc) or type(exc).__name__
        with contextlib.suppress(RuntimeError):  # the panel was closed while the worker ran
            self._results.done.emit(task, result, error)

    def _read(self, backend: TuningBackend) -> tuple[tuple[SettingState, ...], Backup | None]:
        return backend.read_all(), latest_backup(backend.backup_dir)

    @Slot(str, object, object)
    def _finished(self, task: str, result: Any, error: str | None) -> None:
        self._busy = False
        try:
            if error is not None:
                self._show_error(error)
                if task == "apply":
                    self.refresh()  # show what is there now, whatever happened
            elif task == "refresh":
                self._show_states(*result)
            elif task == "plan":
                self._confirm(result)
            elif task == "apply":
                applied, (states, latest) = result
                self._show_states(states, latest)
                self._show_applied(applied)
        except Exception as exc:  # a display bug must not crash the window either
            log.exception("settings panel could not show the result of %s", task)
            self._show_error(f"{type(exc).__name__}: {exc}")
        finally:
            self._update_buttons()

    # -- showing ---------------------------------------------------------------------------
    def _show_states(self, states: tuple[SettingState, ...], latest: Backup | None) -> None:
        selected = self.selected_state()
        self._states = states
        self._latest = latest
        self.table.setRowCount(len(states))
        for row, state in enumerate(states):
            cells = folded_cells(state)
            tip = "\n".join(state.notes)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tip or text)
                self.table.setItem(row, column, item)
        if selected is not None:
            self.select(selected.name)
        self._selection_changed()
        self.backup_label.setText(
            f"Latest backup: {latest.summary} — {latest.path}" if latest else "Latest backup: none yet")
        self.states_loaded.emit(states)
        reminder = pending_reboot_reminder(states) or ""
        if reminder != self._reminder:
            self._reminder = reminder
            self.reboot_pending.emit(reminder)

    def _selection_changed(self) -> None:
        state = self.selected_state()
        if state is None:
            self.details.setText("")
        else:
            lines = [f"{state.name}: {state.range}"] + list(state.notes)
            if not state.writable and state.why_not:
                lines.append(f"Cannot change it from here: {state.why_not}")
            self.details.setText("\n".join(lines))
        self.details.setVisible(bool(self.details.text()))  # an empty line would take the table's room
        self._update_buttons()

    def _confirm(self, plan: Plan) -> None:
        self.status.setText("")
        dialog = ApplyDialog(plan, self)
        self.apply_dialog = dialog
        dialog.accepted.connect(lambda: self._run("apply", lambda backend: backend.apply(plan)))
        dialog.rejected.connect(lambda: self._show_message("Cancelled: nothing was changed."))
        dialog.open()

    def _show_applied(self, applied: Applied) -> None:
        state = applied.state
        lines = [f"Done: {applied.plan.setting} is now {format_value(state.value, state.unit)} "
                 f"(read back and verified). Backup: {applied.backup}"]
        lines += list(applied.messages)
        if applied.plan.needs_reboot:
            lines.append("Reboot the server for Windows to use it.")
        self._show_message("\n".join(lines), OK_STYLE)
        self.change_applied.emit(applied)

    def _show_message(self, text: str, style: str = "") -> None:
        self.status.setStyleSheet(style)
        self.status.setText(text)

    def _show_error(self, text: str) -> None:
        self._show_message(text, ERROR_STYLE)
        self.failed.emit(text)

    def _update_buttons(self) -> None:
        state = self.selected_state()
        self.apply_button.setEnabled(not self._busy and state is not None and state.writable)
        self.value_edit.setEnabled(not self._busy)
        self.undo_button.setEnabled(not self._busy and self._latest is not None)
        self.refresh_button.setEnabled(not self._busy)
