"""The Windows commands the settings are read and changed with, behind small interfaces
so their handling is tested with recorded output.

netsh: `interface ipv4 show|set dynamicport tcp`, `show excludedportrange` (the parsers
are core.sources.netsh_parse). PowerShell: Get-NetTCPSetting for the auto-reuse port
range, which netsh does not show.

Automatic port reuse, as documented for Get-/Set-NetTCPSetting (Windows 10 and Server
2016 and later docs; also listed for 2012 R2 after an update): AutoReusePortRangeStartPort
and AutoReusePortRangeNumberOfPorts define a separate range "used for local ephemeral
port selection by outbound TCP connections for which either SO_REUSE_UNICASTPORT has
been set on the socket, or for which connect() has been called without calling bind()";
0 ports means the feature is off and every port comes from the dynamic range. Where
Get-NetTCPSetting has no such properties, the feature does not exist on that Windows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.sources.windows import run_netsh
from core.tuning.windows_elevation import forget_bundled_dll_directory

NETSH_SHOW_DYNAMIC_V4 = ("interface", "ipv4", "show", "dynamicport", "tcp")
NETSH_SHOW_DYNAMIC_V6 = ("interface", "ipv6", "show", "dynamicport", "tcp")
NETSH_SHOW_EXCLUDED_V4 = ("interface", "ipv4", "show", "excludedportrange", "protocol=tcp")
POWERSHELL_TIMEOUT_S = 20.0
AUTO_REUSE_QUERY = ("Get-NetTCPSetting | Select-Object SettingName,AutoReusePortRangeStartPort,"
                    "AutoReusePortRangeNumberOfPorts | ConvertTo-Json -Compress")


def netsh_set_dynamic_v4(start: int, count: int) -> tuple[str, ...]:
    return ("interface", "ipv4", "set", "dynamicport", "tcp", f"start={start}", f"num={count}")


class NetshRunner(Protocol):
    def run(self, args: Sequence[str]) -> str:
        """netsh's output; OSError when it fails or exits non-zero."""
        ...


class SystemNetsh:
    def run(self, args: Sequence[str]) -> str:
        return run_netsh(args)


@dataclass(frozen=True)
class AutoReuse:
    available: bool  # Get-NetTCPSetting knows the auto-reuse properties
    ranges: tuple[tuple[str, int, int], ...] = ()  # (setting name, first, last) where enabled

    @property
    def enabled(self) -> bool:
        return bool(self.ranges)


def parse_auto_reuse(text: str) -> AutoReuse:
    """The JSON of AUTO_REUSE_QUERY -> AutoReuse; ValueError in one line otherwise."""
    try:
        raw: Any = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ValueError(f"Get-NetTCPSetting output is not JSON: {exc}") from None
    rows = raw if isinstance(raw, list) else [raw]
    available = False
    ranges = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"Get-NetTCPSetting output: unexpected item {row!r}")
        start, count = row.get("AutoReusePortRangeStartPort"), row.get("AutoReusePortRangeNumberOfPorts")
        if start is None or count is None:
            continue  # the "Automatic" template carries no values; older Windows none at all
        if not isinstance(start, int) or not isinstance(count, int):
            raise ValueError(f"Get-NetTCPSetting output: non-numeric auto-reuse range {start!r}, {count!r}")
        available = True
        if count > 0:
            ranges.append((str(row.get("SettingName", "?")), start, start + count - 1))
    return AutoReuse(available=available, ranges=tuple(ranges))


def read_auto_reuse_output() -> str:
    """Run AUTO_REUSE_QUERY in Windows PowerShell; OSError when it cannot."""
    if sys.platform != "win32":
        raise OSError("PowerShell's Get-NetTCPSetting exists only on Windows")
    forget_bundled_dll_directory()
    powershell = os.path.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32",
                              "WindowsPowerShell", "v1.0", "powershell.exe")
    try:
        done = subprocess.run(
            [powershell, "-NoProfile", "-NonInteractive", "-Command", AUTO_REUSE_QUERY],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=POWERSHELL_TIMEOUT_S,
            creationflags=subprocess.CREATE_NO_WINDOW, check=False)
    except subprocess.TimeoutExpired:
        raise OSError(f"Get-NetTCPSetting did not answer within {POWERSHELL_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise OSError(f"Get-NetTCPSetting failed (status {done.returncode})"
                      + (f": {said[0]}" if said else ""))
    return done.stdout.decode("utf-8", errors="replace")
