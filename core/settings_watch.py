"""The settings behind exhaustion, re-read every sample: a change is an event, once.

Whoever changes them (this tool, `sysctl -w`, `netsh`, regedit, a configuration
manager), the next poll sees the new value through core.tuning's own readers and says
so in one `setting` event (name, old, new). The first poll only learns the values. A
setting that cannot be read this time is skipped, not reported as changed.

Reading is cheap on Linux (a few /proc/sys files); on Windows it runs netsh, so there
the settings are re-read every WINDOWS_EVERY_S at most. No Qt here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from core.judgement import now_iso as wall_now_iso
from core.model import Event, PortConfig
from core.tuning import SettingState, TuningBackend, TuningError, format_value, open_backend
from core.tuning.base import to_jsonable

log = logging.getLogger(__name__)
WINDOWS_EVERY_S = 15.0  # netsh runs a few processes per read: a change shows within 15 s


# Recorded setting changes that change what PortConfig says (a replayed moment's settings).
_RANGE_NAMES = ("net.ipv4.ip_local_port_range", "DynamicPortRange")
_TW_REUSE_NAME = "net.ipv4.tcp_tw_reuse"


def config_after(config: PortConfig, events: Iterable[Event]) -> PortConfig:
    """The port settings after these `setting` events (oldest first): what was in effect
    at a replayed moment, when the recording's header holds those of its start."""
    for event in events:
        name, new = event.details.get("name"), event.details.get("new")
        if event.kind != "setting":
            continue
        if name == _TW_REUSE_NAME and isinstance(new, int):
            config = replace(config, tw_reuse=new)
        elif name in _RANGE_NAMES and isinstance(new, list | tuple) and len(new) == 2:
            config = replace(config, dynamic_range=(int(new[0]), int(new[1])))
    return config


def _readable(state: SettingState) -> bool:
    return not (state.why_not or "").startswith("cannot be read")


def setting_event(time_iso: str, old: SettingState, new: SettingState) -> Event:
    text = (f"{new.name} changed: {format_value(old.value, old.unit)} -> "
            f"{format_value(new.value, new.unit)}")
    if new.needs_reboot:  # the value is stored now; Windows reads it at boot
        text += " (takes effect after a reboot)"
    return Event(time_iso, "setting", text + ".",
                 {"name": new.name, "old": to_jsonable(old.value), "new": to_jsonable(new.value)})


class SettingsWatch:
    """poll() returns the changes since the previous poll; `states` the values now."""

    def __init__(self, backend: TuningBackend | None = None, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 now_iso: Callable[[], str] | None = None) -> None:
        self._backend = backend
        self._every_s = every_s
        self._clock = clock
        self._now_iso = now_iso or wall_now_iso
        self._states: dict[str, SettingState] = {}
        self._last_poll: float | None = None
        self._failed = False

    @property
    def states(self) -> Mapping[str, SettingState]:
        return dict(self._states)

    def value(self, name: str) -> Any:
        state = self._states.get(name)
        return None if state is None else state.value

    def _open(self) -> TuningBackend | None:
        if self._backend is None and not self._failed:
            try:
                self._backend = open_backend()
            except TuningError as exc:  # an OS without known settings: nothing to watch
                log.info("settings are not watched: %s", exc)
                self._failed = True
        if self._backend is not None and self._every_s is None:
            self._every_s = 0.0 if self._backend.os_name == "Linux" else WINDOWS_EVERY_S
        return self._backend

    def poll(self) -> tuple[Event, ...]:
        backend = self._open()
        if backend is None:
            return ()
        now = self._clock()
        if self._last_poll is not None and now - self._last_poll < (self._every_s or 0.0):
            return ()
        self._last_poll = now
        events = []
        for name in backend.names():
            try:
                state = backend.read(name)
            except (TuningError, OSError) as exc:
                log.debug("reading %s: %s", name, exc)
                continue
            if not _readable(state):
                continue
            old = self._states.get(name)
            self._states[name] = state
            if old is not None and old.value != state.value:
                events.append(setting_event(self._now_iso(), old, state))
        return tuple(events)
