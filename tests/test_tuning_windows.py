"""The Windows settings logic, on Linux: an in-memory registry, netsh answering with
recorded output (tests/test_windows_source.py's captures of Windows Server 2019), a
fake elevator that runs the real `portpressure tune` command line as the elevated child
would, and the pure helpers (relaunch command line, Get-NetTCPSetting parsing).
What is NOT run here: winreg, netsh.exe, PowerShell, CheckTokenMembership, ShellExecuteExW."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from core import cli
from core.commands import tune as tune_command
from core.sources.windows import WindowsPortConfig, windows_version
from core.tuning import pending_reboot_reminder
from core.tuning.backups import load_backup
from core.tuning.base import JSON_KEYS, TuningError, TuningInputError, TuningPermissionError, VerifyMismatch
from core.tuning.windows import (
    AUTO_REUSE_PORT_RANGE,
    DYNAMIC_PORT_RANGE,
    EXCLUDED_PORT_RANGES,
    MAX_USER_PORT,
    TIMED_WAIT_DELAY,
    WindowsTuningBackend,
)
from core.tuning.windows_commands import parse_auto_reuse
from core.tuning.windows_elevation import (
    PYINSTALLER_RESET,
    ChildResult,
    _environment,
    read_child_result,
    relaunch_command,
)
from core.tuning.windows_registry import InMemoryRegistry
from tests.test_windows_source import DYNAMIC_2019, EXCLUDED_2019, EXCLUDED_NONE

KEY = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
SERVER_2019 = (10, 0, 17763)
SERVER_2012_R2 = (6, 3, 9600)
SERVER_2008_R2 = (6, 1, 7601)
SERVER_2003 = (5, 2, 3790)
BOOT = 1_700_000_000.0
ELEVATION_REFUSED = ("netsh interface ipv4 set dynamicport tcp exited with status 1: "
                     "The requested operation requires elevation (Run as administrator).")

# Get-NetTCPSetting | Select-Object ... | ConvertTo-Json -Compress, as documented (not captured
# from a machine): the Automatic template carries no values, the others do.
AUTO_REUSE_ON = ('[{"SettingName":"Automatic","AutoReusePortRangeStartPort":null,'
                 '"AutoReusePortRangeNumberOfPorts":null},{"SettingName":"InternetCustom",'
                 '"AutoReusePortRangeStartPort":40000,"AutoReusePortRangeNumberOfPorts":1000},'
                 '{"SettingName":"DatacenterCustom","AutoReusePortRangeStartPort":40000,'
                 '"AutoReusePortRangeNumberOfPorts":1000}]')
AUTO_REUSE_OFF = ('[{"SettingName":"InternetCustom","AutoReusePortRangeStartPort":0,'
                  '"AutoReusePortRangeNumberOfPorts":0}]')
AUTO_REUSE_MISSING = '{"SettingName":"Internet","AutoReusePortRangeStartPort":null,' \
                     '"AutoReusePortRangeNumberOfPorts":null}'


class RecordedNetsh:
    """netsh as recorded on Server 2019; `set dynamicport` changes what `show` answers,
    and fails like netsh.exe does without Administrator rights."""

    def __init__(self, start: int = 49152, count: int = 16384, excluded: str = EXCLUDED_2019,
                 elevated: bool = True, refuse_set: str | None = None) -> None:
        self.start, self.count = start, count
        self.excluded = excluded
        self.elevated = elevated
        self.refuse_set = refuse_set
        self.calls: list[tuple[str, ...]] = []

    def run(self, args: Sequence[str]) -> str:
        args = tuple(args)
        self.calls.append(args)
        if args[:2] == ("interface", "ipv4") and args[2:5] == ("show", "dynamicport", "tcp"):
            return DYNAMIC_2019.replace("49152", str(self.start)).replace("16384", str(self.count))
        if args[:2] == ("interface", "ipv6") and args[2:5] == ("show", "dynamicport", "tcp"):
            return DYNAMIC_2019
        if args[2:4] == ("show", "excludedportrange"):
            return self.excluded
        if args[2:5] == ("set", "dynamicport", "tcp"):
            if not self.elevated:
                raise OSError(ELEVATION_REFUSED)
            if self.refuse_set:
                raise OSError(f"netsh {' '.join(args)} exited with status 1: {self.refuse_set}")
            self.start = int(args[5].removeprefix("start="))
            self.count = int(args[6].removeprefix("num="))
            return "Ok.\r\n\r\n"
        raise OSError(f"netsh {' '.join(args)}: not recorded")


def backend(tmp_path: Path, registry: InMemoryRegistry | None = None, *, version=SERVER_2019,
            admin: bool = True, netsh: RecordedNetsh | None = None, elevator=None,
            boot: list[float] | None = None, auto_reuse: str = AUTO_REUSE_OFF,
            allow_elevation: bool = True) -> WindowsTuningBackend:
    boot = boot if boot is not None else [BOOT]
    return WindowsTuningBackend(
        registry if registry is not None else InMemoryRegistry(), netsh or RecordedNetsh(), version,
        admin=lambda: admin, elevator=elevator, read_auto_reuse=lambda: auto_reuse,
        backup_dir=tmp_path / "backups", allow_elevation=allow_elevation, current_boot=lambda: boot[0])


# -- TcpTimedWaitDelay: ranges by version, absent value ------------------------------------------
@pytest.mark.parametrize(("version", "low", "default", "era"), [
    (SERVER_2019, 2, 120, "Vista / Server 2008 and later"),
    (SERVER_2012_R2, 2, 120, "Vista / Server 2008 and later"),
    (SERVER_2008_R2, 30, 120, "Vista / Server 2008 and later"),
    (SERVER_2003, 30, 240, "before Vista"),
])
def test_time_wait_delay_range_and_default_by_version(tmp_path: Path, version, low, default, era) -> None:
    b = backend(tmp_path, version=version)
    state = b.read(TIMED_WAIT_DELAY)
    assert state.value is None and state.default == default and state.effective == default
    assert state.needs_reboot and state.unit == "s" and state.writable
    assert state.range.startswith(f"{low}-300 s")
    expected = f"not set: Windows uses its default TIME_WAIT of {default} s ({era})"
    assert any(expected in n for n in state.notes)
    assert b.validate(TIMED_WAIT_DELAY, str(low)) == low
    assert b.validate(TIMED_WAIT_DELAY, "300") == 300
    with pytest.raises(TuningInputError, match=f"outside {low}-300"):
        b.validate(TIMED_WAIT_DELAY, str(low - 1))
    with pytest.raises(TuningInputError, match="outside"):
        b.validate(TIMED_WAIT_DELAY, "301")


@pytest.mark.parametrize("text", ["", "thirty", "30s", "-5", "3.5", "30 40"])
def test_time_wait_delay_garbage_is_one_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(TuningInputError) as caught:
        backend(tmp_path).validate(TIMED_WAIT_DELAY, text)
    assert "\n" not in str(caught.value)


# -- write, verify, reboot reminder, revert -------------------------------------------------------
def test_write_verify_reminder_reboot_and_revert(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    boot = [BOOT]
    b = backend(tmp_path, registry, boot=boot)
    plan = b.plan(TIMED_WAIT_DELAY, b.validate(TIMED_WAIT_DELAY, "30"))
    assert plan.location == rf"HKLM\{KEY}\TcpTimedWaitDelay (REG_DWORD)"
    assert (plan.old_value, plan.new_value, plan.needs_reboot, plan.elevation) == (None, 30, True, False)
    assert "REQUIRED" in plan.describe() and str(tmp_path / "backups") in plan.describe()
    applied = b.apply(plan)
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") == 30
    record = json.loads(applied.backup.read_text())
    assert record["setting"] == TIMED_WAIT_DELAY and record["old_value"] is None and record["new_value"] == 30
    assert record["host"] == socket.gethostname() and record["os"] == "Windows"
    # Stored 30, but Windows keeps 120 s until it restarts: the reminder says so.
    state = b.read(TIMED_WAIT_DELAY)
    assert (state.value, state.effective) == (30, 120)
    reminder = pending_reboot_reminder(b.read_all())
    assert reminder and "TcpTimedWaitDelay is set to 30 s, but 120 s stays in effect" in reminder
    # After a reboot (a new boot time) the stored value is the effective one.
    boot[0] = BOOT + 3600
    assert b.read(TIMED_WAIT_DELAY).effective == 30
    assert pending_reboot_reminder(b.read_all()) is None
    # Undo deletes the value again (it was absent); that too waits for a reboot.
    reverted = b.revert(applied.backup)
    assert reverted.plan.new_value is None
    assert "delete the value TcpTimedWaitDelay" in reverted.plan.describe()
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") is None
    state = b.read(TIMED_WAIT_DELAY)
    assert (state.value, state.effective) == (None, 30)
    assert "120 s, but 30 s stays in effect" in (pending_reboot_reminder([state]) or "")
    second = load_backup(reverted.backup)
    assert (second.old_value, second.new_value) == (30, None)


def test_two_changes_in_one_boot_compare_with_the_value_at_boot(tmp_path: Path) -> None:
    registry = InMemoryRegistry({(KEY, "TcpTimedWaitDelay"): 60})
    b = backend(tmp_path, registry)
    b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    b.apply(b.plan(TIMED_WAIT_DELAY, 45))
    assert b.read(TIMED_WAIT_DELAY).effective == 60
    last = b.apply(b.plan(TIMED_WAIT_DELAY, 60))  # back where it was at boot: nothing pending
    assert last.state.effective == 60
    assert pending_reboot_reminder([last.state]) is None


def test_verify_mismatch_keeps_the_backup(tmp_path: Path) -> None:
    registry = InMemoryRegistry({(KEY, "TcpTimedWaitDelay"): 240}, ignore_writes=True)
    b = backend(tmp_path, registry)
    with pytest.raises(VerifyMismatch) as caught:
        b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    message = str(caught.value)
    assert "wrote 30 but read back 240" in message and "\n" not in message
    assert caught.value.backup.is_file() and str(caught.value.backup) in message
    assert load_backup(caught.value.backup).old_value == 240


def test_wrong_registry_type_is_reported_not_overwritten(tmp_path: Path) -> None:
    registry = InMemoryRegistry({(KEY, "TcpTimedWaitDelay"): "30"})
    b = backend(tmp_path, registry)
    state = b.read(TIMED_WAIT_DELAY)
    assert not state.writable and "REG_SZ" in state.why_not
    with pytest.raises(TuningError, match="cannot read the current value"):
        b.plan(TIMED_WAIT_DELAY, 30)
    assert registry.writes == []


def test_default_deletes_the_value(tmp_path: Path) -> None:
    registry = InMemoryRegistry({(KEY, "TcpTimedWaitDelay"): 30})
    b = backend(tmp_path, registry)
    assert b.validate(TIMED_WAIT_DELAY, "Default") is None
    b.apply(b.plan(TIMED_WAIT_DELAY, None))
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") is None
    assert registry.writes == [(KEY, "TcpTimedWaitDelay", None)]


def test_revert_refuses_another_hosts_backup(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    b = backend(tmp_path, registry)
    applied = b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    record = json.loads(applied.backup.read_text())
    foreign = applied.backup.with_name("foreign.json")
    foreign.write_text(json.dumps({**record, "host": "SRV-OTHER"}))
    with pytest.raises(TuningInputError, match="SRV-OTHER"):
        b.plan_revert(foreign)
    linux = applied.backup.with_name("linux.json")
    linux.write_text(json.dumps({**record, "os": "Linux", "setting": "net.ipv4.tcp_tw_reuse"}))
    with pytest.raises(TuningInputError, match="made on Linux"):
        b.plan_revert(linux)
    with pytest.raises(TuningInputError, match="not of DynamicPortRange"):
        b.plan_revert(applied.backup, setting=DYNAMIC_PORT_RANGE)
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") == 30


# -- not elevated: the one-shot elevated child -----------------------------------------------------
class ChildElevator:
    """Stands in for ShellExecuteExW "runas": runs the real `portpressure <args>` command
    line (core.cli.main) against an elevated view of the same registry and netsh."""

    def __init__(self, registry: InMemoryRegistry, netsh: RecordedNetsh, monkeypatch: pytest.MonkeyPatch,
                 *, declined: bool = False, child_registry: InMemoryRegistry | None = None) -> None:
        self.registry, self.netsh, self.declined = registry, netsh, declined
        self.child_registry = child_registry
        self.runs: list[list[str]] = []
        self.outputs: list[tuple[int, str, str]] = []
        self._monkeypatch = monkeypatch

    def run(self, args: Sequence[str]) -> int:
        self.runs.append(list(args))
        if self.declined:
            raise TuningError("Administrator permission was declined at the Windows prompt; "
                              "nothing was changed")
        elevated_registry = self.child_registry or InMemoryRegistry()
        if self.child_registry is None:
            elevated_registry.values = self.registry.values  # the same machine, allowed to write
        elevated_netsh = RecordedNetsh(self.netsh.start, self.netsh.count)

        def make_backend(backup_dir: Path | None = None,
                         allow_elevation: bool = True) -> WindowsTuningBackend:
            assert backup_dir is not None and not allow_elevation
            return WindowsTuningBackend(elevated_registry, elevated_netsh, SERVER_2019, admin=lambda: True,
                                        elevator=None, read_auto_reuse=lambda: AUTO_REUSE_OFF,
                                        backup_dir=backup_dir, allow_elevation=False,
                                        current_boot=lambda: BOOT)

        self._monkeypatch.setattr(tune_command, "make_backend", make_backend)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except Exception:  # what python.exe does with an uncaught exception
                code = 1
        self.netsh.start, self.netsh.count = elevated_netsh.start, elevated_netsh.count
        self.outputs.append((code, out.getvalue(), err.getvalue()))
        return code


def test_not_elevated_the_write_runs_as_an_elevated_one_shot_command(tmp_path: Path, monkeypatch) -> None:
    registry = InMemoryRegistry(deny_writes=True)  # as HKLM is for a standard user
    netsh = RecordedNetsh(elevated=False)
    elevator = ChildElevator(registry, netsh, monkeypatch)
    b = backend(tmp_path, registry, admin=False, netsh=netsh, elevator=elevator)
    state = b.read(TIMED_WAIT_DELAY)
    assert state.writable and any("UAC" in n for n in state.notes)
    plan = b.plan(TIMED_WAIT_DELAY, 30)
    assert plan.elevation and "Windows will ask for permission" in plan.describe()
    applied = b.apply(plan)
    [args] = elevator.runs
    assert args[:6] == ["tune", "set", "TcpTimedWaitDelay", "30", "--yes", "--elevated-child"]
    assert args[6:8] == ["--backup-dir", str(tmp_path / "backups")] and args[8] == "--result-file"
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") == 30
    assert applied.backup.parent == tmp_path / "backups" and load_backup(applied.backup).new_value == 30
    assert applied.state.value == 30 and applied.state.effective == 120
    # The window never wrote itself: only the child did.
    assert registry.writes == []
    # Undo goes the same way, as `tune revert BACKUP --yes`.
    b.revert(applied.backup)
    assert elevator.runs[1][:4] == ["tune", "revert", str(applied.backup), "--yes"]
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") is None


def test_access_denied_although_admin_says_so_then_uses_elevation(tmp_path: Path, monkeypatch) -> None:
    registry = InMemoryRegistry(deny_writes=True)
    elevator = ChildElevator(registry, RecordedNetsh(), monkeypatch)
    b = backend(tmp_path, registry, admin=True, elevator=elevator)
    plan = b.plan(TIMED_WAIT_DELAY, 30)
    assert not plan.elevation
    applied = b.apply(plan)
    assert "access denied writing" in applied.messages[0]
    assert "retried with Administrator" in applied.messages[0]
    assert len(elevator.runs) == 1 and registry.read_dword(KEY, "TcpTimedWaitDelay") == 30
    assert [p.name for p in (tmp_path / "backups").glob("*.json")] == [applied.backup.name]


def test_access_denied_without_elevation_is_one_clear_line(tmp_path: Path) -> None:
    registry = InMemoryRegistry(deny_writes=True)
    b = backend(tmp_path, registry, admin=True, elevator=None)
    with pytest.raises(TuningPermissionError) as caught:
        b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    assert str(caught.value) == (rf"TcpTimedWaitDelay: access denied writing HKLM\{KEY}\TcpTimedWaitDelay "
                                 "(REG_DWORD) (Access is denied); nothing was changed")
    assert list((tmp_path / "backups").glob("*.json")) == []
    child = backend(tmp_path, registry, admin=False, elevator=None)
    assert not child.read(TIMED_WAIT_DELAY).writable
    with pytest.raises(TuningPermissionError, match="needs Administrator rights"):
        child.apply(child.plan(TIMED_WAIT_DELAY, 30))


def test_declined_consent_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    registry = InMemoryRegistry(deny_writes=True)
    elevator = ChildElevator(registry, RecordedNetsh(), monkeypatch, declined=True)
    b = backend(tmp_path, registry, admin=False, elevator=elevator)
    with pytest.raises(TuningError, match="declined"):
        b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    assert registry.read_dword(KEY, "TcpTimedWaitDelay") is None
    assert not (tmp_path / "backups").exists()


def test_a_failing_elevated_child_reports_its_own_error(tmp_path: Path, monkeypatch) -> None:
    registry = InMemoryRegistry()
    # The child's registry puts the old value back (a policy): it fails its verify step.
    child_registry = InMemoryRegistry(ignore_writes=True)
    child_registry.values = registry.values
    elevator = ChildElevator(registry, RecordedNetsh(), monkeypatch, child_registry=child_registry)
    b = backend(tmp_path, registry, admin=False, elevator=elevator)
    with pytest.raises(TuningError,
                       match="elevated change failed: TcpTimedWaitDelay: wrote 30 but read back"):
        b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    assert elevator.outputs[0][0] == 1
    assert len(list((tmp_path / "backups").glob("*.json"))) == 1  # the child's backup stays


class BrokenRegistry(InMemoryRegistry):
    """A child that fails in a way nobody planned for (a bug, not an OSError)."""

    def write_dword(self, path: str, name: str, value: int) -> None:
        raise KeyError("hive handle lost")


def test_an_unexpected_failure_in_the_elevated_child_comes_back_as_its_text(tmp_path: Path,
                                                                             monkeypatch) -> None:
    registry = InMemoryRegistry(deny_writes=True)
    elevator = ChildElevator(registry, RecordedNetsh(), monkeypatch, child_registry=BrokenRegistry())
    b = backend(tmp_path, registry, admin=False, elevator=elevator)
    with pytest.raises(TuningError) as caught:
        b.apply(b.plan(TIMED_WAIT_DELAY, 30))
    assert str(caught.value) == ("TcpTimedWaitDelay: the elevated change failed: unexpected error: "
                                 "KeyError: 'hive handle lost'")
    assert elevator.outputs[0][0] == 1


def test_a_child_that_cannot_open_its_backend_says_why(tmp_path: Path, monkeypatch) -> None:
    def no_backend(backup_dir: Path | None = None, allow_elevation: bool = True) -> WindowsTuningBackend:
        raise TuningError("the registry cannot be opened here")

    monkeypatch.setattr(tune_command, "make_backend", no_backend)
    result_file = tmp_path / "result.json"
    with contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["tune", "set", "TcpTimedWaitDelay", "30", "--yes", "--elevated-child",
                         "--result-file", str(result_file)])
    assert code == cli.EXIT_BAD_INPUT
    assert read_child_result(result_file) == ChildResult(
        ok=False, backup=None, error="portpressure tune: the registry cannot be opened here")


# -- one Windows version for the live view and tune ------------------------------------------------
@pytest.mark.skipif(sys.platform != "win32", reason="asks Windows itself")
def test_the_live_view_and_tune_ask_windows_for_its_version_in_one_place() -> None:
    # A compatibility shim makes getwindowsversion() report an older major.minor (Wine reports 6.1
    # to python.exe while its kernel32 is 10.0): the real version is platform_version.
    version = windows_version()
    assert version == tuple(sys.getwindowsversion().platform_version)
    assert WindowsPortConfig.for_this_machine().version == version[:2]
    assert WindowsTuningBackend.for_this_machine().version == version


@pytest.mark.skipif(sys.platform == "win32", reason="checks the answer off Windows")
def test_windows_version_off_windows_is_an_error() -> None:
    with pytest.raises(OSError, match="not Windows"):
        windows_version()


# -- the relaunch command line -------------------------------------------------------------------
ARGS = ["tune", "set", "TcpTimedWaitDelay", "30", "--yes", "--elevated-child",
        "--backup-dir", r"C:\Users\Jo Smith\AppData\Local\PortPressure\backups",
        "--result-file", r"C:\Temp\pp\result.json"]


def test_relaunch_of_the_frozen_exe() -> None:
    exe = r"C:\Tools\Port Pressure\PortPressure.exe"
    command = relaunch_command(ARGS, frozen=True, executable=exe)
    assert command.file == exe
    assert command.parameters == (r'tune set TcpTimedWaitDelay 30 --yes --elevated-child --backup-dir '
                                  r'"C:\Users\Jo Smith\AppData\Local\PortPressure\backups" '
                                  r'--result-file C:\Temp\pp\result.json')
    assert command.directory == r"C:\Tools\Port Pressure"
    assert command.environment == ((PYINSTALLER_RESET, "1"),)


def test_relaunch_from_source_runs_the_entry_module_from_the_checkout() -> None:
    command = relaunch_command(ARGS, frozen=False, executable=r"C:\Python311\python.exe",
                               source_root=Path("/src/portpressure"))
    assert command.file == r"C:\Python311\python.exe"
    assert command.parameters.startswith("-m gui.launcher tune set TcpTimedWaitDelay 30 --yes")
    assert command.directory == str(Path("/src/portpressure"))
    assert command.environment == ()
    default_root = relaunch_command(ARGS, frozen=False, executable="python")
    assert (Path(default_root.directory) / "core" / "cli.py").is_file()


def test_the_launch_environment_is_set_and_restored(monkeypatch) -> None:
    monkeypatch.delenv(PYINSTALLER_RESET, raising=False)
    with _environment(((PYINSTALLER_RESET, "1"),)):
        assert os.environ[PYINSTALLER_RESET] == "1"
    assert PYINSTALLER_RESET not in os.environ


# -- DynamicPortRange via netsh ------------------------------------------------------------------
def test_dynamic_port_range_read_set_verify_and_revert(tmp_path: Path) -> None:
    netsh = RecordedNetsh()
    b = backend(tmp_path, netsh=netsh)
    state = b.read(DYNAMIC_PORT_RANGE)
    assert state.value == (49152, 65535) and state.default == (49152, 65535) and not state.needs_reboot
    assert any("260 of these ports are excluded" in n for n in state.notes)
    value = b.validate(DYNAMIC_PORT_RANGE, "10000 65535")
    assert value == (10000, 65535) and b.validate(DYNAMIC_PORT_RANGE, "start=10000 num=55536") == value
    plan = b.plan(DYNAMIC_PORT_RANGE, value)
    assert "netsh interface ipv4 set dynamicport tcp start=10000 num=55536" in plan.describe()
    assert any("260 ports of the new range are excluded" in w for w in plan.warnings)
    applied = b.apply(plan)
    assert ("interface", "ipv4", "set", "dynamicport", "tcp", "start=10000", "num=55536") in netsh.calls
    assert applied.state.value == (10000, 65535) and applied.state.effective == (10000, 65535)
    assert pending_reboot_reminder([applied.state]) is None
    b.revert(applied.backup)
    assert (netsh.start, netsh.count) == (49152, 16384)


@pytest.mark.parametrize(("text", "message"), [
    ("1024 65535", "at least 1025"),
    ("50000 65536", "at most 65535"),
    ("50000 50253", "only 254 ports"),
    ("60000 50000", "above the last"),
    ("start=50000 num=10", "only 10 ports"),
    ("lots", "not a port range"),
])
def test_dynamic_port_range_refusals(tmp_path: Path, text: str, message: str) -> None:
    netsh = RecordedNetsh()
    with pytest.raises(TuningInputError, match=message):
        backend(tmp_path, netsh=netsh).validate(DYNAMIC_PORT_RANGE, text)
    assert not any(call[2] == "set" for call in netsh.calls)


def test_netsh_refusing_the_set_changes_nothing_and_drops_the_backup(tmp_path: Path) -> None:
    netsh = RecordedNetsh(refuse_set="The parameter is incorrect.")
    b = backend(tmp_path, netsh=netsh)
    with pytest.raises(TuningError, match="parameter is incorrect.*nothing was changed"):
        b.apply(b.plan(DYNAMIC_PORT_RANGE, (10000, 65535)))
    assert list((tmp_path / "backups").glob("*.json")) == []


# -- shown only ---------------------------------------------------------------------------------
def test_excluded_ranges_auto_reuse_and_max_user_port_are_shown_only(tmp_path: Path) -> None:
    b = backend(tmp_path, InMemoryRegistry({(KEY, "MaxUserPort"): 65534}), auto_reuse=AUTO_REUSE_ON)
    states = {s.name: s for s in b.read_all()}
    assert list(states) == [TIMED_WAIT_DELAY, DYNAMIC_PORT_RANGE, EXCLUDED_PORT_RANGES, AUTO_REUSE_PORT_RANGE,
                            MAX_USER_PORT]
    for state in states.values():
        assert tuple(state.to_json()) == JSON_KEYS
        json.dumps(state.to_json())
    excluded = states[EXCLUDED_PORT_RANGES]
    assert excluded.value == ((1433, 1433), (5357, 5357), (50000, 50059), (50060, 50159), (63000, 63099))
    assert not excluded.writable and "excludedportrange" in excluded.why_not
    reuse = states[AUTO_REUSE_PORT_RANGE]
    assert reuse.value == (40000, 40999) and not reuse.writable and "Set-NetTCPSetting" in reuse.why_not
    max_user_port = states[MAX_USER_PORT]
    assert max_user_port.value == 65534 and max_user_port.effective is None
    assert "superseded" in max_user_port.why_not and "DynamicPortRange" in max_user_port.why_not
    # A stored MaxUserPort on modern Windows must not count as a pending reboot.
    assert pending_reboot_reminder(list(states.values())) is None
    for name in (EXCLUDED_PORT_RANGES, AUTO_REUSE_PORT_RANGE, MAX_USER_PORT):
        with pytest.raises(TuningInputError, match="shown only"):
            b.validate(name, "1")
    with pytest.raises(TuningInputError, match="valid names here: TcpTimedWaitDelay, DynamicPortRange"):
        b.validate("net.ipv4.tcp_tw_reuse", "1")


def test_max_user_port_on_windows_before_vista(tmp_path: Path) -> None:
    b = backend(tmp_path, version=SERVER_2003)
    state = b.read(MAX_USER_PORT)
    assert (state.value, state.effective, state.default) == (None, 5000, 5000)
    assert b.read(DYNAMIC_PORT_RANGE).default == (1025, 5000)


def test_no_exclusions(tmp_path: Path) -> None:
    state = backend(tmp_path, netsh=RecordedNetsh(excluded=EXCLUDED_NONE)).read(EXCLUDED_PORT_RANGES)
    assert state.value == () and "0 ports" in state.notes[0]


@pytest.mark.parametrize(("text", "available", "ranges"), [
    (AUTO_REUSE_ON, True, (("InternetCustom", 40000, 40999), ("DatacenterCustom", 40000, 40999))),
    (AUTO_REUSE_OFF, True, ()),
    (AUTO_REUSE_MISSING, False, ()),
    ("", False, ()),
])
def test_parse_auto_reuse(text: str, available: bool, ranges) -> None:
    found = parse_auto_reuse(text)
    assert (found.available, found.ranges) == (available, ranges)


def test_auto_reuse_unreadable_is_shown_not_raised(tmp_path: Path) -> None:
    for output in ("<html>", '[{"AutoReusePortRangeStartPort":"x","AutoReusePortRangeNumberOfPorts":1}]'):
        state = backend(tmp_path, auto_reuse=output).read(AUTO_REUSE_PORT_RANGE)
        assert state.value is None and state.why_not.startswith("cannot be read")
    off = backend(tmp_path, auto_reuse=AUTO_REUSE_MISSING).read(AUTO_REUSE_PORT_RANGE)
    assert "not available on this Windows" in off.notes[0]
