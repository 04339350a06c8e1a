"""Administrator rights for one write, never for the window.

is_admin(): CheckTokenMembership against BUILTIN\\Administrators (under UAC a filtered
token holds that group deny-only, so this is True only when really elevated);
shell32 IsUserAnAdmin as the fallback.

Not elevated, the change runs as a one-shot `portpressure tune set NAME VALUE --yes`
(or `tune revert FILE --yes`) started through ShellExecuteExW with the "runas" verb:
Windows shows its consent prompt, we wait for that process and take its exit status
(SEE_MASK_NOCLOSEPROCESS, WaitForSingleObject, GetExitCodeProcess). The child cannot
hand back text through a pipe (ShellExecuteEx gives none), so it writes a small JSON
result file whose name it is given; and since an elevated process does not
necessarily inherit our environment, everything it needs (backup folder, result
file) travels on its command line.

PyInstaller: a frozen exe relaunching itself must look like a fresh start, not like
a child of the running bootloader (which would reuse or delete its unpack folder):
PYINSTALLER_RESET_ENVIRONMENT=1 is set in our environment for the launch.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import ntpath
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.tuning.base import TuningError

SEE_MASK_NOCLOSEPROCESS = 0x00000040
SEE_MASK_NOASYNC = 0x00000100
SW_HIDE = 0
ERROR_CANCELLED = 1223  # the user answered No at the consent prompt
WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
ELEVATED_TIMEOUT_S = 120.0  # after consent; one registry or netsh write takes well under a second
PYINSTALLER_RESET = "PYINSTALLER_RESET_ENVIRONMENT"
SOURCE_ENTRY_MODULE = "gui.launcher"  # the `portpressure` entry point (pyproject)


@dataclass(frozen=True)
class ElevatedCommand:
    """What ShellExecuteExW gets: the program, its one-string parameters, where to start."""

    file: str
    parameters: str
    directory: str
    environment: tuple[tuple[str, str], ...] = ()  # set in our environment for the launch


def relaunch_command(args: Sequence[str], *, frozen: bool | None = None,
                     executable: str | None = None, source_root: Path | None = None) -> ElevatedCommand:
    """`portpressure <args>` as this same program: the frozen exe itself, or this Python
    running the entry module from the folder that holds the `core` package (an elevated
    process starts in System32, where `-m` would find nothing)."""
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    executable = executable or sys.executable
    if frozen:
        return ElevatedCommand(file=executable, parameters=subprocess.list2cmdline(list(args)),
                               directory=ntpath.dirname(executable),
                               environment=((PYINSTALLER_RESET, "1"),))
    root = source_root or Path(__file__).resolve().parents[2]
    return ElevatedCommand(file=executable,
                           parameters=subprocess.list2cmdline(["-m", SOURCE_ENTRY_MODULE, *args]),
                           directory=str(root))


@contextlib.contextmanager
def _environment(pairs: Sequence[tuple[str, str]]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name, _ in pairs}
    os.environ.update(dict(pairs))
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


class Elevator(Protocol):
    def run(self, args: Sequence[str]) -> int:
        """Run `portpressure <args>` as Administrator, wait, return its exit status.
        TuningError when it could not be started (consent declined, ...)."""
        ...


class ShellExecuteElevator:
    def __init__(self, timeout_s: float = ELEVATED_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s

    def run(self, args: Sequence[str]) -> int:
        command = relaunch_command(args)
        with _environment(command.environment):
            return run_elevated(command, self.timeout_s)


def run_elevated(command: ElevatedCommand, timeout_s: float) -> int:
    if sys.platform != "win32":
        raise TuningError("elevation (UAC) exists only on Windows")
    from ctypes import wintypes

    class SHELLEXECUTEINFOW(ctypes.Structure):
        _fields_ = [
            ("cbSize", wintypes.DWORD), ("fMask", ctypes.c_ulong), ("hwnd", wintypes.HWND),
            ("lpVerb", wintypes.LPCWSTR), ("lpFile", wintypes.LPCWSTR),
            ("lpParameters", wintypes.LPCWSTR), ("lpDirectory", wintypes.LPCWSTR),
            ("nShow", ctypes.c_int), ("hInstApp", wintypes.HINSTANCE), ("lpIDList", ctypes.c_void_p),
            ("lpClass", wintypes.LPCWSTR), ("hkeyClass", wintypes.HKEY), ("dwHotKey", wintypes.DWORD),
            ("hIconOrMonitor", wintypes.HANDLE), ("hProcess", wintypes.HANDLE),
        ]

    shell32 = ctypes.WinDLL("shell32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    shell32.ShellExecuteExW.argtypes = [ctypes.POINTER(SHELLEXECUTEINFOW)]
    shell32.ShellExecuteExW.restype = wintypes.BOOL
    kernel32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    kernel32.WaitForSingleObject.restype = wintypes.DWORD
    kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    kernel32.GetExitCodeProcess.restype = wintypes.BOOL
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]

    info = SHELLEXECUTEINFOW()
    info.cbSize = ctypes.sizeof(info)
    info.fMask = SEE_MASK_NOCLOSEPROCESS | SEE_MASK_NOASYNC
    info.lpVerb = "runas"
    info.lpFile = command.file
    info.lpParameters = command.parameters
    info.lpDirectory = command.directory
    info.nShow = SW_HIDE
    forget_bundled_dll_directory()
    if not shell32.ShellExecuteExW(ctypes.byref(info)):
        error = ctypes.get_last_error()
        if error == ERROR_CANCELLED:
            raise TuningError("Administrator permission was declined at the Windows prompt; "
                              "nothing was changed")
        raise TuningError(f"could not start the elevated change: {ctypes.FormatError(error)} "
                          f"(error {error}); nothing was changed")
    if not info.hProcess:
        raise TuningError("Windows started the elevated change without a process handle; "
                          "its result is unknown")
    try:
        waited = kernel32.WaitForSingleObject(info.hProcess, int(timeout_s * 1000))
        if waited != WAIT_OBJECT_0:
            raise TuningError(f"the elevated change did not finish within {timeout_s:.0f} s; "
                              f"look at the value again before retrying")
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(info.hProcess, ctypes.byref(code)):
            raise TuningError("the elevated change finished but its exit status could not be read")
        return int(code.value)
    finally:
        kernel32.CloseHandle(info.hProcess)


def forget_bundled_dll_directory() -> None:
    """A PyInstaller build sets its unpack folder as the DLL directory, and child
    processes inherit it: system tools would load the bundle's copies of system DLLs."""
    if sys.platform == "win32" and getattr(sys, "frozen", False):
        ctypes.windll.kernel32.SetDllDirectoryW(None)


def is_admin() -> bool:
    """Whether this process runs with Administrator rights (elevated)."""
    if sys.platform != "win32":
        return False
    from ctypes import wintypes

    class SID_IDENTIFIER_AUTHORITY(ctypes.Structure):
        _fields_ = [("Value", ctypes.c_ubyte * 6)]

    security_nt_authority = SID_IDENTIFIER_AUTHORITY((ctypes.c_ubyte * 6)(0, 0, 0, 0, 0, 5))
    security_builtin_domain_rid = 32
    domain_alias_rid_admins = 544
    try:
        advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
        advapi32.AllocateAndInitializeSid.argtypes = [
            ctypes.POINTER(SID_IDENTIFIER_AUTHORITY), wintypes.BYTE, *([wintypes.DWORD] * 8),
            ctypes.POINTER(ctypes.c_void_p)]
        advapi32.AllocateAndInitializeSid.restype = wintypes.BOOL
        advapi32.CheckTokenMembership.argtypes = [wintypes.HANDLE, ctypes.c_void_p,
                                                  ctypes.POINTER(wintypes.BOOL)]
        advapi32.CheckTokenMembership.restype = wintypes.BOOL
        advapi32.FreeSid.argtypes = [ctypes.c_void_p]
        sid = ctypes.c_void_p()
        if not advapi32.AllocateAndInitializeSid(
                ctypes.byref(security_nt_authority), 2, security_builtin_domain_rid,
                domain_alias_rid_admins, 0, 0, 0, 0, 0, 0, ctypes.byref(sid)):
            raise OSError(ctypes.get_last_error(), "AllocateAndInitializeSid failed")
        try:
            member = wintypes.BOOL()
            if not advapi32.CheckTokenMembership(None, sid, ctypes.byref(member)):
                raise OSError(ctypes.get_last_error(), "CheckTokenMembership failed")
            return bool(member.value)
        finally:
            advapi32.FreeSid(sid)
    except (OSError, AttributeError):
        try:
            return bool(ctypes.windll.shell32.IsUserAnAdmin())
        except (OSError, AttributeError):
            return False


# -- the elevated child's answer ------------------------------------------------------------
@dataclass(frozen=True)
class ChildResult:
    ok: bool
    backup: str | None
    error: str | None


def write_child_result(path: Path, ok: bool, backup: Path | None, error: str | None) -> None:
    """Written by the elevated `tune set|revert --result-file PATH` before it exits."""
    data = json.dumps({"ok": ok, "backup": str(backup) if backup else None, "error": error})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def read_child_result(path: Path) -> ChildResult | None:
    """None when the child wrote nothing (it never started, or died early)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        return None
    backup, error = raw.get("backup"), raw.get("error")
    return ChildResult(ok=raw["ok"], backup=backup if isinstance(backup, str) else None,
                       error=error if isinstance(error, str) else None)
