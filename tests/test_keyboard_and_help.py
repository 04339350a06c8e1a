"""The keyboard does what the mouse does: Enter on a process row opens its details (and
View > Process details does too); Return in the Apply dialog presses the focused button and
otherwise Cancel. Help > Reading this window explains the window offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog

from core.tuning.base import Plan
from gui.help_page import PAGE, HelpAction
from gui.main_window import MainWindow
from gui.process_dialog import ProcessDialog
from gui.settings_panel import ApplyDialog
from tests.support.windows import worst_case_window

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path: Path) -> MainWindow:
    return worst_case_window(qtbot, tmp_path)


def menu_actions(window: MainWindow, title: str) -> dict[str, object]:
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == title)
    return {a.text(): a for a in menu.actions() if a.text()}


def open_dialogs(window: MainWindow) -> list[ProcessDialog]:
    return [d for d in window.findChildren(ProcessDialog) if d.isVisible()]


def test_enter_on_a_process_row_opens_its_details(qtbot, window: MainWindow) -> None:
    view = window.processes.process_view
    view.setFocus()
    view.setCurrentIndex(window.processes.process_proxy.index(1, 0))
    pid = window.processes.process_proxy.index(1, 0).data()
    QTest.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(open_dialogs(window)) == 1, timeout=3000)
    assert str(pid) in open_dialogs(window)[0].windowTitle()


def test_the_menu_item_opens_the_selected_process_or_says_what_to_do(qtbot, window: MainWindow) -> None:
    details = menu_actions(window, "&View")["Process &details…"]
    window.processes.process_view.setCurrentIndex(window.processes.process_proxy.index(-1, -1))
    details.trigger()
    assert not open_dialogs(window)
    assert "select a process" in window.statusBar().currentMessage()
    window.processes.process_view.setCurrentIndex(window.processes.process_proxy.index(0, 0))
    details.trigger()
    qtbot.waitUntil(lambda: len(open_dialogs(window)) == 1, timeout=3000)


def plan() -> Plan:
    return Plan(setting="net.ipv4.tcp_tw_reuse", location="/proc/sys/net/ipv4/tcp_tw_reuse", old_value=0,
                new_value=1, unit="", needs_reboot=False, backup_dir=Path("/tmp/backups"),
                steps=("back up", "write 1", "read back"))


@pytest.mark.parametrize(("focus", "expected"), [("ok_button", QDialog.DialogCode.Accepted),
                                                 ("cancel_button", QDialog.DialogCode.Rejected),
                                                 ("confirm", QDialog.DialogCode.Rejected)])
def test_return_in_the_apply_dialog_does_what_the_focused_button_says(qtbot, focus, expected) -> None:
    dialog = ApplyDialog(plan())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.confirm.setChecked(True)  # Apply is enabled only once ticked
    assert dialog.ok_button.isEnabled() and dialog.ok_button.text() == "Apply"
    target = getattr(dialog, focus)
    target.setFocus()
    qtbot.waitUntil(target.hasFocus, timeout=3000)
    QTest.keyClick(target, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=3000)
    assert dialog.result() == expected


def test_help_reading_this_window_is_offline_and_covers_every_verdict(qtbot, window: MainWindow) -> None:
    action = menu_actions(window, "&Help")["&Reading this window"]
    assert isinstance(action, HelpAction) and action.shortcut().toString() == "F1"
    dialog = action.show_page()
    qtbot.waitExposed(dialog)
    text = dialog.browser.toPlainText()
    for words in ("The verdict banner", "The gauge", "The plot", "Top processes", "Remote endpoints",
                  "Outbound test", "OS settings", "The status bar", "OK", "WARNING", "CRITICAL",
                  "CLOSE_WAIT", "Save evidence"):
        assert words in text, words
    assert not re.search(r"https?:|<img|<a |src=", PAGE)  # nothing to fetch or follow
    assert not dialog.browser.openLinks()
