"""Table models for the top processes and the top remote endpoints.

Rows are keyed (pid; address and port) and updated in place each sample: a changed
row emits dataChanged, a new one is inserted, a vanished one removed. A modelReset
every second would drop the user's selection and scroll position; in-place updates
keep them, and the sort/filter proxy re-sorts on dataChanged.

The cells live in a QStandardItemModel: painting, sorting and filtering then run in
Qt's C++ without a call into Python per cell. A Python model answering data() (or one
multiData per painted cell) cost more than the painting itself: the remote table (16
rows re-sorted every second) 4.8 ms a sample against 1.8 (benchmarks: see the note
of issue 17).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QObject,
    QRegularExpression,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QStandardItem, QStandardItemModel

from core.model import STATE_NAMES, ProcessRow, RemoteRow

RowT = TypeVar("RowT")
Cells = tuple[tuple[str, ...], tuple[Any, ...]]  # a row's (texts, sort values)
SORT_ROLE = Qt.ItemDataRole.UserRole  # the raw value, so numbers sort as numbers
KEY_ROLE = Qt.ItemDataRole.UserRole + 1  # the row's key (pid, or (address, port))
_DISPLAY = int(Qt.ItemDataRole.DisplayRole)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_HORIZONTAL = Qt.Orientation.Horizontal
# What QAbstractTableModel gives a cell: selectable rows of leaves, not editable (a
# double-click opens the process's details, not an editor).
_CELL_FLAGS = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren


@dataclass(frozen=True)
class Column(Generic[RowT]):
    title: str
    value: Callable[[RowT], Any]  # raw value: sorting and the SORT_ROLE
    text: Callable[[RowT], str] | None = None  # display text; str(value) when None
    tooltip: str = ""
    numeric: bool = True
    counts: bool = False  # a count: shown with thousands separators (10,002), as everywhere else


class KeyedTableModel(QStandardItemModel, Generic[RowT]):
    """A table of frozen rows identified by a key; update() diffs by key.

    Each row's cells (text and sort value) are worked out when the row arrives or
    changes and stored in the items; only cells whose text or value changed are set. A
    row whose cells are unchanged emits no dataChanged (nothing to repaint), even when
    a field the table does not show changed. `rows_added` is emitted after each
    update() that added rows (the view widens its columns once, not per row)."""

    rows_added = Signal()

    def __init__(self, columns: Sequence[Column[RowT]], key: Callable[[RowT], Hashable],
                 parent: QObject | None = None) -> None:
        super().__init__(0, len(columns), parent)
        self._columns = tuple(columns)
        self._key = key
        self._rows: list[RowT] = []
        self._cells: list[Cells] = []
        self._position: dict[Hashable, int] = {}
        self._alignment = tuple(_RIGHT if c.numeric else _LEFT for c in self._columns)
        self._header: dict[tuple[int, int], str] = {}
        for section, column in enumerate(self._columns):
            self._header[(section, _DISPLAY)] = column.title
            if column.tooltip:
                self._header[(section, _TOOLTIP)] = column.tooltip
        # An invalid index (the space below the rows) has no flags, as in QAbstractTableModel.
        self.invisibleRootItem().setFlags(Qt.ItemFlag.NoItemFlags)

    def _cells_of(self, row: RowT) -> Cells:
        values = tuple(c.value(row) for c in self._columns)
        texts = tuple(c.text(row) if c.text else f"{v:,}" if c.counts else str(v)
                      for c, v in zip(self._columns, values, strict=True))
        return texts, values

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Only the header asks (when it repaints): a lookup. QStandardItemModel would
        # number rows and unknown sections.
        return self._header.get((section, int(role))) if orientation == _HORIZONTAL else None

    # -- for the window -------------------------------------------------------------
    def row_tooltip(self, row: RowT) -> str | None:
        return None

    def rows(self) -> list[RowT]:
        return list(self._rows)

    def row_at(self, index: int) -> RowT:
        return self._rows[index]

    def update(self, rows: Sequence[RowT]) -> None:
        """Make the table hold exactly `rows`, changing only what changed."""
        incoming = {self._key(r): r for r in rows}
        self._remove_missing(incoming)
        changed: list[int] = []
        blocked = self.blockSignals(True)  # one dataChanged below, not one per cell
        try:
            for i, old in enumerate(self._rows):
                new = incoming.pop(self._key(old))
                if new != old:
                    self._rows[i] = new  # the details dialog reads the newest row
                    cells = self._cells_of(new)
                    if cells != self._cells[i]:
                        self._set_cells(i, new, cells, self._cells[i])
                        self._cells[i] = cells
                        changed.append(i)
        finally:
            self.blockSignals(blocked)
        if changed:
            # One signal spanning the changed rows: the proxy re-sorts once, not per row.
            self.dataChanged.emit(self.index(changed[0], 0),
                                  self.index(changed[-1], len(self._columns) - 1))
        for key, row in incoming.items():
            cells = self._cells_of(row)
            self._rows.append(row)
            self._cells.append(cells)
            self._position[key] = len(self._rows) - 1
            self.appendRow(self._new_items(key, row, cells))
        if incoming:
            self.rows_added.emit()

    def _new_items(self, key: Hashable, row: RowT, cells: Cells) -> list[QStandardItem]:
        tooltip = self.row_tooltip(row)
        items = []
        for text, value, alignment in zip(cells[0], cells[1], self._alignment, strict=True):
            item = QStandardItem(text)
            item.setFlags(_CELL_FLAGS)
            item.setTextAlignment(alignment)
            item.setData(value, SORT_ROLE)
            item.setData(key, KEY_ROLE)
            if tooltip is not None:
                item.setToolTip(tooltip)
            items.append(item)
        return items

    def _set_cells(self, i: int, row: RowT, cells: Cells, old: Cells) -> None:
        tooltip = self.row_tooltip(row)
        if tooltip is not None and tooltip == self.item(i, 0).toolTip():
            tooltip = None
        for column, (text, value, old_text, old_value) in enumerate(zip(cells[0], cells[1], old[0], old[1],
                                                                          strict=True)):
            item = self.item(i, column)
            if text != old_text:
                item.setText(text)
            if value != old_value:
                item.setData(value, SORT_ROLE)
            if tooltip is not None:
                item.setToolTip(tooltip)

    def _remove_missing(self, incoming: dict[Hashable, RowT]) -> None:
        # Remove from the bottom up in contiguous blocks so the indices above stay valid.
        gone = [i for i, r in enumerate(self._rows) if self._key(r) not in incoming]
        while gone:
            last = gone.pop()
            first = last
            while gone and gone[-1] == first - 1:
                first = gone.pop()
            del self._rows[first:last + 1]
            del self._cells[first:last + 1]
            self._reindex()
            self.removeRows(first, last - first + 1)

    def _reindex(self) -> None:
        self._position = {self._key(r): i for i, r in enumerate(self._rows)}

    def row_of(self, key: Hashable) -> int | None:
        return self._position.get(key)


# The states in words a reader scans: the rare closing states summed, a listener said so.
STATE_WORDS: dict[str, str] = {
    "ESTABLISHED": "{n} open", "TIME_WAIT": "{n} TIME_WAIT", "CLOSE_WAIT": "{n} CLOSE_WAIT",
    "SYN_SENT": "{n} connecting", "SYN_RECV": "{n} being accepted", "FIN_WAIT1": "{n} closing",
    "FIN_WAIT2": "{n} closing", "CLOSING": "{n} closing", "LAST_ACK": "{n} closing", "BOUND": "{n} bound",
}


def compact_states(states: dict[str, int] | Any) -> str:
    """'1,200 TIME_WAIT · 3 open · listening on 1 port', biggest first."""
    counts: dict[str, int] = {}
    for state, n in states.items():
        if n and state != "LISTEN":
            words = STATE_WORDS.get(state, f"{{n}} {state}")
            counts[words] = counts.get(words, 0) + n
    parts = [words.format(n=f"{n:,}") for words, n in sorted(counts.items(), key=lambda item: -item[1])]
    listening = states.get("LISTEN", 0)
    if listening:
        parts.append(f"listening on {listening} port{'' if listening == 1 else 's'}")
    return " · ".join(parts)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def process_name_text(p: ProcessRow) -> str:
    """'check_tcp ×1,234, started by moneng (pid 812)' for a group of short-lived
    processes; 'curl (exited)' for one that ended while its TIME_WAIT lives."""
    if p.instances > 1:
        parent = f", started by {p.parent.name} (pid {p.parent.pid})" if p.parent is not None else ""
        return f"{p.name} ×{p.instances:,}{parent}"
    return f"{p.name} (exited)" if p.exited and not p.name.startswith("(exited") else p.name


PROCESS_COLUMNS: tuple[Column[ProcessRow], ...] = (
    Column("PID", lambda p: p.pid, tooltip="Process id"),
    Column("Name", process_name_text, numeric=False),
    Column("Sockets", lambda p: p.connections + p.time_wait,
           tooltip="Connections it holds plus the TIME_WAIT sockets attributed to it (listening ports "
                   "are not counted: they hold no dynamic port)", counts=True),
    Column("Conns", lambda p: p.connections,
           tooltip="Sockets it owns right now, any state but TIME_WAIT and LISTEN", counts=True),
    Column("TIME_WAIT", lambda p: p.time_wait, tooltip="Exact plus inferred", counts=True),
    Column("exact", lambda p: p.time_wait_exact, counts=True,
           tooltip="TIME_WAIT whose 4-tuple was seen owned by this process, or named by a kernel event"),
    Column("inferred", lambda p: p.time_wait_inferred, counts=True,
           tooltip="TIME_WAIT toward the endpoints this process talks to (or on its listening port)"),
    Column("New/s", lambda p: p.opens_per_s, lambda p: _rate(p.opens_per_s),
           tooltip="New outbound connections (or attempts) per second"),
    Column("States", lambda p: compact_states(p.states), numeric=False,
           tooltip="Its sockets by state: open (ESTABLISHED), TIME_WAIT, CLOSE_WAIT (the peer closed, "
                   "this program did not), connecting (SYN_SENT), closing (FIN_WAIT, CLOSING, LAST_ACK), "
                   "listening (a server port, never a dynamic one)"),
)
PROCESS_SOCKETS_COLUMN = 2

REMOTE_COLUMNS: tuple[Column[RemoteRow], ...] = (
    Column("Address", lambda r: r.address, numeric=False),
    Column("Port", lambda r: r.port),
    Column("Connections", lambda r: r.connections, counts=True,
           tooltip="All sockets toward it, TIME_WAIT included"),
    Column("TIME_WAIT", lambda r: r.time_wait, counts=True),
)
REMOTE_CONNECTIONS_COLUMN = 2


class ProcessTableModel(KeyedTableModel[ProcessRow]):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(PROCESS_COLUMNS, lambda p: p.pid, parent)

    def row_tooltip(self, row: ProcessRow) -> str | None:
        states = ", ".join(f"{s} {row.states[s]}" for s in STATE_NAMES if row.states.get(s))
        return (f"{row.name} (pid {row.pid})\n{states or 'no sockets'}\n"
                "Double-click for its path, user, command line and remote endpoints.")


class RemoteTableModel(KeyedTableModel[RemoteRow]):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(REMOTE_COLUMNS, lambda r: (r.address, r.port), parent)


class TableFilterProxy(QSortFilterProxyModel):
    """Sorts on raw values and filters on any column's text, case-insensitively (all in
    Qt's C++: the source is a QStandardItemModel)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)

    def set_filter_text(self, text: str) -> None:
        self.setFilterRegularExpression(QRegularExpression(
            QRegularExpression.escape(text.strip()),
            QRegularExpression.PatternOption.CaseInsensitiveOption))
