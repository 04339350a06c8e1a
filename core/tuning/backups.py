"""Backups: one small JSON file per change, written before the change, in a per-user folder.

    {"format": 1, "setting": "TcpTimedWaitDelay", "old_value": null, "new_value": 30,
     "location": "...", "time": "2025-01-31T10:15:02.123456+01:00", "host": "SRV01",
     "os": "Windows", "tool_version": "0.1.0", "boot_time": 1738310000.0}

old_value null means the value was absent: reverting deletes it (the OS default
applies again). boot_time (psutil.boot_time() when the change was made) lets a later
read tell whether Windows has rebooted since, i.e. whether a registry change that
needs a reboot is in effect yet (core.tuning.reminder).

Folder: $PORTPRESSURE_BACKUP_DIR if set; else Linux $XDG_STATE_HOME/portpressure/backups
(~/.local/state/...), Windows %LOCALAPPDATA%\\PortPressure\\backups.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from core import __version__
from core.tuning.base import TuningError, TuningInputError, Value, format_value, to_jsonable

BACKUP_DIR_ENV = "PORTPRESSURE_BACKUP_DIR"
FORMAT = 1
MAX_BACKUP_BYTES = 64 * 1024  # ours are ~300 bytes; anything big is not ours
# psutil.boot_time() on Windows is "now - uptime": it moves with clock corrections.
# Two boots are further apart than this (uptime before the write + the reboot itself).
SAME_BOOT_TOLERANCE_S = 5.0


def default_backup_dir() -> Path:
    override = os.environ.get(BACKUP_DIR_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "PortPressure" / "backups"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "portpressure" / "backups"


def this_host() -> str:
    return socket.gethostname()


def boot_time() -> float:
    return float(psutil.boot_time())


def same_boot(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= SAME_BOOT_TOLERANCE_S


@dataclass(frozen=True)
class Backup:
    setting: str
    old_value: Value
    new_value: Value
    location: str
    time: str
    host: str
    os: str
    tool_version: str
    boot_time: float | None
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "setting": self.setting,
            "old_value": to_jsonable(self.old_value),
            "new_value": to_jsonable(self.new_value),
            "location": self.location,
            "time": self.time,
            "host": self.host,
            "os": self.os,
            "tool_version": self.tool_version,
            "boot_time": self.boot_time,
        }

    @property
    def summary(self) -> str:
        return (f"{self.setting}: {format_value(self.old_value)} -> {format_value(self.new_value)} "
                f"on {self.time[:19].replace('T', ' ')}")


def write_backup(directory: Path, setting: str, old_value: Value, new_value: Value,
                 location: str, *, os_name: str | None = None, host: str | None = None,
                 boot: float | None = None) -> Backup:
    """Write the backup file (complete or not at all) and return it. TuningError, one
    line, when the folder cannot take it: then nothing may be changed."""
    now = datetime.now().astimezone()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise TuningError(f"cannot create the backup folder {directory}: "
                          f"{exc.strerror or exc}; nothing was changed") from None
    path = directory / f"{now:%Y%m%dT%H%M%S%f}-{setting}.json"
    backup = Backup(setting=setting, old_value=old_value, new_value=new_value, location=location,
                    time=now.isoformat(), host=host or this_host(), os=os_name or platform.system(),
                    tool_version=__version__, boot_time=boot_time() if boot is None else boot, path=path)
    data = json.dumps(backup.to_json(), indent=2) + "\n"
    try:
        # Write a temporary file and rename it: a crash leaves no half-written backup.
        fd, tmp = tempfile.mkstemp(prefix=".backup-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise TuningError(f"cannot write the backup into {directory}: {exc.strerror or exc}; "
                          f"nothing was changed") from None
    return backup


def _value(raw: Any, what: str, path: Path) -> Value:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if (isinstance(raw, list) and len(raw) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)):
        return (raw[0], raw[1])
    raise TuningInputError(f"{path}: not a PortPressure backup ({what} is {raw!r})")


def load_backup(path: Path) -> Backup:
    """Read and check a backup file; TuningInputError in one line when it is not one."""
    try:
        if path.stat().st_size > MAX_BACKUP_BYTES:
            raise TuningInputError(f"{path}: not a PortPressure backup (too large)")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuningInputError(f"{path}: no such backup file") from None
    except IsADirectoryError:
        raise TuningInputError(f"{path}: is a folder, not a backup file") from None
    except OSError as exc:
        raise TuningInputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TuningInputError(f"{path}: not a PortPressure backup (not JSON: {exc})") from None
    if not isinstance(raw, dict):
        raise TuningInputError(f"{path}: not a PortPressure backup (not a JSON object)")
    missing = [k for k in ("setting", "old_value", "new_value", "time", "host", "os") if k not in raw]
    if missing:
        raise TuningInputError(f"{path}: not a PortPressure backup (missing {', '.join(missing)})")
    texts = {k: raw[k] for k in ("setting", "time", "host", "os")}
    for key, text in texts.items():
        if not isinstance(text, str) or not text:
            raise TuningInputError(f"{path}: not a PortPressure backup ({key} is {text!r})")
    try:
        made = datetime.fromisoformat(raw["time"])
    except ValueError:
        raise TuningInputError(f"{path}: not a PortPressure backup (time is {raw['time']!r})") from None
    boot = raw.get("boot_time")
    return Backup(
        setting=raw["setting"],
        old_value=_value(raw["old_value"], "old_value", path),
        new_value=_value(raw["new_value"], "new_value", path),
        location=str(raw.get("location", "")),
        time=made.astimezone().isoformat(),  # aware, so backups from any offset compare
        host=raw["host"],
        os=raw["os"],
        tool_version=str(raw.get("tool_version", "")),
        boot_time=float(boot) if isinstance(boot, int | float) and not isinstance(boot, bool) else None,
        path=path,
    )


def made_at(backup: Backup) -> datetime:
    return datetime.fromisoformat(backup.time)


def list_backups(directory: Path) -> list[Backup]:
    """Readable backups in the folder, oldest first. Files that are not backups are
    skipped: the folder is for reading, a bad file must not hide the rest."""
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            found.append(load_backup(path))
        except TuningInputError:
            continue
    return sorted(found, key=made_at)


def latest_backup(directory: Path, host: str | None = None) -> Backup | None:
    """The newest backup made on `host` (this machine by default)."""
    host = host or this_host()
    mine = [b for b in list_backups(directory) if b.host == host]
    return mine[-1] if mine else None
