"""The one interface every OS setting goes through: read, validate, plan, apply, revert.

A value is an int, an inclusive port range (low, high), or None where the OS stores
nothing (a registry value that is absent, so the OS default applies). Read-only
rows (e.g. Windows' excluded port ranges) may hold other JSON-able shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# What `tune show --json` prints per setting (DESIGN.md); nothing more, nothing less.
JSON_KEYS = ("name", "value", "effective", "default", "unit", "range", "needs_reboot",
             "writable", "why_not")

Value = int | tuple[int, int] | None


class TuningError(Exception):
    """A change could not be made or undone; the message is one line for the user."""


class TuningInputError(TuningError, ValueError):
    """A bad setting name, value or backup file: nothing was written."""


class TuningPermissionError(TuningError):
    """Not allowed to write here; the message says what to run instead."""


class VerifyMismatch(TuningError):
    """The value read back after the write is not the one written. The backup stays."""

    def __init__(self, message: str, backup: Path) -> None:
        super().__init__(message)
        self.backup = backup


def to_jsonable(value: Any) -> Any:
    """Tuples (ranges, lists of ranges) become lists, as json writes them anyway."""
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    return value


def format_value(value: Any, unit: str = "") -> str:
    """A value for people: None is "(not set)", a range "40000-40999"."""
    if value is None:
        return "(not set)"
    if isinstance(value, tuple | list):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            return f"{value[0]}-{value[1]}"
        return ", ".join(format_value(v) for v in value) or "(none)"
    return f"{value} {unit}" if unit in ("s", "ms") else str(value)


@dataclass(frozen=True)
class SettingState:
    """One setting as read now."""

    name: str
    value: Any  # as stored; None when absent
    effective: Any  # what the OS uses right now (None when it does not use this setting)
    default: Any  # the OS default
    unit: str
    range: str  # valid input, in words
    needs_reboot: bool
    writable: bool  # whether this tool can change it from here
    why_not: str | None  # when not writable: why, and what to do instead
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Exactly the `tune show --json` keys."""
        return {
            "name": self.name,
            "value": to_jsonable(self.value),
            "effective": to_jsonable(self.effective),
            "default": to_jsonable(self.default),
            "unit": self.unit,
            "range": self.range,
            "needs_reboot": self.needs_reboot,
            "writable": self.writable,
            "why_not": self.why_not,
        }


@dataclass(frozen=True)
class Plan:
    """The exact change, in words, before anything is written."""

    setting: str
    location: str  # /proc/sys path, registry key and value, or the netsh command
    old_value: Value  # stored now (None: absent)
    new_value: Value  # None: delete the value (back to the OS default)
    unit: str
    needs_reboot: bool
    backup_dir: Path
    steps: tuple[str, ...]  # what will be done, in order
    warnings: tuple[str, ...] = ()
    elevation: bool = False  # Windows will ask for Administrator rights for this change
    reverts: Path | None = None  # the backup this plan restores, if it is an undo
    value_text: str = ""  # the new value as typed on a command line (for the elevated relaunch)
    blocked: str | None = None  # why this process cannot make the change, and what to run instead

    @property
    def change(self) -> str:
        return (f"{self.setting}: {format_value(self.old_value, self.unit)} -> "
                f"{format_value(self.new_value, self.unit)}")

    def describe(self) -> str:
        """The plan as the CLI prints it and the Apply dialog shows it."""
        lines = [("Undo " if self.reverts else "Change ") + self.change,
                 f"Where: {self.location}"]
        if self.reverts:
            lines.append(f"Restoring from backup: {self.reverts}")
        lines.append(f"Backup first, into: {self.backup_dir}")
        lines.append("Reboot: " + ("REQUIRED before Windows uses the new value" if self.needs_reboot
                                   else "not needed, takes effect at once"))
        if self.elevation:
            lines.append("Administrator: Windows will ask for permission for this one change "
                         "(the window itself stays unelevated)")
        lines += [f"  {n}. {step}" for n, step in enumerate(self.steps, 1)]
        lines += [f"Note: {w}" for w in self.warnings]
        if self.blocked:
            lines.append(f"Cannot apply from here: {self.blocked}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Applied:
    """A change that was written and read back."""

    plan: Plan
    backup: Path
    state: SettingState  # read back after the write
    messages: tuple[str, ...] = field(default_factory=tuple)


class TuningBackend(Protocol):
    """What the CLI and the Settings panel use; one implementation per OS."""

    os_name: str

    @property
    def backup_dir(self) -> Path: ...
    def names(self) -> tuple[str, ...]: ...
    def writable_names(self) -> tuple[str, ...]: ...
    def read_all(self) -> tuple[SettingState, ...]: ...
    def read(self, name: str) -> SettingState: ...
    def validate(self, name: str, text: str) -> Value: ...
    def plan(self, name: str, value: Value) -> Plan: ...
    def apply(self, plan: Plan) -> Applied: ...
    def plan_revert(self, backup_path: Path, setting: str | None = None) -> Plan: ...
    def revert(self, backup_path: Path, setting: str | None = None) -> Applied: ...


def unknown_setting(name: str, known: Sequence[str]) -> TuningInputError:
    return TuningInputError(f"unknown setting {name!r}; valid names here: {', '.join(known)}")
