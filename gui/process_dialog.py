"""Details of one process: exe path, user, command line and its remote endpoints.

The details are read in a background thread: a process's connection list comes from
the system-wide socket table, which takes a second or more at 100k sockets.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.model import ProcessRow
from core.process_details import ProcessDetails, read_process_details
from gui.table_models import compact_states


class _DetailsLoader(QObject):
    """Carries the result from the reading thread back to the GUI thread (queued)."""

    loaded = Signal(object)  # ProcessDetails


class ProcessDialog(QDialog):
    def __init__(self, row: ProcessRow, parent: QWidget | None = None,
                 read: Callable[[int], ProcessDetails] = read_process_details) -> None:
        super().__init__(parent)
        self.row = row
        self.details: ProcessDetails | None = None
        self.setWindowTitle(f"{row.name} (pid {row.pid})")
        self.resize(720, 480)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, title in (("status", "Status"), ("name", "Name"), ("exe", "Executable"),
                           ("user", "User"), ("cmdline", "Command line"), ("started", "Started")):
            label = QLabel("reading…")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[key] = label
            form.addRow(title + ":", label)
        sockets = QLabel(
            f"{row.connections} connections, TIME_WAIT {row.time_wait} ({row.time_wait_exact} exact, "
            f"{row.time_wait_inferred} inferred), {row.opens_per_s:.1f} new/s — "
            f"{compact_states(row.states) or 'no sockets'}")
        sockets.setWordWrap(True)
        sockets.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Last sample:", sockets)
        self.endpoints_note = QLabel("Reading its connections…")
        self.endpoints_note.setWordWrap(True)
        self.endpoints = QTableWidget(0, 4)
        self.endpoints.setHorizontalHeaderLabels(["Remote endpoint", "Connections", "TIME_WAIT", "States"])
        self.endpoints.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.endpoints.verticalHeader().hide()
        self.endpoints.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("<b>Its remote endpoints</b>"))
        layout.addWidget(self.endpoints_note)
        layout.addWidget(self.endpoints, 1)
        layout.addWidget(buttons)

        self._loader = _DetailsLoader(self)
        self._loader.loaded.connect(self.show_details)
        self._thread = threading.Thread(target=self._load, args=(read,), daemon=True,
                                        name=f"details-{row.pid}")
        self._thread.start()

    def _load(self, read: Callable[[int], ProcessDetails]) -> None:
        try:
            details = read(self.row.pid)
        except Exception as exc:  # never leave the dialog saying "reading…" forever
            details = ProcessDetails(self.row.pid, "exited", self.row.name, "", "", "", "", (),
                                     f"Could not read the process: {exc}")
        with contextlib.suppress(RuntimeError):  # the dialog was closed and deleted meanwhile
            self._loader.loaded.emit(details)

    def wait_loaded(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def show_details(self, details: ProcessDetails) -> None:
        self.details = details
        status = {"running": "running", "exited": "exited (the process is gone)",
                  "access denied": "access denied (run as administrator/root to see more)"}
        self.fields["status"].setText(status.get(details.status, details.status))
        for key in ("name", "exe", "user", "cmdline", "started"):
            self.fields[key].setText(getattr(details, key) or "—")
        rows = endpoint_rows(details, self.row)
        self.endpoints.setRowCount(len(rows))
        for i, texts in enumerate(rows):
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                if column in (1, 2):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.endpoints.setItem(i, column, item)
        self.endpoints.resizeColumnsToContents()
        note = details.endpoints_note or f"{len(rows)} remote endpoints."
        row = self.row
        if not details.endpoints and details.status == "running" and row.time_wait:
            # The kernel lists TIME_WAIT without an owner: say what the sample attributed.
            note = (f"All of its sockets are in TIME_WAIT: {row.time_wait:,} attributed to it "
                    f"({row.time_wait_exact:,} exact, {row.time_wait_inferred:,} inferred). The kernel "
                    "lists TIME_WAIT sockets without an owner; the TIME_WAIT column shows where the "
                    "ones attributed to it point.")
        self.endpoints_note.setText(note)


def endpoint_rows(details: ProcessDetails, row: ProcessRow) -> list[tuple[str, str, str, str]]:
    """(endpoint, connections, TIME_WAIT, states) per remote endpoint: the connections it
    holds now (psutil) beside the TIME_WAIT the sample attributed to it toward each
    endpoint (exact and inferred together), busiest first."""
    held = {e.endpoint: e for e in details.endpoints}
    toward = {endpoint: n for endpoint, n in row.time_wait_toward.items() if endpoint and n > 0}
    keys = sorted(set(held) | set(toward),
                  key=lambda k: (-(held[k].count if k in held else 0) - toward.get(k, 0), k))
    rows = []
    for key in keys:
        endpoint = held.get(key)
        rows.append((key, str(endpoint.count if endpoint else 0), f"{toward.get(key, 0):,}",
                     ", ".join(f"{s} {n}" for s, n in endpoint.states) if endpoint else ""))
    return rows
