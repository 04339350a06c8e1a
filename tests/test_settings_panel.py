"""The Settings panel walked with pytest-qt. Qt cannot run inside a forked namespace
child comfortably, so the Linux backend here points at a stand-in /proc/sys tree in a
temporary folder (the same code path as the real files, minus the kernel's own checks,
which tests/test_tuning_linux.py covers in namespaces). The reboot reminder is walked
with the Windows backend over an in-memory registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from core.tuning.base import JSON_KEYS, TuningError
from core.tuning.linux import FIN_TIMEOUT, TW_REUSE, LinuxSysctlBackend
from core.tuning.windows import TIMED_WAIT_DELAY, WindowsTuningBackend
from core.tuning.windows_registry import InMemoryRegistry
from gui.settings_panel import CONFIRM_TEXT, SettingsPanel
from tests.test_tuning_windows import KEY, RecordedNetsh

pytestmark = pytest.mark.gui


@pytest.fixture
def proc_sys(tmp_path: Path) -> Path:
    ipv4 = tmp_path / "sys" / "net" / "ipv4"
    ipv4.mkdir(parents=True)
    (ipv4 / "ip_local_port_range").write_text("40000\t40019\n")
    (ipv4 / "tcp_tw_reuse").write_text("0\n")
    (ipv4 / "tcp_fin_timeout").write_text("60\n")
    (ipv4 / "ip_unprivileged_port_start").write_text("1024\n")
    return tmp_path / "sys"


@pytest.fixture
def panel(qtbot, proc_sys: Path, tmp_path: Path) -> SettingsPanel:
    backend = LinuxSysctlBackend(proc_sys=proc_sys, backup_dir=tmp_path / "backups", euid=lambda: 0)
    widget = SettingsPanel(backend)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: len(widget.states) == 3 and not widget.busy)
    return widget


def reuse_file(proc_sys: Path) -> str:
    return (proc_sys / "net" / "ipv4" / "tcp_tw_reuse").read_text().strip()


def open_dialog(qtbot, panel: SettingsPanel, name: str, value: str | None):
    panel.apply_dialog = None
    if value is None:
        qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    else:
        assert panel.select(name)
        panel.value_edit.setText(value)
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.apply_dialog is not None and panel.apply_dialog.isVisible())
    return panel.apply_dialog


def confirm(qtbot, dialog) -> None:
    assert not dialog.ok_button.isEnabled(), "OK must wait for the explicit confirmation"
    qtbot.mouseClick(dialog.confirm, Qt.MouseButton.LeftButton)
    assert dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)


def test_table_shows_every_setting(panel: SettingsPanel) -> None:
    names = [panel.table.item(row, 0).text() for row in range(panel.table.rowCount())]
    assert names == ["net.ipv4.ip_local_port_range", TW_REUSE, FIN_TIMEOUT]
    assert [panel.table.horizontalHeaderItem(c).text() for c in range(4)] == \
        ["Setting", "In effect", "Default", "Notes"]
    assert panel.table.item(0, 1).text() == "40000-40019" and panel.table.item(1, 2).text() == "2"
    assert [panel.table.item(2, c).text() for c in (1, 2)] == ["60 s", "60 s"]
    assert "cannot change: shown only: it does NOT shorten TIME_WAIT" in panel.table.item(2, 3).text()
    rows = panel.settings_json()
    assert [tuple(r) for r in rows] == [JSON_KEYS] * 3
    json.dumps(rows)


def test_cancel_changes_nothing(qtbot, panel: SettingsPanel, proc_sys: Path, tmp_path: Path) -> None:
    dialog = open_dialog(qtbot, panel, TW_REUSE, "1")
    assert "net.ipv4.tcp_tw_reuse: 0 -> 1" in dialog.plan_text.toPlainText()
    assert str(tmp_path / "backups") in dialog.backup_label.text()
    assert "No reboot needed" in dialog.reboot_label.text()
    assert dialog.confirm.text() == CONFIRM_TEXT
    assert dialog.cancel_button.isDefault() and not dialog.ok_button.isEnabled()
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert "nothing was changed" in panel.status.text()
    assert reuse_file(proc_sys) == "0"
    assert not (tmp_path / "backups").exists()


def test_confirm_writes_and_shows_the_backup_then_undo_restores(qtbot, panel: SettingsPanel,
                                                                  proc_sys: Path, tmp_path: Path) -> None:
    with qtbot.waitSignal(panel.change_applied, timeout=10_000) as applied:
        confirm(qtbot, open_dialog(qtbot, panel, TW_REUSE, "1"))
    backup = applied.args[0].backup
    assert reuse_file(proc_sys) == "1"
    assert backup.parent == tmp_path / "backups" and backup.is_file()
    assert f"Backup: {backup}" in panel.status.text()
    qtbot.waitUntil(lambda: str(backup) in panel.backup_label.text())
    assert panel.table.item(1, 1).text() == "1"

    undo = open_dialog(qtbot, panel, TW_REUSE, None)
    assert undo.plan.reverts == backup and undo.ok_button.text() == "Undo"
    assert "net.ipv4.tcp_tw_reuse: 1 -> 0" in undo.plan_text.toPlainText()
    with qtbot.waitSignal(panel.change_applied, timeout=10_000):
        confirm(qtbot, undo)
    assert reuse_file(proc_sys) == "0"
    qtbot.waitUntil(lambda: panel.table.item(1, 1).text() == "0")


def test_bad_value_is_an_error_line_not_a_dialog(qtbot, panel: SettingsPanel, proc_sys: Path) -> None:
    assert panel.select(TW_REUSE)
    panel.value_edit.setText("3")
    with qtbot.waitSignal(panel.failed, timeout=10_000) as failed:
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert "is not one of 0 (off), 1 (on), 2 (loopback only)" in failed.args[0]
    assert failed.args[0] in panel.status.text()
    assert panel.apply_dialog is None and reuse_file(proc_sys) == "0"


def test_a_read_only_setting_cannot_be_applied(qtbot, panel: SettingsPanel) -> None:
    assert panel.select(FIN_TIMEOUT)
    assert not panel.apply_button.isEnabled()
    assert "does NOT shorten TIME_WAIT" in panel.details.text()
    assert not panel.undo_button.isEnabled()  # no backup yet


class BrokenBackend(LinuxSysctlBackend):
    def read_all(self):
        raise OSError(5, "Input/output error")


def test_failures_are_shown_in_the_panel(qtbot, proc_sys: Path, tmp_path: Path) -> None:
    broken = SettingsPanel(BrokenBackend(proc_sys=proc_sys, backup_dir=tmp_path / "b", euid=lambda: 0))
    qtbot.addWidget(broken)
    qtbot.waitUntil(lambda: "Input/output error" in broken.status.text())

    def no_backend():
        raise TuningError("no OS settings known for plan9: only Linux and Windows")

    none = SettingsPanel(make_backend=no_backend)
    qtbot.addWidget(none)
    qtbot.waitUntil(lambda: "plan9" in none.status.text())
    assert none.states == () and not none.apply_button.isEnabled()


def test_reboot_pending_is_signalled_and_cleared(qtbot, tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    backend = WindowsTuningBackend(registry, RecordedNetsh(), (10, 0, 17763), admin=lambda: True,
                                   read_auto_reuse=lambda: "", backup_dir=tmp_path / "backups",
                                   current_boot=lambda: 1_700_000_000.0)
    panel = SettingsPanel(backend)
    qtbot.addWidget(panel)
    qtbot.waitUntil(lambda: len(panel.states) == 5 and not panel.busy)
    with qtbot.waitSignal(panel.reboot_pending, timeout=10_000) as pending:
        dialog = open_dialog(qtbot, panel, TIMED_WAIT_DELAY, "30")
        assert "A reboot is required" in dialog.reboot_label.text()
        confirm(qtbot, dialog)
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") == 30
    assert "TcpTimedWaitDelay is set to 30 s, but 120 s stays in effect" in pending.args[0]
    with qtbot.waitSignal(panel.reboot_pending, timeout=10_000) as cleared:
        confirm(qtbot, open_dialog(qtbot, panel, TIMED_WAIT_DELAY, None))
    assert cleared.args[0] == ""
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") is None
