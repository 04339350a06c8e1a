"""Windows: TcpTimedWaitDelay (registry), the dynamic port range (netsh), and what is
shown beside them (MaxUserPort, excluded port ranges, automatic port reuse).

The OS is reached only through RegistryBackend, NetshRunner, an auto-reuse reader,
is_admin() and an Elevator, all passed in: this module is logic, tested on Linux with
an in-memory registry and recorded netsh output; `for_this_machine()` wires the real ones.

TcpTimedWaitDelay  HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters, REG_DWORD,
    seconds; absent by default (Windows then uses 120 s since Vista / Server 2008, 240 s
    before); valid 30-300, or 2-300 on Windows 8.1 / Server 2012 R2 (6.3) and later;
    read at boot, so a change needs a reboot ("default" deletes the value).
DynamicPortRange  `netsh int ipv4 set dynamicport tcp start=N num=M`: at least 255 ports,
    start >= 1025, end <= 65535; takes effect at once, no reboot. IPv4 only: IPv6 has its
    own range, shown in the notes.
MaxUserPort  shown: since Vista the dynamic port range replaces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.sources.netsh_parse import parse_dynamic_port, parse_excluded_ranges
from core.sources.windows import (
    LEGACY_DYNAMIC_RANGE,
    MODERN_DYNAMIC_RANGE,
    TCPIP_PARAMETERS_KEY,
    TIME_WAIT_DELAY_MAX,
    default_time_wait_seconds,
    time_wait_delay_minimum,
    windows_version,
)
from core.tuning.backups import boot_time, list_backups, this_host
from core.tuning.base import (
    Applied,
    Plan,
    SettingState,
    TuningError,
    TuningInputError,
    TuningPermissionError,
    Value,
    VerifyMismatch,
    format_value,
)
from core.tuning.guarded import GuardedBackend
from core.tuning.reminder import effective_since_boot
from core.tuning.windows_commands import (
    NETSH_SHOW_DYNAMIC_V4,
    NETSH_SHOW_DYNAMIC_V6,
    NETSH_SHOW_EXCLUDED_V4,
    AutoReuse,
    NetshRunner,
    SystemNetsh,
    netsh_set_dynamic_v4,
    parse_auto_reuse,
    read_auto_reuse_output,
)
from core.tuning.windows_elevation import Elevator, ShellExecuteElevator, is_admin, read_child_result
from core.tuning.windows_registry import RegistryBackend, WinRegistry

TIMED_WAIT_DELAY = "TcpTimedWaitDelay"
MAX_USER_PORT = "MaxUserPort"
DYNAMIC_PORT_RANGE = "DynamicPortRange"
EXCLUDED_PORT_RANGES = "ExcludedPortRanges"
AUTO_REUSE_PORT_RANGE = "AutoReusePortRange"

DYNAMIC_MIN_START = 1025
DYNAMIC_MAX_END = 65535
DYNAMIC_MIN_PORTS = 255
LEGACY_MAX_USER_PORT = 5000
VISTA = (6, 0)
WINDOWS_8_1 = (6, 3)

_RANGE_TEXT = re.compile(r"^\s*(\d+)\s*(?:[\s,:-]|\.\.)\s*(\d+)\s*$")
_NETSH_TEXT = re.compile(r"^\s*start\s*=\s*(\d+)\s+num\s*=\s*(\d+)\s*$", re.IGNORECASE)
_INT_TEXT = re.compile(r"^\s*\d+\s*$")


def windows_version_label(version: tuple[int, ...]) -> str:
    if version[:2] >= WINDOWS_8_1:
        return "Windows 8.1 / Server 2012 R2 and later"
    if version[:2] >= VISTA:
        return "Windows Vista / Server 2008 to Windows 8 / Server 2012"
    return "Windows before Vista / Server 2008"


class WindowsTuningBackend(GuardedBackend):
    os_name = "Windows"

    def __init__(self, registry: RegistryBackend, netsh: NetshRunner, version: tuple[int, int, int],
                 *, admin: Callable[[], bool], elevator: Elevator | None = None,
                 read_auto_reuse: Callable[[], str] | None = None, backup_dir: Path | None = None,
                 allow_elevation: bool = True, current_boot: Callable[[], float] = boot_time,
                 host: Callable[[], str] = this_host) -> None:
        super().__init__(backup_dir, host=host, current_boot=current_boot)
        self.registry = registry
        self.netsh = netsh
        self.version = version
        self._admin = admin
        self._elevator = elevator
        self._read_auto_reuse = read_auto_reuse
        self.allow_elevation = allow_elevation and elevator is not None

    @classmethod
    def for_this_machine(cls, backup_dir: Path | None = None,
                         allow_elevation: bool = True) -> WindowsTuningBackend:
        return cls(WinRegistry(), SystemNetsh(), windows_version(), admin=is_admin,
                   elevator=ShellExecuteElevator(), read_auto_reuse=read_auto_reuse_output,
                   backup_dir=backup_dir, allow_elevation=allow_elevation)

    # -- names, units, words -----------------------------------------------------------------
    def names(self) -> tuple[str, ...]:
        return (TIMED_WAIT_DELAY, DYNAMIC_PORT_RANGE, EXCLUDED_PORT_RANGES, AUTO_REUSE_PORT_RANGE,
                MAX_USER_PORT)

    def writable_names(self) -> tuple[str, ...]:
        return (TIMED_WAIT_DELAY, DYNAMIC_PORT_RANGE)

    def _unit(self, name: str) -> str:
        return {TIMED_WAIT_DELAY: "s", MAX_USER_PORT: "port"}.get(name, "ports")

    def _needs_reboot(self, name: str) -> bool:
        return name in (TIMED_WAIT_DELAY, MAX_USER_PORT)

    @property
    def _modern(self) -> bool:
        return self.version[:2] >= VISTA

    def _delay_minimum(self) -> int:
        return time_wait_delay_minimum(self.version[:2])

    def _delay_default(self) -> int:
        return int(default_time_wait_seconds(self.version[:2]))

    def _location(self, name: str) -> str:
        if name in (TIMED_WAIT_DELAY, MAX_USER_PORT):
            return f"HKLM\\{TCPIP_PARAMETERS_KEY}\\{name} (REG_DWORD)"
        if name == DYNAMIC_PORT_RANGE:
            return "netsh int ipv4 set dynamicport tcp"
        return "netsh int ipv4 show excludedportrange protocol=tcp" if name == EXCLUDED_PORT_RANGES \
            else "Get-NetTCPSetting"

    def _range_text(self, name: str) -> str:
        if name == TIMED_WAIT_DELAY:
            return (f"{self._delay_minimum()}-{TIME_WAIT_DELAY_MAX} s on "
                    f"{windows_version_label(self.version)}; 'default' removes the value")
        if name == DYNAMIC_PORT_RANGE:
            return (f"START END: start >= {DYNAMIC_MIN_START}, end <= {DYNAMIC_MAX_END}, "
                    f"at least {DYNAMIC_MIN_PORTS} ports")
        return "shown only"

    # -- reading ---------------------------------------------------------------------------
    def _stored(self, name: str) -> Value:
        if name in (TIMED_WAIT_DELAY, MAX_USER_PORT):
            return self.registry.read_dword(TCPIP_PARAMETERS_KEY, name)
        if name == DYNAMIC_PORT_RANGE:
            return parse_dynamic_port(self.netsh.run(NETSH_SHOW_DYNAMIC_V4))
        raise ValueError(f"{name} is not a stored value")

    def _writable(self) -> tuple[bool, str | None, list[str]]:
        if self._admin():
            return True, None, []
        if self.allow_elevation:
            return True, None, ["needs Administrator rights: Windows will ask for permission (UAC) for "
                                "the change only; this window stays unelevated"]
        return False, "needs Administrator rights: run PortPressure as Administrator", []

    def read(self, name: str) -> SettingState:
        self._known(name, writable=False)
        reader = {TIMED_WAIT_DELAY: self._read_delay, DYNAMIC_PORT_RANGE: self._read_dynamic,
                  EXCLUDED_PORT_RANGES: self._read_excluded, AUTO_REUSE_PORT_RANGE: self._read_auto,
                  MAX_USER_PORT: self._read_max_user_port}[name]
        return reader()

    def _unreadable(self, name: str, default: object, exc: Exception) -> SettingState:
        return SettingState(name=name, value=None, effective=None, default=default, unit=self._unit(name),
                            range=self._range_text(name), needs_reboot=self._needs_reboot(name),
                            writable=False, why_not=f"cannot be read: {exc}")

    def _read_delay(self) -> SettingState:
        name, default = TIMED_WAIT_DELAY, self._delay_default()
        try:
            stored = self.registry.read_dword(TCPIP_PARAMETERS_KEY, name)
        except (OSError, ValueError) as exc:
            return self._unreadable(name, default, exc)
        notes = []
        era = "Vista / Server 2008 and later" if self._modern else "before Vista"
        if stored is None:
            notes.append(f"not set: Windows uses its default TIME_WAIT of {default} s ({era})")
        elif not self._delay_minimum() <= stored <= TIME_WAIT_DELAY_MAX:
            notes.append(f"the stored {stored} s is outside the documented {self._delay_minimum()}-"
                         f"{TIME_WAIT_DELAY_MAX} s; Windows may clamp or ignore it")
        effective, pending = effective_since_boot(list_backups(self.backup_dir), name, self._host(),
                                                  stored, default, self._current_boot())
        if pending is not None:
            notes.append(f"changed by PortPressure at {pending.time[:19].replace('T', ' ')} without a "
                         f"restart since: Windows uses {effective} s until the next reboot")
        notes.append("Windows does not report the TIME_WAIT length in use: 'effective' assumes the stored "
                     "value took effect at boot unless PortPressure changed it since (its backups record "
                     "the boot time)")
        writable, why_not, more = self._writable()
        return SettingState(name=name, value=stored, effective=effective, default=default, unit="s",
                            range=self._range_text(name), needs_reboot=True, writable=writable,
                            why_not=why_not, notes=tuple(notes + more))

    def _read_dynamic(self) -> SettingState:
        name = DYNAMIC_PORT_RANGE
        default = MODERN_DYNAMIC_RANGE if self._modern else LEGACY_DYNAMIC_RANGE
        try:
            stored = parse_dynamic_port(self.netsh.run(NETSH_SHOW_DYNAMIC_V4))
        except (OSError, ValueError) as exc:
            return self._unreadable(name, default, exc)
        notes = [f"{stored[1] - stored[0] + 1} ports; takes effect at once, no reboot"]
        with contextlib.suppress(OSError, ValueError):
            v6 = parse_dynamic_port(self.netsh.run(NETSH_SHOW_DYNAMIC_V6))
            if v6 != stored:
                notes.append(f"IPv6 has its own range {format_value(v6)} (this tool changes the IPv4 range; "
                             f"`netsh int ipv6 set dynamicport tcp` changes the other)")
        excluded = self._excluded_or_none()
        if excluded:
            overlap = _overlap(stored, excluded)
            if overlap:
                notes.append(f"{overlap} of these ports are excluded (ExcludedPortRanges) and never used")
        writable, why_not, more = self._writable()
        return SettingState(name=name, value=stored, effective=stored, default=default, unit="ports",
                            range=self._range_text(name), needs_reboot=False, writable=writable,
                            why_not=why_not, notes=tuple(notes + more))

    def _excluded_or_none(self) -> tuple[tuple[int, int], ...] | None:
        try:
            return parse_excluded_ranges(self.netsh.run(NETSH_SHOW_EXCLUDED_V4))
        except (OSError, ValueError):
            return None

    def _read_excluded(self) -> SettingState:
        name = EXCLUDED_PORT_RANGES
        try:
            excluded = parse_excluded_ranges(self.netsh.run(NETSH_SHOW_EXCLUDED_V4))
        except (OSError, ValueError) as exc:
            return self._unreadable(name, (), exc)
        total = sum(hi - lo + 1 for lo, hi in excluded)
        return SettingState(
            name=name, value=excluded, effective=excluded, default=(), unit="ports", range="shown only",
            needs_reboot=False, writable=False,
            why_not=("shown only: exclusions belong to other software (Hyper-V, WinNAT, Docker, ...) or an "
                     "administrator (`netsh int ipv4 add|delete excludedportrange protocol=tcp`)"),
            notes=(f"{len(excluded)} range(s), {total} ports that connect() never picks",))

    def _read_auto(self) -> SettingState:
        name = AUTO_REUSE_PORT_RANGE
        why_not = ("shown only: set with PowerShell `Set-NetTCPSetting -AutoReusePortRangeStartPort N "
                   "-AutoReusePortRangeNumberOfPorts M`")
        if self._read_auto_reuse is None:
            return self._unreadable(name, None, OSError("no Get-NetTCPSetting reader here"))
        try:
            found: AutoReuse = parse_auto_reuse(self._read_auto_reuse())
        except (OSError, ValueError) as exc:
            return self._unreadable(name, None, exc)
        if not found.available:
            value, notes = None, ["not available on this Windows (Get-NetTCPSetting has no auto-reuse "
                                  "range)"]
        elif not found.enabled:
            value, notes = None, ["available but off (0 ports): every outbound port comes from the "
                                  "dynamic range"]
        else:
            lo, hi = found.ranges[0][1], found.ranges[0][2]
            value = (lo, hi)
            notes = [f"on: outbound connections made without bind() (or with SO_REUSE_UNICASTPORT) take "
                     f"ports from {lo}-{hi} and may share a port toward different destinations"]
            notes += [f"{setting}: {a}-{b}" for setting, a, b in found.ranges[1:] if (a, b) != (lo, hi)]
        return SettingState(name=name, value=value, effective=value, default=None, unit="ports",
                            range="shown only", needs_reboot=True, writable=False, why_not=why_not,
                            notes=tuple(notes))

    def _read_max_user_port(self) -> SettingState:
        name = MAX_USER_PORT
        default = None if self._modern else LEGACY_MAX_USER_PORT
        try:
            stored = self.registry.read_dword(TCPIP_PARAMETERS_KEY, name)
        except (OSError, ValueError) as exc:
            return self._unreadable(name, default, exc)
        if self._modern:
            why_not = ("superseded since Windows Vista / Server 2008 by the dynamic port range: "
                       "change DynamicPortRange instead")
            effective = None
            notes = ["Windows ignores this value for the outbound port range"] if stored is not None else []
        else:
            why_not = "shown only (Windows before Vista, where it sets the highest outbound port)"
            effective = stored if stored is not None else LEGACY_MAX_USER_PORT
            notes = []
        return SettingState(name=name, value=stored, effective=effective, default=default, unit="port",
                            range="shown only", needs_reboot=True, writable=False, why_not=why_not,
                            notes=tuple(notes))

    # -- checking --------------------------------------------------------------------------
    def _parse(self, name: str, text: str) -> Value:
        if name == TIMED_WAIT_DELAY:
            if text.strip().lower() == "default":
                return None
            if not _INT_TEXT.match(text):
                raise TuningInputError(f"{name}: {text!r} is not a number of seconds "
                                       f"({self._range_text(name)})")
            return int(text)
        match = _RANGE_TEXT.match(text) or _NETSH_TEXT.match(text)
        if not match:
            raise TuningInputError(f"{name}: {text!r} is not a port range: give the first and last port, "
                                   f"e.g. \"49152 65535\" (or start=49152 num=16384)")
        first, second = int(match.group(1)), int(match.group(2))
        if match.re is _NETSH_TEXT:
            return (first, first + second - 1)
        return (first, second)

    def _check(self, name: str, value: Value, policy: bool) -> None:
        if name == TIMED_WAIT_DELAY:
            if value is None:
                return
            low = self._delay_minimum()
            if not isinstance(value, int) or not low <= value <= TIME_WAIT_DELAY_MAX:
                raise TuningInputError(f"{name}: {value!r} is outside {low}-{TIME_WAIT_DELAY_MAX} s, the "
                                       f"range {windows_version_label(self.version)} accepts")
            return
        if name == DYNAMIC_PORT_RANGE:
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TuningInputError(f"{name}: {value!r} is not a port range")
            start, end = value
            if start > end:
                raise TuningInputError(f"{name}: the first port {start} is above the last {end}")
            if start < DYNAMIC_MIN_START:
                raise TuningInputError(f"{name}: the first port must be at least {DYNAMIC_MIN_START}, "
                                       f"got {start}")
            if end > DYNAMIC_MAX_END:
                raise TuningInputError(f"{name}: the last port must be at most {DYNAMIC_MAX_END}, got {end}")
            if end - start + 1 < DYNAMIC_MIN_PORTS:
                raise TuningInputError(f"{name}: {start}-{end} is only {end - start + 1} ports; Windows "
                                       f"needs at least {DYNAMIC_MIN_PORTS}")
            return
        raise TuningInputError(f"{name}: shown only, not changed by this tool")

    def _warnings(self, name: str, old: Value, new: Value) -> list[str]:
        warnings = []
        if name == TIMED_WAIT_DELAY:
            warnings.append("Windows reads this value at boot: nothing changes until the server restarts")
            if isinstance(new, int) and new < 30:
                warnings.append("below 30 s, a late packet of an old connection can land in a new one "
                                "using the same ports")
        if name == DYNAMIC_PORT_RANGE and isinstance(new, tuple):
            excluded = self._excluded_or_none() or ()
            overlap = _overlap(new, excluded)
            if overlap:
                warnings.append(f"{overlap} ports of the new range are excluded (ExcludedPortRanges): "
                                f"{new[1] - new[0] + 1 - overlap} remain usable")
            if isinstance(old, tuple) and new[1] - new[0] < old[1] - old[0]:
                warnings.append(f"this makes the range smaller ({old[1] - old[0] + 1} -> "
                                f"{new[1] - new[0] + 1} ports)")
            warnings.append("services listening on a port inside the new range may find it taken by an "
                            "outbound connection")
        return warnings

    def _steps(self, name: str, old: Value, new: Value) -> list[str]:
        if name == TIMED_WAIT_DELAY:
            where = f"HKLM\\{TCPIP_PARAMETERS_KEY}"
            if new is None:
                return [f"delete the value {name} under {where} (Windows then uses its default "
                        f"{self._delay_default()} s after the next reboot)"]
            return [f"set {where}\\{name} = {new} (REG_DWORD, decimal seconds); "
                    f"Windows uses it after the next reboot"]
        assert isinstance(new, tuple)
        args = netsh_set_dynamic_v4(new[0], new[1] - new[0] + 1)
        return [f"run `netsh {' '.join(args)}` (ports {new[0]}-{new[1]}); takes effect at once"]

    # -- writing ---------------------------------------------------------------------------
    def _write(self, name: str, value: Value) -> None:
        if name == TIMED_WAIT_DELAY:
            if value is None:
                self.registry.delete_value(TCPIP_PARAMETERS_KEY, name)
            else:
                assert isinstance(value, int)
                self.registry.write_dword(TCPIP_PARAMETERS_KEY, name, value)
            return
        assert isinstance(value, tuple)
        self.netsh.run(netsh_set_dynamic_v4(value[0], value[1] - value[0] + 1))

    def _needs_elevation(self) -> bool:
        return not self._admin()

    def apply(self, plan: Plan) -> Applied:
        try:
            return super().apply(plan)
        except TuningPermissionError as exc:
            if plan.elevation or not self.allow_elevation:
                raise
            # The token check said Administrator, yet the write was denied (a filtered token,
            # a locked key): let Windows elevate this one change; the child backs up again.
            applied = self._apply_elevated(dataclasses.replace(plan, elevation=True))
            return dataclasses.replace(applied, messages=(f"{exc}; retried with Administrator permission",)
                                       + applied.messages)

    def _apply_elevated(self, plan: Plan) -> Applied:
        name = plan.setting
        if not self.allow_elevation or self._elevator is None:
            raise TuningPermissionError(f"{name}: needs Administrator rights, and this process may not ask "
                                        f"for them; nothing was changed")
        with tempfile.TemporaryDirectory(prefix="portpressure-elevated-") as folder:
            result_file = Path(folder) / "result.json"
            if plan.reverts is not None:
                args = ["tune", "revert", str(plan.reverts)]
            else:
                args = ["tune", "set", name, plan.value_text]
            args += ["--yes", "--elevated-child", "--backup-dir", str(self.backup_dir),
                     "--result-file", str(result_file)]
            status = self._elevator.run(args)
            result = read_child_result(result_file)
        if result is None:
            raise TuningError(f"{name}: the elevated change exited with status {status} without saying "
                              f"what happened; look at the value before retrying")
        if not result.ok or status != 0:
            raise TuningError(f"{name}: the elevated change failed: {result.error or f'status {status}'}")
        backup = Path(result.backup) if result.backup else None
        if backup is None:
            raise TuningError(f"{name}: the elevated change reports no backup; look at the value")
        try:
            readback = self._stored(name)
        except (OSError, ValueError) as exc:
            raise VerifyMismatch(f"{name}: changed as Administrator, but it could not be read back here "
                                 f"({exc}); the backup is kept: {backup}", backup) from None
        if readback != plan.new_value:
            raise VerifyMismatch(f"{name}: the elevated change wrote {format_value(plan.new_value)} but this "
                                 f"reads {format_value(readback)}; the backup is kept: {backup}", backup)
        return Applied(plan=plan, backup=backup, state=self.read(name),
                       messages=("made by a one-shot elevated `portpressure tune` (Windows asked for "
                                 "permission)",))


def _overlap(span: tuple[int, int], ranges: tuple[tuple[int, int], ...]) -> int:
    lo, hi = span
    return sum(max(0, min(hi, b) - max(lo, a) + 1) for a, b in ranges)
