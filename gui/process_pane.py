"""The tables under the plot: top processes (with a filter and the details dialog on
double-click) and the remote endpoints, each with its caption. Both show the sample on
screen (a gui.session.Session's `shown`)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from core.model import Sample
from gui.keyboard import EnterOpens
from gui.process_dialog import ProcessDialog
from gui.table_models import (
    PROCESS_SOCKETS_COLUMN,
    REMOTE_CONNECTIONS_COLUMN,
    KeyedTableModel,
    ProcessTableModel,
    RemoteTableModel,
    TableFilterProxy,
)

WAITING = "Waiting for the first sample…"


def table_view(proxy: TableFilterProxy, sort_column: int) -> QTableView:
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
    source = proxy.sourceModel()
    if isinstance(source, KeyedTableModel):
        source.rows_added.connect(lambda: _widen_columns(view))
    return view


def _widen_columns(view: QTableView) -> None:
    header = view.horizontalHeader()
    for column in range(header.count() - 1):  # the last one stretches
        needed = max(view.sizeHintForColumn(column), header.sectionSizeHint(column))
        if header.sectionSize(column) < needed:
            header.resizeSection(column, needed)


class ProcessPane(QWidget):
    dialog_opened = Signal(object)  # ProcessDialog

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sample: Sample | None = None
        self.dialogs: list[ProcessDialog] = []
        self.process_model = ProcessTableModel(self)
        self.process_proxy = TableFilterProxy(self)
        self.process_proxy.setSourceModel(self.process_model)
        self.process_view = table_view(self.process_proxy, PROCESS_SOCKETS_COLUMN)
        self.process_view.doubleClicked.connect(self.open_details)
        self.enter_opens = EnterOpens(self.process_view, self.open_details)
        self.process_view.setToolTip("Double-click a process (or press Enter) for its path, user, command "
                                     "line and endpoints")
        self.process_view.horizontalHeader().resizeSection(1, 150)
        self.filter_box = QLineEdit()
        self.filter_box.setPlaceholderText("Filter processes by pid, name or state (Ctrl+F)")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self._filter_changed)
        self.process_caption = QLabel(WAITING)
        self.process_caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Top processes</b> (busiest first; TIME_WAIT attributed exactly or by inference)")
        title.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self.filter_box)
        layout.addWidget(self.process_view, 1)
        layout.addWidget(self.process_caption)

    def show_sample(self, sample: Sample) -> None:
        self.sample = sample
        self.process_model.update(sample.processes)
        self._update_caption()

    def clear(self) -> None:
        self.sample = None
        self.process_model.update(())
        self.process_caption.setText(WAITING)

    def _update_caption(self) -> None:
        sample = self.sample
        if sample is None:
            return
        shown, total = self.process_proxy.rowCount(), self.process_model.rowCount()
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

    def _filter_changed(self, text: str) -> None:
        self.process_proxy.set_filter_text(text)
        self._update_caption()

    def focus_filter(self) -> None:
        self.filter_box.setFocus()
        self.filter_box.selectAll()

    def open_details(self, index: QModelIndex) -> ProcessDialog | None:
        source = self.process_proxy.mapToSource(index)
        if not source.isValid():
            return None
        dialog = ProcessDialog(self.process_model.row_at(source.row()), self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda _obj=None, d=dialog: self._forget(d))
        self.dialogs.append(dialog)
        dialog.show()
        self.dialog_opened.emit(dialog)
        return dialog

    def _forget(self, dialog: QObject) -> None:
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)  # type: ignore[arg-type]

    def close_dialogs(self) -> None:
        for dialog in list(self.dialogs):
            dialog.close()


class RemotePane(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.remote_model = RemoteTableModel(self)
        self.remote_proxy = TableFilterProxy(self)
        self.remote_proxy.setSourceModel(self.remote_model)
        self.remote_view = table_view(self.remote_proxy, REMOTE_CONNECTIONS_COLUMN)
        self.remote_caption = QLabel(WAITING)
        self.remote_caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.remote_view, 1)
        layout.addWidget(self.remote_caption)

    def show_sample(self, sample: Sample) -> None:
        self.remote_model.update(sample.remotes)
        remotes = self.remote_model.rowCount()
        self.remote_caption.setText(
            f"{remotes} remote endpoint{'' if remotes == 1 else 's'} this host connects to" if remotes else
            "No outbound connections right now.")

    def clear(self) -> None:
        self.remote_model.update(())
        self.remote_caption.setText(WAITING)
