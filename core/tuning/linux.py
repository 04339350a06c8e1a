"""Linux: the two sysctls that matter for outbound port exhaustion, through /proc/sys.

net.ipv4.ip_local_port_range  "LOW HIGH", the ports connect() picks from.
    The kernel takes 1 <= LOW <= HIGH <= 65535 with LOW >= ip_unprivileged_port_start
    (EINVAL otherwise). It merely logs "prefer different parity for start/end values"
    when both are even or both odd: connect() scans one parity first and leaves the other
    to bind(0), so an even LOW and odd HIGH (32768 60999) is best; we warn, not refuse.
    This tool's own floor for NEW values: LOW >= 1024 and at least 255 ports
    (MIN_PORTS; Windows' netsh has the same minimum). Narrowing the range to a handful
    of ports causes the very failure this tool exists to fix. An undo restores whatever
    was there before, within the kernel's rules.
net.ipv4.tcp_tw_reuse  0 off, 1 on, 2 loopback only (default): lets connect() reuse a
    port whose old connection is in TIME_WAIT (needs TCP timestamps, after
    net.ipv4.tcp_tw_reuse_delay ms on kernels that have it).
net.ipv4.tcp_fin_timeout  shown, never offered: it is the FIN_WAIT2 timeout of orphaned
    sockets and does NOT shorten TIME_WAIT, which is 60 s, fixed in the kernel (TCP_TIMEWAIT_LEN).

Changes take effect at once and are private to the network namespace; they do not
survive a reboot unless a line goes into /etc/sysctl.d/ (the plan shows the line; this
tool does not write /etc). Writing needs root; otherwise the state says which
`sysctl -w` command to run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from core.tuning.base import SettingState, TuningInputError, Value
from core.tuning.guarded import GuardedBackend

PORT_RANGE = "net.ipv4.ip_local_port_range"
TW_REUSE = "net.ipv4.tcp_tw_reuse"
FIN_TIMEOUT = "net.ipv4.tcp_fin_timeout"

MIN_PORTS = 255
MIN_LOW_PORT = 1024
MAX_PORT = 65535
DEFAULT_PORT_RANGE = (32768, 60999)
DEFAULT_TW_REUSE = 2
DEFAULT_FIN_TIMEOUT = 60
TIME_WAIT_SECONDS = 60
TW_REUSE_MEANING = {0: "off", 1: "on", 2: "loopback only"}
SYSCTL_D_FILE = "/etc/sysctl.d/90-portpressure.conf"

_RANGE_TEXT = re.compile(r"^\s*(\d+)\s*(?:[\s,:-]|\.\.)\s*(\d+)\s*$")
_INT_TEXT = re.compile(r"^\s*\d+\s*$")


def sysctl_text(value: Value) -> str:
    return f"{value[0]} {value[1]}" if isinstance(value, tuple) else str(value)


def sysctl_assignment(name: str, text: str) -> str:
    """`net.ipv4.x=1`, quoted for a shell when the value has a space."""
    return f'{name}="{text}"' if " " in text else f"{name}={text}"


def sysctl_d_line(name: str, value: Value) -> str:
    return f"{name} = {sysctl_text(value)}"


def _effective_uid() -> int:
    if sys.platform == "win32":
        return -1
    return os.geteuid()


class LinuxSysctlBackend(GuardedBackend):
    os_name = "Linux"

    def __init__(self, proc_sys: Path | str = "/proc/sys", backup_dir: Path | None = None,
                 euid: Callable[[], int] | None = None) -> None:
        super().__init__(backup_dir)
        self.proc_sys = Path(proc_sys)
        self._euid = euid or _effective_uid

    # -- where things are ------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.proc_sys.joinpath(*name.split("."))

    def _location(self, name: str) -> str:
        return str(self._path(name))

    def names(self) -> tuple[str, ...]:
        return (PORT_RANGE, TW_REUSE, FIN_TIMEOUT)

    def writable_names(self) -> tuple[str, ...]:
        return (PORT_RANGE, TW_REUSE)

    def _unit(self, name: str) -> str:
        return {PORT_RANGE: "ports", TW_REUSE: "mode", FIN_TIMEOUT: "s"}.get(name, "")

    # -- reading ---------------------------------------------------------------------------
    def _read_text(self, name: str) -> str:
        return self._path(name).read_text().strip()

    def _stored(self, name: str) -> Value:
        text = self._read_text(name)
        if name == PORT_RANGE:
            fields = text.split()
            if len(fields) != 2:
                raise ValueError(f"{self._path(name)} holds {text!r}, expected two numbers")
            return (int(fields[0]), int(fields[1]))
        return int(text)

    def _unprivileged_port_start(self) -> int:
        try:
            return int(self._read_text("net.ipv4.ip_unprivileged_port_start"))
        except (OSError, ValueError):
            return MIN_LOW_PORT

    def _low_floor(self) -> int:
        return max(MIN_LOW_PORT, self._unprivileged_port_start())

    def _range_text(self, name: str) -> str:
        if name == PORT_RANGE:
            return f"LOW HIGH: {self._low_floor()}-{MAX_PORT}, LOW <= HIGH, at least {MIN_PORTS} ports"
        if name == TW_REUSE:
            return "0 (off), 1 (on), 2 (loopback only)"
        return "shown only"

    def _permission_problem(self, name: str, value: Value) -> str | None:
        return self._why_not_writable(name, sysctl_text(value))

    def _why_not_writable(self, name: str, value_text: str) -> str | None:
        command = f"sudo sysctl -w {sysctl_assignment(name, value_text)}"
        uid = self._euid()
        if uid != 0:
            return f"needs root (this runs as uid {uid}): run `{command}` instead"
        if not os.access(self._path(name), os.W_OK):
            return (f"{self._path(name)} is read-only here (a container without the right to "
                    f"change network settings?): run `{command}` where it is allowed")
        return None

    def _notes(self, name: str, value: Value) -> list[str]:
        notes = []
        if name in self.writable_names():
            notes.append("takes effect at once for new connections; lost at reboot unless "
                         f"{SYSCTL_D_FILE} holds the line `{sysctl_d_line(name, value)}`")
            notes.append("net.* settings belong to a network namespace: in a container this changes "
                         "the container's copy only")
        if name == PORT_RANGE:
            try:
                reserved = self._read_text("net.ipv4.ip_local_reserved_ports")
            except OSError:
                reserved = ""
            if reserved:
                notes.append(f"net.ipv4.ip_local_reserved_ports = {reserved}: connect() skips those too")
        if name == TW_REUSE:
            notes.append("needs TCP timestamps on both ends (net.ipv4.tcp_timestamps, on by default)")
            try:
                delay = self._read_text("net.ipv4.tcp_tw_reuse_delay")
            except OSError:
                delay = ""
            if delay:
                notes.append(f"a TIME_WAIT port becomes reusable {delay} ms after the close "
                             f"(net.ipv4.tcp_tw_reuse_delay)")
        if name == FIN_TIMEOUT:
            notes.append(self._fin_timeout_warning())
        return notes

    @staticmethod
    def _fin_timeout_warning() -> str:
        return (f"tcp_fin_timeout does NOT shorten TIME_WAIT: TIME_WAIT lasts {TIME_WAIT_SECONDS} s, "
                f"fixed in the kernel; tcp_fin_timeout is how long an orphaned socket waits in "
                f"FIN_WAIT2. To reuse TIME_WAIT ports set {TW_REUSE} = 1, or widen {PORT_RANGE}")

    def read(self, name: str) -> SettingState:
        self._known(name, writable=False)
        defaults: dict[str, Value] = {PORT_RANGE: DEFAULT_PORT_RANGE, TW_REUSE: DEFAULT_TW_REUSE,
                                      FIN_TIMEOUT: DEFAULT_FIN_TIMEOUT}
        default = defaults[name]
        try:
            value: Value = self._stored(name)
        except (OSError, ValueError) as exc:
            return SettingState(name=name, value=None, effective=None, default=default,
                                unit=self._unit(name), range=self._range_text(name), needs_reboot=False,
                                writable=False, why_not=f"cannot be read: {exc}")
        why_not: str | None
        if name == FIN_TIMEOUT:
            writable, why_not = False, (f"shown only: it does NOT shorten TIME_WAIT ({TIME_WAIT_SECONDS} s, "
                                        f"fixed in the kernel); see the note")
        else:
            why_not = self._why_not_writable(name, "LOW HIGH" if name == PORT_RANGE else "VALUE")
            writable = why_not is None
        return SettingState(name=name, value=value, effective=value, default=default,
                            unit=self._unit(name), range=self._range_text(name), needs_reboot=False,
                            writable=writable, why_not=why_not, notes=tuple(self._notes(name, value)))

    # -- checking --------------------------------------------------------------------------
    def _parse(self, name: str, text: str) -> Value:
        if name == PORT_RANGE:
            match = _RANGE_TEXT.match(text)
            if not match:
                raise TuningInputError(f"{name}: {text!r} is not a range: give two port numbers, "
                                       f"e.g. \"32768 60999\"")
            return (int(match.group(1)), int(match.group(2)))
        if not _INT_TEXT.match(text):
            raise TuningInputError(f"{name}: {text!r} is not one of {self._range_text(name)}")
        return int(text)

    def _check(self, name: str, value: Value, policy: bool) -> None:
        if name == PORT_RANGE:
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TuningInputError(f"{name}: {value!r} is not a port range")
            low, high = value
            floor = self._low_floor() if policy else self._unprivileged_port_start()
            if not 1 <= low <= MAX_PORT or not 1 <= high <= MAX_PORT:
                raise TuningInputError(f"{name}: ports run 1-{MAX_PORT}, got {low} {high}")
            if low > high:
                raise TuningInputError(f"{name}: the first port {low} is above the last {high}")
            if low < floor:
                raise TuningInputError(
                    f"{name}: the first port must be at least {floor} (below "
                    f"{self._unprivileged_port_start()} are privileged ports, "
                    f"net.ipv4.ip_unprivileged_port_start), got {low}")
            if policy and high - low + 1 < MIN_PORTS:
                raise TuningInputError(f"{name}: {low}-{high} is only {high - low + 1} ports; at least "
                                       f"{MIN_PORTS} are needed (fewer ports make exhaustion worse)")
            return
        if name == TW_REUSE:
            if not (isinstance(value, int) and value in TW_REUSE_MEANING):
                raise TuningInputError(f"{name}: {value!r} is not one of {self._range_text(name)}")
            return
        raise TuningInputError(f"{name}: shown only, not changed by this tool")

    def _warnings(self, name: str, old: Value, new: Value) -> list[str]:
        warnings = []
        if name == PORT_RANGE and isinstance(new, tuple) and new[0] % 2 == new[1] % 2:
            warnings.append("the kernel prefers a first and last port of different parity (e.g. an even "
                            "first and an odd last port, as in 32768 60999): connect() searches one "
                            "parity first; it accepts this range and logs a warning")
        if name == PORT_RANGE and isinstance(old, tuple) and isinstance(new, tuple) \
                and new[1] - new[0] < old[1] - old[0]:
            warnings.append(f"this makes the range smaller ({old[1] - old[0] + 1} -> "
                            f"{new[1] - new[0] + 1} ports)")
        if name == TW_REUSE and new == 0:
            warnings.append("0 turns reuse off even for loopback: TIME_WAIT ports then block new "
                            "connections for the full 60 s")
        return warnings

    def _steps(self, name: str, old: Value, new: Value) -> list[str]:
        text = sysctl_text(new)
        return [f"write {text!r} to {self._path(name)} (the same as "
                f"`sysctl -w {sysctl_assignment(name, text)}`); it takes effect at once and is lost at "
                f"reboot unless {SYSCTL_D_FILE} holds "
                f"`{sysctl_d_line(name, new)}`"]

    # -- writing ---------------------------------------------------------------------------
    def _write(self, name: str, value: Value) -> None:
        text = sysctl_text(value)
        # One write() call: the kernel parses the whole buffer at once and rejects it whole.
        with open(self._path(name), "w") as f:
            f.write(text + "\n")
