"""What the process details dialog shows about one pid, read through psutil.

Every field can fail on its own (a process of another user hides its exe and command
line but not its name; a process can exit between two calls), so each one carries
its own text: the value, "access denied" or "exited". Never raises for a pid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

import psutil

from core.model import endpoint_text

ACCESS_DENIED = "access denied"
EXITED = "exited"
TOP_ENDPOINTS = 50

Status = Literal["running", "exited", "access denied"]
T = TypeVar("T")


@dataclass(frozen=True)
class EndpointCount:
    """Connections of one process toward one remote endpoint, by state."""

    endpoint: str  # "10.0.0.5:443" or "[::1]:8080"
    count: int
    states: tuple[tuple[str, int], ...]  # (state name, count), largest first


@dataclass(frozen=True)
class ProcessDetails:
    pid: int
    status: Status  # "running" when the process was there to be read
    name: str
    exe: str
    user: str
    cmdline: str
    started: str
    endpoints: tuple[EndpointCount, ...] = ()
    endpoints_note: str = ""  # why the list is empty or incomplete, in words


class _Gone(Exception):
    pass


def _field(read: Callable[[], T], render: Callable[[T], str] = str) -> str:
    try:
        return render(read())
    except psutil.NoSuchProcess:
        raise _Gone from None
    except psutil.AccessDenied:
        return ACCESS_DENIED
    except (psutil.Error, OSError) as exc:  # zombies, odd /proc entries
        return f"unavailable ({type(exc).__name__})"


def _render_cmdline(parts: list[str]) -> str:
    return " ".join(parts) if parts else "(none: a kernel thread or a zombie)"


def _render_started(created: float) -> str:
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="seconds")


def _endpoints(proc: psutil.Process) -> tuple[tuple[EndpointCount, ...], str]:
    try:
        connections = proc.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        raise _Gone from None
    except psutil.AccessDenied:
        return (), "Its connections are hidden: access denied (run as administrator/root to see them)."
    except (psutil.Error, OSError) as exc:
        return (), f"Its connections could not be read: {exc}."
    # Connections accepted on one of its listening ports come from the clients' own
    # ephemeral ports: one row per client address and service port (a CLOSE_WAIT leaker
    # otherwise fills the list with one row per client port).
    listening = {conn.laddr.port for conn in connections if conn.status == psutil.CONN_LISTEN and conn.laddr}
    per_endpoint: dict[str, Counter[str]] = {}
    for conn in connections:
        if not conn.raddr:
            continue  # listening or unconnected sockets have no remote endpoint
        if conn.laddr and conn.laddr.port in listening:
            key = f"{conn.raddr.ip} (clients of local port {conn.laddr.port})"
        else:
            key = endpoint_text(conn.raddr.ip, conn.raddr.port)
        per_endpoint.setdefault(key, Counter())[conn.status] += 1
    rows = sorted(
        (EndpointCount(key, sum(states.values()), tuple(states.most_common()))
         for key, states in per_endpoint.items()),
        key=lambda row: (-row.count, row.endpoint),
    )
    note = ""
    if not rows:
        note = "It holds no connected TCP sockets right now (TIME_WAIT sockets belong to no process)."
    elif len(rows) > TOP_ENDPOINTS:
        note = f"The {TOP_ENDPOINTS} busiest of {len(rows)} remote endpoints."
    return tuple(rows[:TOP_ENDPOINTS]), note


def read_process_details(pid: int, with_endpoints: bool = True) -> ProcessDetails:
    """Everything the dialog shows about `pid`; a vanished process comes back as
    status "exited" rather than an exception. The endpoint list reads the system's
    socket table (slow at 100k sockets): call it off the GUI thread."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = _field(proc.name)
            exe = _field(proc.exe, lambda path: path or "(none: a kernel thread)")
            user = _field(proc.username)
            cmdline = _field(proc.cmdline, _render_cmdline)
            started = _field(proc.create_time, _render_started)
        endpoints, note = _endpoints(proc) if with_endpoints else ((), "")
    except (psutil.NoSuchProcess, _Gone):
        return ProcessDetails(pid, "exited", EXITED, EXITED, EXITED, EXITED, EXITED, (),
                              "The process has exited.")
    except psutil.AccessDenied:
        return ProcessDetails(pid, "access denied", ACCESS_DENIED, ACCESS_DENIED, ACCESS_DENIED,
                              ACCESS_DENIED, ACCESS_DENIED, (), "Access denied.")
    return ProcessDetails(pid, "running", name, exe, user, cmdline, started, endpoints, note)
