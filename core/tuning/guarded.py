"""The guard every OS backend shares: back up first, write, read back, verify; undo
from a backup only on the machine and for the setting it was made for.

A backend supplies the OS part through the hooks below (read, parse, check, write);
the order of the steps and the refusals live here once, so Linux and Windows cannot
drift apart.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from core.tuning.backups import boot_time, default_backup_dir, load_backup, this_host, write_backup
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
    unknown_setting,
)


class GuardedBackend(ABC):
    os_name: str = ""

    def __init__(self, backup_dir: Path | None = None, *, host: Callable[[], str] = this_host,
                 current_boot: Callable[[], float] = boot_time) -> None:
        self._backup_dir = backup_dir
        self._host = host  # which machine backups belong to
        self._current_boot = current_boot  # psutil.boot_time(), recorded in every backup

    @property
    def backup_dir(self) -> Path:
        # Resolved on use, so PORTPRESSURE_BACKUP_DIR set after start-up still counts.
        return self._backup_dir if self._backup_dir is not None else default_backup_dir()

    # -- hooks -----------------------------------------------------------------------------
    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Every setting shown, in display order."""

    @abstractmethod
    def writable_names(self) -> tuple[str, ...]:
        """The settings this tool changes (the rest are shown only)."""

    @abstractmethod
    def read(self, name: str) -> SettingState: ...

    @abstractmethod
    def _stored(self, name: str) -> Value:
        """The value as stored now (None: absent); OSError/ValueError when unreadable."""

    @abstractmethod
    def _parse(self, name: str, text: str) -> Value:
        """Text as typed -> typed value; TuningInputError when it is not one."""

    @abstractmethod
    def _check(self, name: str, value: Value, policy: bool) -> None:
        """TuningInputError unless the OS takes `value`; with `policy`, also this tool's
        own limits for new values (an undo restores whatever was there before)."""

    @abstractmethod
    def _location(self, name: str) -> str: ...

    @abstractmethod
    def _steps(self, name: str, old: Value, new: Value) -> list[str]:
        """The write, in words: exactly what will be run or written."""

    @abstractmethod
    def _write(self, name: str, value: Value) -> None:
        """Make the change. PermissionError when not allowed, OSError when refused."""

    def _warnings(self, name: str, old: Value, new: Value) -> list[str]:
        return []

    def _unit(self, name: str) -> str:
        return ""

    def _needs_reboot(self, name: str) -> bool:
        return False

    def _permission_problem(self, name: str, value: Value) -> str | None:
        """Why this process cannot make the change, with what to run instead; None if it can."""
        return None

    def _needs_elevation(self) -> bool:
        return False

    def _apply_elevated(self, plan: Plan) -> Applied:
        raise TuningPermissionError(f"{plan.setting}: elevation is not available here")

    # -- the interface ---------------------------------------------------------------------
    def read_all(self) -> tuple[SettingState, ...]:
        return tuple(self.read(name) for name in self.names())

    def _known(self, name: str, writable: bool = True) -> None:
        if name not in self.names():
            raise unknown_setting(name, self.writable_names() if writable else self.names())
        if writable and name not in self.writable_names():
            state = self.read(name)
            raise TuningInputError(f"{name} is shown only, this tool does not change it: "
                                   f"{state.why_not or 'read-only'}; settings it changes: "
                                   f"{', '.join(self.writable_names())}")

    def value_text(self, name: str, value: Value) -> str:
        """The value as a command line takes it back (`tune set NAME TEXT`)."""
        if value is None:
            return "default"
        if isinstance(value, tuple):
            return f"{value[0]} {value[1]}"
        return str(value)

    def validate(self, name: str, text: str) -> Value:
        self._known(name)
        value = self._parse(name, text)
        self._check(name, value, policy=True)
        return value

    def plan(self, name: str, value: Value) -> Plan:
        self._known(name)
        self._check(name, value, policy=True)
        return self._make_plan(name, value)

    def _make_plan(self, name: str, value: Value, reverts: Path | None = None,
                   extra_warnings: Sequence[str] = ()) -> Plan:
        try:
            old = self._stored(name)
        except (OSError, ValueError) as exc:
            raise TuningError(f"{name}: cannot read the current value ({exc}); nothing will be "
                              f"changed without a backup of it") from None
        warnings = list(extra_warnings) + self._warnings(name, old, value)
        if old == value:
            warnings.append(f"{name} is already {format_value(value, self._unit(name))}: "
                            f"applying writes the same value again")
        return Plan(
            setting=name, location=self._location(name), old_value=old, new_value=value,
            unit=self._unit(name), needs_reboot=self._needs_reboot(name), backup_dir=self.backup_dir,
            steps=tuple([f"write a backup of the current value into {self.backup_dir}"]
                        + self._steps(name, old, value)
                        + ["read the value back and check it is the one written"]),
            warnings=tuple(warnings), elevation=self._needs_elevation(), reverts=reverts,
            value_text=self.value_text(name, value), blocked=self._permission_problem(name, value),
        )

    def apply(self, plan: Plan) -> Applied:
        name = plan.setting
        self._known(name)
        self._check(name, plan.new_value, policy=plan.reverts is None)
        problem = self._permission_problem(name, plan.new_value)
        if problem:
            raise TuningPermissionError(problem)
        try:
            current = self._stored(name)
        except (OSError, ValueError) as exc:
            raise TuningError(f"{name}: cannot read the current value ({exc}); nothing was written") from None
        if current != plan.old_value:
            raise TuningError(f"{name} changed since the plan was made (it was "
                              f"{format_value(plan.old_value)}, it is now {format_value(current)}); "
                              f"nothing was written: look at the new plan")
        if plan.elevation:
            return self._apply_elevated(plan)
        return self._apply_here(plan)

    def _apply_here(self, plan: Plan) -> Applied:
        name, value = plan.setting, plan.new_value
        backup = write_backup(self.backup_dir, name, plan.old_value, value, plan.location,
                              os_name=self.os_name, host=self._host(), boot=self._current_boot())
        try:
            self._write(name, value)
        except OSError as exc:
            self._after_failed_write(plan, backup.path, exc)
        try:
            readback = self._stored(name)
        except (OSError, ValueError) as exc:
            raise VerifyMismatch(f"{name}: written, but it could not be read back ({exc}); "
                                 f"the backup is kept: {backup.path}", backup.path) from None
        if readback != value:
            raise VerifyMismatch(
                f"{name}: wrote {format_value(value)} but read back {format_value(readback)}; "
                f"something else may manage this setting; the backup is kept: {backup.path}",
                backup.path)
        return Applied(plan=plan, backup=backup.path, state=self.read(name))

    def _after_failed_write(self, plan: Plan, backup: Path, exc: OSError) -> NoReturn:
        """The write raised: if nothing changed, the backup describes nothing and goes;
        otherwise it stays, and the message says where."""
        name = plan.setting
        reason = exc.strerror or str(exc) or type(exc).__name__
        try:
            unchanged = self._stored(name) == plan.old_value
        except (OSError, ValueError):
            unchanged = False
        if unchanged:
            with contextlib.suppress(OSError):
                backup.unlink()
            if isinstance(exc, PermissionError):
                raise TuningPermissionError(f"{name}: access denied writing {plan.location} "
                                            f"({reason}); nothing was changed") from None
            raise TuningError(f"{name}: the OS refused {format_value(plan.new_value)} at "
                              f"{plan.location} ({reason}); nothing was changed") from None
        raise VerifyMismatch(f"{name}: the write failed ({reason}) and the value may have changed; "
                             f"the backup is kept: {backup}", backup) from None

    def plan_revert(self, backup_path: Path, setting: str | None = None) -> Plan:
        backup = load_backup(backup_path)
        host = self._host()
        if backup.host != host:
            raise TuningInputError(f"{backup_path}: made on host {backup.host!r}, this is {host!r}; "
                                   f"refusing to restore another machine's setting")
        if backup.os != self.os_name:
            raise TuningInputError(f"{backup_path}: made on {backup.os}, this is {self.os_name}")
        if setting is not None and backup.setting != setting:
            raise TuningInputError(f"{backup_path}: is a backup of {backup.setting}, not of {setting}")
        if backup.setting not in self.writable_names():
            raise TuningInputError(f"{backup_path}: is a backup of {backup.setting!r}, which this tool "
                                   f"does not change here ({', '.join(self.writable_names())})")
        try:
            self._check(backup.setting, backup.old_value, policy=False)
        except TuningInputError as exc:
            raise TuningInputError(f"{backup_path}: its old value cannot be restored: {exc}") from None
        warnings = []
        try:
            current = self._stored(backup.setting)
        except (OSError, ValueError):
            current = backup.new_value  # _make_plan reports the read failure
        if current != backup.new_value:
            warnings.append(f"{backup.setting} is {format_value(current)} now, not the "
                            f"{format_value(backup.new_value)} this backup's change set: it was "
                            f"changed again since; undoing still restores {format_value(backup.old_value)}")
        return self._make_plan(backup.setting, backup.old_value, reverts=backup_path,
                               extra_warnings=warnings)

    def revert(self, backup_path: Path, setting: str | None = None) -> Applied:
        return self.apply(self.plan_revert(backup_path, setting))
