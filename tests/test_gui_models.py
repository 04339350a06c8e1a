"""Table models: Qt's model rules (qtmodeltester), in-place updates keyed by pid,
selection surviving updates and re-sorting, the filter, and the plot buffer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt

from core.model import ProcessRow, RemoteRow
from gui.plot_buffer import PlotBuffer
from gui.table_models import (
    KEY_ROLE,
    PROCESS_SOCKETS_COLUMN,
    ProcessTableModel,
    RemoteTableModel,
    TableFilterProxy,
    compact_states,
)

pytestmark = pytest.mark.gui


def proc(pid: int, name: str, tw: int = 0, conns: int = 0, rate: float = 0.0) -> ProcessRow:
    states = {"ESTABLISHED": conns} if conns else {}
    if tw:
        states["TIME_WAIT"] = tw
    return ProcessRow(pid=pid, name=name, connections=conns, time_wait=tw, time_wait_exact=tw // 2,
                      time_wait_inferred=tw - tw // 2, opens_per_s=rate, states=states)


class Recorder:
    """Counts the structural signals a model emits."""

    def __init__(self, model: ProcessTableModel) -> None:
        self.events: list[str] = []
        model.modelReset.connect(lambda: self.events.append("reset"))
        model.rowsInserted.connect(lambda *_: self.events.append("insert"))
        model.rowsRemoved.connect(lambda *_: self.events.append("remove"))
        model.dataChanged.connect(lambda *_: self.events.append("changed"))


def test_process_model_passes_qtmodeltester(qtmodeltester) -> None:
    model = ProcessTableModel()
    model.update([proc(10, "curl", tw=50), proc(20, "java", conns=3), proc(30, "nginx")])
    qtmodeltester.check(model, force_py=True)
    # The tester stays connected: it checks every insert, removal and change below.
    model.update([proc(20, "java", conns=4), proc(40, "new", tw=1)])
    model.update([proc(50, "a"), proc(20, "java", conns=4), proc(60, "b"), proc(70, "c")])
    model.update([])
    model.update([proc(80, "again", tw=3)])
    assert [r.pid for r in model.rows()] == [80]


def test_remote_model_passes_qtmodeltester(qtmodeltester) -> None:
    model = RemoteTableModel()
    model.update([RemoteRow("127.0.0.1", 9000, 50, 49), RemoteRow("::1", 443, 2, 0)])
    qtmodeltester.check(model, force_py=True)
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    qtmodeltester.check(proxy, force_py=True)


def test_rows_update_in_place_without_reset() -> None:
    model = ProcessTableModel()
    model.update([proc(10, "curl", tw=5), proc(20, "java"), proc(30, "nginx")])
    events = Recorder(model)
    model.update([proc(10, "curl", tw=9), proc(20, "java"), proc(30, "nginx")])
    assert events.events == ["changed"]
    assert model.data(model.index(model.row_of(10), 4)) == "9"
    events.events.clear()
    model.update([proc(30, "nginx"), proc(40, "wget", tw=2)])  # 10 and 20 gone, 40 new
    assert "reset" not in events.events
    assert events.events.count("remove") == 1  # rows 0-1 are one contiguous block
    assert events.events.count("insert") == 1
    assert sorted(r.pid for r in model.rows()) == [30, 40]
    events.events.clear()
    model.update([proc(30, "nginx"), proc(40, "wget", tw=2)])
    assert events.events == []  # nothing changed: nothing emitted


def test_new_rows_are_announced_once_an_update() -> None:
    """The view widens its columns on rows_added: once an update however many rows came,
    never for an update that only changed or removed rows."""
    model = ProcessTableModel()
    added: list[int] = []
    model.rows_added.connect(lambda: added.append(model.rowCount()))
    model.update([proc(10, "curl", tw=5), proc(20, "java"), proc(30, "nginx")])
    assert added == [3]
    model.update([proc(10, "curl", tw=6), proc(30, "nginx")])
    assert added == [3]
    model.update([proc(10, "curl", tw=6), proc(40, "wget"), proc(50, "ssh")])
    assert added == [3, 3]
    assert [model.data(model.index(r, 1)) for r in range(3)] == ["curl", "wget", "ssh"]


def test_a_change_the_table_does_not_show_repaints_nothing_but_is_kept() -> None:
    """ProcessRow.time_wait_toward is shown in the details dialog, not in a cell: no
    dataChanged (no repaint), yet the dialog opened next reads the newest row."""
    model = ProcessTableModel()
    model.update([proc(10, "curl", tw=5)])
    events = Recorder(model)
    newer = dataclasses.replace(proc(10, "curl", tw=5), time_wait_toward={"127.0.0.1:9000": 5})
    model.update([newer])
    assert events.events == []
    assert model.row_at(model.row_of(10)).time_wait_toward == {"127.0.0.1:9000": 5}


def test_painted_cells_come_through_the_proxy(qtbot) -> None:
    """What a delegate paints (text, alignment) comes through the proxy sorted and
    filtered like data(); the key and the row's tooltip are answered too."""
    from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

    model = ProcessTableModel()
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    model.update([proc(10, "curl", tw=50), proc(20, "java", conns=3)])
    proxy.sort(PROCESS_SOCKETS_COLUMN, Qt.SortOrder.AscendingOrder)  # java (3) above curl (50)
    delegate = QStyledItemDelegate()
    shown = []
    for row in range(proxy.rowCount()):
        for column in (0, 1):
            option = QStyleOptionViewItem()
            delegate.initStyleOption(option, proxy.index(row, column))
            shown.append((option.text, bool(option.displayAlignment & Qt.AlignmentFlag.AlignRight)))
    assert shown == [("20", True), ("java", False), ("10", True), ("curl", False)]
    assert proxy.data(proxy.index(0, 0), KEY_ROLE) == 20
    assert "java (pid 20)" in proxy.data(proxy.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    model.update([proc(10, "curl", tw=50), proc(20, "java", conns=300)])  # re-sorted
    option = QStyleOptionViewItem()
    delegate.initStyleOption(option, proxy.index(0, 1))
    assert option.text == "curl"


def test_selection_survives_updates_and_resorting(qtbot) -> None:
    from PySide6.QtWidgets import QTableView

    model = ProcessTableModel()
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(PROCESS_SOCKETS_COLUMN, Qt.SortOrder.DescendingOrder)
    model.update([proc(10, "curl", tw=50), proc(20, "java", conns=3), proc(30, "nginx", conns=1)])
    assert proxy.data(proxy.index(0, 0), KEY_ROLE) == 10
    java = next(r for r in range(proxy.rowCount()) if proxy.data(proxy.index(r, 0), KEY_ROLE) == 20)
    view.selectionModel().select(proxy.index(java, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect
                                 | QItemSelectionModel.SelectionFlag.Rows)
    # java becomes the busiest; curl vanishes; a new process arrives.
    model.update([proc(20, "java", conns=500), proc(30, "nginx", conns=1), proc(40, "wget", tw=7)])
    selected = view.selectionModel().selectedRows()
    assert [proxy.data(i, KEY_ROLE) for i in selected] == [20]
    assert proxy.data(proxy.index(0, 0), KEY_ROLE) == 20  # re-sorted: java on top
    assert [proxy.data(proxy.index(r, 0), KEY_ROLE) for r in range(proxy.rowCount())] == [20, 40, 30]


def test_filter_matches_any_column_case_insensitively() -> None:
    model = ProcessTableModel()
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    model.update([proc(10, "curl", tw=50), proc(20, "Java", conns=3), proc(30, "nginx")])
    proxy.set_filter_text("JAVA")
    assert proxy.rowCount() == 1
    proxy.set_filter_text("50 time_wait")  # the states column, in words
    assert proxy.rowCount() == 1 and proxy.data(proxy.index(0, 0), KEY_ROLE) == 10
    proxy.set_filter_text("(")  # regex characters are taken literally
    assert proxy.rowCount() == 0
    proxy.set_filter_text("")
    assert proxy.rowCount() == 3


def test_numbers_sort_as_numbers() -> None:
    model = ProcessTableModel()
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    model.update([proc(9, "a", tw=9), proc(10, "b", tw=10), proc(100, "c", tw=100)])
    proxy.sort(0, Qt.SortOrder.AscendingOrder)
    assert [proxy.data(proxy.index(r, 0)) for r in range(3)] == ["9", "10", "100"]


def test_counts_read_with_thousands_separators_ids_and_ports_without() -> None:
    model = ProcessTableModel()
    proxy = TableFilterProxy()
    proxy.setSourceModel(model)
    model.update([proc(12345, "java", tw=10_002, conns=999), proc(7, "curl", tw=20_000, rate=1234.4)])
    java = model.row_of(12345)
    shown = [model.data(model.index(java, c)) for c in range(5)]
    assert shown == ["12345", "java", "11,001", "999", "10,002"]
    assert model.data(model.index(model.row_of(7), 7)) == "1,234"  # New/s
    proxy.sort(PROCESS_SOCKETS_COLUMN, Qt.SortOrder.DescendingOrder)  # still by number, not by text
    assert [proxy.data(proxy.index(r, 0)) for r in range(2)] == ["7", "12345"]
    proxy.set_filter_text("10,002")  # what the table shows is what the filter finds
    assert proxy.rowCount() == 1
    remotes = RemoteTableModel()
    remotes.update([RemoteRow("127.0.0.1", 30011, 1234, 1200)])
    assert [remotes.data(remotes.index(0, c)) for c in range(4)] == ["127.0.0.1", "30011", "1,234", "1,200"]


def test_invalid_indexes_give_nothing() -> None:
    model = ProcessTableModel()
    assert model.data(QModelIndex()) is None
    assert model.rowCount(model.index(0, 0)) == 0
    assert model.headerData(99, Qt.Orientation.Horizontal) is None
    assert model.flags(QModelIndex()) == Qt.ItemFlag.NoItemFlags


def test_rows_are_selectable_leaves_and_headers_say_what_columns_hold() -> None:
    model = ProcessTableModel()
    model.update([proc(10, "curl", tw=5)])
    flags = model.flags(model.index(0, 0))
    for flag in (Qt.ItemFlag.ItemIsEnabled, Qt.ItemFlag.ItemIsSelectable, Qt.ItemFlag.ItemNeverHasChildren):
        assert flags & flag
    assert not flags & Qt.ItemFlag.ItemIsEditable
    assert model.headerData(4, Qt.Orientation.Horizontal) == "TIME_WAIT"
    tooltip = Qt.ItemDataRole.ToolTipRole
    assert model.headerData(4, Qt.Orientation.Horizontal, tooltip) == "Exact plus inferred"
    assert model.headerData(1, Qt.Orientation.Horizontal, tooltip) is None
    assert model.headerData(0, Qt.Orientation.Vertical) is None


def test_compact_states_biggest_first() -> None:
    assert compact_states({"ESTABLISHED": 3, "TIME_WAIT": 1200, "CLOSE_WAIT": 0}) == \
        "1,200 TIME_WAIT · 3 open"
    assert compact_states({"LISTEN": 1}) == "listening on 1 port"
    assert compact_states({"FIN_WAIT1": 2, "LAST_ACK": 1, "ESTABLISHED": 2, "LISTEN": 2}) == \
        "3 closing · 2 open · listening on 2 ports"
    assert compact_states({}) == ""


def test_plot_buffer_keeps_the_newest_rows_in_order() -> None:
    buffer = PlotBuffer(columns=2, capacity=10, slack=3)
    for i in range(37):
        buffer.append(float(i), [i, -i])
        assert len(buffer) == min(i + 1, 10)
        assert buffer.times[-1] == i
    assert buffer.times.tolist() == [float(i) for i in range(27, 37)]
    assert np.array_equal(buffer.column(1), -np.arange(27, 37, dtype=float))
    assert buffer.nearest(30.4) == 3 and buffer.nearest(30.6) == 4
    assert buffer.nearest(-5) == 0 and buffer.nearest(1e9) == 9


def test_grouped_short_lived_processes_read_as_program_count_and_parent() -> None:
    from dataclasses import replace

    from core.model import ParentProcess
    from gui.table_models import process_name_text

    group = replace(proc(900, "check_tcp", tw=1500), instances=1234, exited=True,
                    parent=ParentProcess(812, "moneng"))
    assert process_name_text(group) == "check_tcp ×1,234, started by moneng (pid 812)"
    assert process_name_text(replace(proc(5, "curl", tw=3), exited=True)) == "curl (exited)"
    model = ProcessTableModel()
    model.update([group])
    assert model.data(model.index(0, 1)) == "check_tcp ×1,234, started by moneng (pid 812)"
