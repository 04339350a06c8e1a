"""REG_DWORD values under HKEY_LOCAL_MACHINE, behind a three-call interface.

WinRegistry is the real thing (winreg, Windows only); InMemoryRegistry stands in for it
where Windows is not (tests, demos) and can be told to deny or ignore writes, the two
ways a real registry write goes wrong (no Administrator rights; a policy or agent that
puts the old value back).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Protocol


class RegistryBackend(Protocol):
    def read_dword(self, path: str, name: str) -> int | None:
        """HKLM\\path\\name; None when the value is absent. ValueError when it exists
        with another type (REG_SZ, ...), OSError when the key cannot be read."""
        ...

    def write_dword(self, path: str, name: str, value: int) -> None:
        """PermissionError without Administrator rights."""
        ...

    def delete_value(self, path: str, name: str) -> None:
        """Removing an absent value is not an error."""
        ...


class WinRegistry:
    """winreg on HKEY_LOCAL_MACHINE, 64-bit view (a 32-bit Python must not be redirected)."""

    def read_dword(self, path: str, name: str) -> int | None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path, 0,
                                winreg.KEY_READ | winreg.KEY_WOW64_64KEY) as key:
                value, kind = winreg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        if kind != winreg.REG_DWORD or not isinstance(value, int):
            raise ValueError(f"{name} is stored with registry type {kind}, "
                             f"not REG_DWORD ({winreg.REG_DWORD})")
        return value

    def write_dword(self, path: str, name: str, value: int) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        # OSError with winerror 5 (ERROR_ACCESS_DENIED) arrives as PermissionError.
        with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, path, 0,
                                winreg.KEY_SET_VALUE | winreg.KEY_WOW64_64KEY) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_DWORD, value)

    def delete_value(self, path: str, name: str) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path, 0,
                            winreg.KEY_SET_VALUE | winreg.KEY_WOW64_64KEY) as key, \
                contextlib.suppress(FileNotFoundError):
            winreg.DeleteValue(key, name)


class InMemoryRegistry:
    """A dict of (key path, value name) -> int|str, case-insensitive like the registry."""

    def __init__(self, values: dict[tuple[str, str], int | str] | None = None, *,
                 deny_writes: bool = False, ignore_writes: bool = False) -> None:
        self.values: dict[tuple[str, str], int | str] = {
            self._key(p, n): v for (p, n), v in (values or {}).items()}
        self.deny_writes = deny_writes  # as without Administrator rights
        self.ignore_writes = ignore_writes  # the write "succeeds", the value stays (a policy)
        self.writes: list[tuple[str, str, int | None]] = []

    @staticmethod
    def _key(path: str, name: str) -> tuple[str, str]:
        return path.lower(), name.lower()

    def read_dword(self, path: str, name: str) -> int | None:
        value = self.values.get(self._key(path, name))
        if value is None:
            return None
        if not isinstance(value, int):
            raise ValueError(f"{name} is stored with registry type REG_SZ (1), not REG_DWORD (4)")
        return value

    def _check_writable(self) -> None:
        if self.deny_writes:
            raise PermissionError(13, "Access is denied")

    def write_dword(self, path: str, name: str, value: int) -> None:
        self._check_writable()
        if not 0 <= value <= 0xFFFFFFFF:
            raise OSError(22, "not a DWORD")
        self.writes.append((path, name, value))
        if not self.ignore_writes:
            self.values[self._key(path, name)] = value

    def delete_value(self, path: str, name: str) -> None:
        self._check_writable()
        self.writes.append((path, name, None))
        if not self.ignore_writes:
            self.values.pop(self._key(path, name), None)
