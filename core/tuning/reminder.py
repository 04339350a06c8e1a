"""Is a change waiting for a reboot?

Windows reads TcpTimedWaitDelay at boot and does not report the TIME_WAIT length it
uses, so the effective value cannot be observed. It is inferred from our backups:
each records psutil.boot_time() when the change was made. If this tool changed the
setting since the current boot, Windows still uses what was stored before the first
such change (the `old_value` of the earliest backup made in this boot); otherwise it
uses what is stored now (or the OS default when nothing is). A change made by hand
(regedit) since boot is invisible to this inference; the state's notes say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.tuning.backups import Backup, made_at, same_boot
from core.tuning.base import SettingState, Value, format_value


def stored_or_default(value: Value, default: Value) -> Value:
    return default if value is None else value


def effective_since_boot(backups: Iterable[Backup], setting: str, host: str, stored: Value,
                         default: Value, current_boot: float) -> tuple[Value, Backup | None]:
    """(the value Windows uses now, the backup that shows a change is pending or None)."""
    this_boot = [b for b in backups
                 if b.setting == setting and b.host == host and same_boot(b.boot_time, current_boot)]
    if not this_boot:
        return stored_or_default(stored, default), None
    first = min(this_boot, key=made_at)
    at_boot = stored_or_default(first.old_value, default)
    pending = at_boot != stored_or_default(stored, default)
    return at_boot, (first if pending else None)


def pending_reboot_reminder(states: Sequence[SettingState]) -> str | None:
    """One sentence for the banner while a stored value that needs a reboot differs from
    the value in effect; None when nothing is pending."""
    pending = []
    for state in states:
        if not state.needs_reboot or state.effective is None:
            continue
        stored = stored_or_default(state.value, state.default)
        if stored != state.effective:
            pending.append(f"{state.name} is set to {format_value(stored, state.unit)}, but "
                           f"{format_value(state.effective, state.unit)} stays in effect until the "
                           f"next restart")
    if not pending:
        return None
    return "; ".join(pending) + "."
