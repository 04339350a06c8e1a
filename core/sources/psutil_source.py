"""Fallback reader for systems without a faster one (macOS, BSD): psutil.net_connections.

psutil builds one Python object per socket (~1.5-2 s per call at 100k sockets), so this
is the slow path, used only where no native reader exists. It offers no TCP protocol
counters, so the cumulative counters (opens, failed attempts, resets) read 0 and the
limits say so; the TIME_WAIT and ESTABLISHED counts come from the table itself.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import psutil

from core.model import (
    BOUND,
    ESTABLISHED,
    NO_PID,
    STATE_CODE,
    KernelCounters,
    PortConfig,
    TableRead,
    empty_table,
)
from core.sources.base import SourceError
from core.sources.linux_proc import read_port_config as read_linux_port_config

# psutil status strings that are not our state names. "NONE" is a socket with no state
# yet (bound, not connected); CLOSE, DELETE_TCB (Windows), IDLE and BOUND (Solaris)
# likewise hold a port without a connection.
_EXTRA_STATES = {"NONE": BOUND, "CLOSE": BOUND, "DELETE_TCB": BOUND, "IDLE": BOUND, "BOUND": BOUND}
PSUTIL_STATE: dict[str, int] = {**STATE_CODE, **_EXTRA_STATES}

# Where the OS range is not read: IANA's dynamic range, the default on macOS and FreeBSD.
DEFAULT_DYNAMIC_RANGE = (49152, 65535)
DEFAULT_TIME_WAIT_SECONDS = 60.0
LINUX_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"

CUMULATIVE_COUNTERS_LIMIT = (
    "psutil fallback: this OS gives no TCP counters here, so connection opens, failed "
    "attempts and resets read 0 and their rates are not shown"
)


def _packed(family: int, ip: str) -> bytes:
    """16-byte SOCKET_DTYPE address slot for an address in text form."""
    if family == socket.AF_INET6:
        return socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])  # drop a "%scope"
    return socket.inet_pton(socket.AF_INET, ip) + bytes(12)


def table_from_connections(connections: Iterable[Any]) -> np.ndarray:
    """psutil sconn tuples -> SOCKET_DTYPE table (TCP over IPv4/IPv6 only)."""
    rows = [c for c in connections if c.family in (socket.AF_INET, socket.AF_INET6)]
    table = empty_table(len(rows))
    if not rows:
        return table
    zero = bytes(16)
    table["state"] = [PSUTIL_STATE.get(c.status, BOUND) for c in rows]
    table["family"] = [6 if c.family == socket.AF_INET6 else 4 for c in rows]
    table["lport"] = [c.laddr.port if c.laddr else 0 for c in rows]
    table["rport"] = [c.raddr.port if c.raddr else 0 for c in rows]
    # PID 0 is nobody's on every OS (Windows reports it for TIME_WAIT and orphaned sockets).
    table["pid"] = [c.pid or NO_PID for c in rows]
    table["laddr"] = [_packed(c.family, c.laddr.ip) if c.laddr else zero for c in rows]
    table["raddr"] = [_packed(c.family, c.raddr.ip) if c.raddr else zero for c in rows]
    return table


def counters_from_table(table: np.ndarray, monotonic: float) -> KernelCounters:
    return KernelCounters(
        monotonic=monotonic,
        time_wait=None,  # no OS counter; the table has the count
        active_opens=0,
        passive_opens=0,
        attempt_fails=0,
        established_resets=0,
        current_established=int(np.count_nonzero(table["state"] == ESTABLISHED)),
    )


def read_port_config(proc: str = "/proc", system: str = sys.platform) -> PortConfig:
    """Linux: the real settings from /proc. Elsewhere: documented defaults, with a note."""
    if system.startswith("linux"):
        try:
            return read_linux_port_config(proc)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read {LINUX_PORT_RANGE}: {exc}") from exc
    lo, hi = DEFAULT_DYNAMIC_RANGE
    return PortConfig(
        os_name=platform.system() if system == sys.platform else system,
        dynamic_range=DEFAULT_DYNAMIC_RANGE,
        time_wait_seconds=DEFAULT_TIME_WAIT_SECONDS,
        # BSD-style stacks hand out a local port once per local address: the cautious choice.
        pool_scope="per_local_address",
        notes=(
            f"dynamic port range not read on this OS; assuming the IANA default {lo}-{hi} "
            f"(macOS/BSD: sysctl net.inet.ip.portrange.first/last)",
            f"TIME_WAIT length not read on this OS; assuming {DEFAULT_TIME_WAIT_SECONDS:.0f} s",
        ),
    )


class PsutilSource:
    name = "psutil"

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self.privileged = hasattr(os, "geteuid") and os.geteuid() == 0
        # Windows names every owner without elevation; elsewhere only root sees them all.
        self.complete = sys.platform == "win32" or self.privileged
        self._windows_config = None
        if sys.platform == "win32":  # the fallback there still knows the real port settings
            from core.sources.windows import WindowsPortConfig

            self._windows_config = WindowsPortConfig.for_this_machine()

    @property
    def limits(self) -> tuple[str, ...]:
        hidden = [CUMULATIVE_COUNTERS_LIMIT]
        if not self.complete:
            hidden.append("not root: sockets of other users' processes show no owner")
        return tuple(hidden)

    def _table(self) -> np.ndarray:
        try:
            connections = psutil.net_connections("tcp")
        except psutil.AccessDenied as exc:
            # macOS refuses the system-wide list to non-root users.
            raise SourceError(f"psutil.net_connections refused: {exc}; run as root/admin") from exc
        except OSError as exc:
            raise SourceError(f"psutil.net_connections failed: {exc}") from exc
        return table_from_connections(connections)

    def read_counters(self) -> KernelCounters:
        """Costs a full table read: psutil has no O(1) TCP counter."""
        return counters_from_table(self._table(), time.monotonic())

    def port_config(self) -> PortConfig:
        if self._windows_config is not None:
            return self._windows_config.get()
        return read_port_config(self.proc)

    def read(self, with_table: bool = True) -> TableRead:
        started = time.perf_counter()
        config = self.port_config()
        table = self._table()
        counters = counters_from_table(table, time.monotonic())
        return TableRead(
            table=table if with_table else empty_table(),
            counters=counters,
            config=config,
            read_ms=(time.perf_counter() - started) * 1000.0,
            complete=self.complete,
            limits=self.limits,
        )

    def close(self) -> None:
        """Nothing to release: psutil keeps no handle open."""
