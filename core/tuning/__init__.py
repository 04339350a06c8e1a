"""Guarded OS settings: read, validate, plan, apply (backup first, verify after), revert.

`open_backend()` gives the backend for this OS; everything else talks to the
TuningBackend interface (core.tuning.base).
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.tuning.base import (
    JSON_KEYS,
    Applied,
    Plan,
    SettingState,
    TuningBackend,
    TuningError,
    TuningInputError,
    TuningPermissionError,
    Value,
    VerifyMismatch,
    format_value,
)
from core.tuning.reminder import pending_reboot_reminder


def open_backend(backup_dir: Path | None = None, allow_elevation: bool = True) -> TuningBackend:
    """The settings of this machine. TuningError where this OS has none we know."""
    if sys.platform == "win32":
        from core.tuning.windows import WindowsTuningBackend

        return WindowsTuningBackend.for_this_machine(backup_dir=backup_dir, allow_elevation=allow_elevation)
    if sys.platform.startswith("linux"):
        from core.tuning.linux import LinuxSysctlBackend

        return LinuxSysctlBackend(backup_dir=backup_dir)
    raise TuningError(f"no OS settings known for {sys.platform}: only Linux and Windows")


__all__ = [
    "JSON_KEYS", "Applied", "Plan", "SettingState", "TuningBackend", "TuningError", "TuningInputError",
    "TuningPermissionError", "Value", "VerifyMismatch", "format_value", "open_backend",
    "pending_reboot_reminder",
]
