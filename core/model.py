"""Immutable value types that cross thread and module boundaries.

Large per-socket data travels as a numpy structured array (SOCKET_DTYPE) because
100,000 Python objects per sample would cost more than reading the kernel does.
Everything a screen, the CLI or a report consumes is a frozen dataclass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

# Order matters only for display; the index of a name is its code in SOCKET_DTYPE.state.
STATE_NAMES: tuple[str, ...] = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "BOUND",
)
STATE_CODE: Mapping[str, int] = {name: code for code, name in enumerate(STATE_NAMES)}
ESTABLISHED = STATE_CODE["ESTABLISHED"]
SYN_SENT = STATE_CODE["SYN_SENT"]
SYN_RECV = STATE_CODE["SYN_RECV"]
FIN_WAIT1 = STATE_CODE["FIN_WAIT1"]
FIN_WAIT2 = STATE_CODE["FIN_WAIT2"]
TIME_WAIT = STATE_CODE["TIME_WAIT"]
CLOSE_WAIT = STATE_CODE["CLOSE_WAIT"]
LAST_ACK = STATE_CODE["LAST_ACK"]
LISTEN = STATE_CODE["LISTEN"]
CLOSING = STATE_CODE["CLOSING"]
BOUND = STATE_CODE["BOUND"]

NO_PID = -1  # Windows reports TIME_WAIT as PID 0 and Linux as "no inode"; both become NO_PID.

# One row per TCP socket. Addresses are 16 raw bytes in network order; an IPv4
# address fills the first 4 bytes and the rest are zero (family tells which).
SOCKET_DTYPE = np.dtype(
    [
        ("state", "u1"),
        ("family", "u1"),  # 4 or 6
        ("lport", "u2"),
        ("rport", "u2"),
        ("pid", "i4"),  # NO_PID when the OS does not say
        ("inode", "u8"),  # Linux socket inode, 0 when unknown (TIME_WAIT) or on Windows
        ("laddr", "V16"),
        ("raddr", "V16"),
    ]
)


def empty_table(n: int = 0) -> np.ndarray:
    table = np.zeros(n, dtype=SOCKET_DTYPE)
    table["pid"] = NO_PID
    return table


# numpy copies structured rows field by field: picking or joining whole rows as plain
# bytes is ~6x faster (0.15 against 0.9 ms for 28k rows).
def take_rows(table: np.ndarray, where: np.ndarray) -> np.ndarray:
    """table[where] (a bool mask or an index) for a structured table."""
    plain = f"V{table.dtype.itemsize}"
    return np.ascontiguousarray(table).view(plain)[where].view(table.dtype)


def join_rows(parts: list[np.ndarray]) -> np.ndarray:
    """np.concatenate(parts) for structured tables of one dtype."""
    plain = f"V{parts[0].dtype.itemsize}"
    return np.concatenate([np.ascontiguousarray(p).view(plain) for p in parts]).view(parts[0].dtype)


def format_address(family: int, raw: bytes) -> str:
    """Text form of a 16-byte address slot from SOCKET_DTYPE."""
    if family == 4:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    return str(ipaddress.IPv6Address(bytes(raw[:16])))


def pack_address(text: str) -> tuple[int, bytes]:
    """(family, 16 raw bytes) for an address in text form."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return 4, addr.packed + bytes(12)
    return 6, addr.packed


def endpoint_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class KernelCounters:
    """O(1) counters read every tick (Linux /proc/net/sockstat + /proc/net/snmp,
    Windows GetTcpStatisticsEx). Cumulative counters are totals since boot."""

    monotonic: float
    time_wait: int | None  # sockstat "tw"; None where the OS has no such counter
    active_opens: int
    passive_opens: int
    attempt_fails: int
    established_resets: int
    current_established: int


@dataclass(frozen=True)
class PortConfig:
    """How the OS hands out local ports for outbound connections."""

    os_name: str  # "Linux", "Windows", ...
    dynamic_range: tuple[int, int]  # inclusive
    excluded: tuple[tuple[int, int], ...] = ()  # inclusive ranges that connect() never picks
    time_wait_seconds: float = 60.0
    # Linux: per destination (local addr, remote addr, remote port); Windows: per local address.
    pool_scope: Literal["per_destination", "per_local_address"] = "per_destination"
    tw_reuse: int | None = None  # Linux net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only
    notes: tuple[str, ...] = ()  # what this reading could not know, in words

    @property
    def capacity(self) -> int:
        lo, hi = self.dynamic_range
        total = hi - lo + 1
        for ex_lo, ex_hi in self.excluded:
            overlap = min(hi, ex_hi) - max(lo, ex_lo) + 1
            if overlap > 0:
                total -= overlap
        return max(total, 0)


class TraceEvent(NamedTuple):
    """One kernel socket state change that names the process in whose context it happened.

    A NamedTuple, not a frozen dataclass: hundreds are made a second from the kernel's
    trace, and a frozen dataclass's __init__ cost ~3 us each (a third of parsing one)."""

    pid: int
    comm: str
    family: int
    laddr: bytes  # 16 raw bytes, as in SOCKET_DTYPE
    lport: int
    raddr: bytes
    rport: int
    newstate: int  # code from STATE_CODE


@dataclass(frozen=True)
class TimeWaitPiece:
    """Every TIME_WAIT socket whose port key (local port << 16 | remote port) is in
    [lo, hi), as SOCKET_DTYPE rows, with the milliseconds each has left."""

    lo: int
    hi: int
    rows: np.ndarray
    expires_ms: np.ndarray


@dataclass(frozen=True)
class TableRead:
    """One read of the kernel: the socket table plus the counters, and what it cost."""

    table: np.ndarray  # SOCKET_DTYPE
    counters: KernelCounters
    config: PortConfig
    events: tuple[TraceEvent, ...] = ()
    read_ms: float = 0.0
    complete: bool = True  # False when the OS hid rows (e.g. pids of other users' sockets)
    limits: tuple[str, ...] = ()  # what this reader could not see, in words
    # False when this read left the TIME_WAIT rows out of the table (a cheaper dump; the
    # count is in counters.time_wait): the Sampler ages the ones it has.
    time_wait_listed: bool = True
    # Per table row, milliseconds a TIME_WAIT socket has left (Linux idiag_expires), or None.
    expires_ms: np.ndarray | None = None
    # Port-key ranges [lo, hi) of TIME_WAIT this read is to list: the Sampler asks the
    # source for each (list_time_wait) and keys it before asking for the next, so one
    # slice at a time is in memory.
    time_wait_slices: tuple[tuple[int, int], ...] = ()
    # pid -> (name, parent pid) of processes first seen holding sockets in this read, taken
    # while they ran (a short-lived one may have ended before the sampler asks).
    identities: Mapping[int, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ParentProcess:
    pid: int
    name: str


@dataclass(frozen=True)
class ProcessRow:
    pid: int
    name: str
    connections: int  # sockets the process owns right now (any state except TIME_WAIT)
    time_wait: int  # exact + inferred
    time_wait_exact: int
    time_wait_inferred: int
    opens_per_s: float
    states: Mapping[str, int]  # only non-zero states
    close_wait: int = 0
    # remote endpoint text ("127.0.0.1:9000") -> TIME_WAIT credited toward it (exact + inferred)
    time_wait_toward: Mapping[str, int] = field(default_factory=dict)
    exited: bool = False  # the process has ended; its TIME_WAIT still counts
    instances: int = 1  # short-lived processes of one program and parent grouped into this row
    parent: ParentProcess | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "connections": self.connections,
            "time_wait": self.time_wait,
            "time_wait_exact": self.time_wait_exact,
            "time_wait_inferred": self.time_wait_inferred,
            "opens_per_s": round(self.opens_per_s, 3),
            "states": dict(self.states),
            "time_wait_toward": dict(self.time_wait_toward),
            "exited": self.exited,
            "instances": self.instances,
            "parent": None if self.parent is None else {"pid": self.parent.pid, "name": self.parent.name},
        }

    @classmethod
    def from_json(cls, p: Mapping[str, Any]) -> ProcessRow:
        """The inverse of to_json; keys added later default (older recordings)."""
        states = {str(k): int(v) for k, v in p["states"].items()}
        exact = int(p["time_wait_exact"])
        time_wait = int(p["time_wait"])
        parent = p.get("parent")
        return cls(
            pid=int(p["pid"]),
            name=str(p["name"]),
            connections=int(p["connections"]),
            time_wait=time_wait,
            time_wait_exact=exact,
            time_wait_inferred=int(p.get("time_wait_inferred", time_wait - exact)),
            opens_per_s=float(p["opens_per_s"]),
            states=states,
            close_wait=states.get("CLOSE_WAIT", 0),
            time_wait_toward={str(k): int(v) for k, v in p.get("time_wait_toward", {}).items()},
            exited=bool(p.get("exited", False)),
            instances=int(p.get("instances", 1)),
            parent=None if not parent else ParentProcess(int(parent["pid"]), str(parent["name"])),
        )


@dataclass(frozen=True)
class RemoteRow:
    address: str
    port: int
    connections: int  # all sockets toward this endpoint, TIME_WAIT included
    time_wait: int

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "connections": self.connections,
            "time_wait": self.time_wait,
        }


@dataclass(frozen=True)
class PoolUsage:
    """Ports held in one pool: the unit the OS runs out of."""

    label: str  # e.g. "127.0.0.1 -> 127.0.0.1:9000" or "0.0.0.0 (all local addresses)"
    capacity: int
    in_use: int
    time_wait: int
    reusable_time_wait: bool  # TIME_WAIT sockets here do not block new connects
    @property
    def remote(self) -> str:
        """The destination endpoint ("127.0.0.1:9000") of a per-destination pool, else ""."""
        return self.label.partition(" -> ")[2]

    @property
    def pressure(self) -> float:
        return min(1.0, self.in_use / self.capacity) if self.capacity > 0 else 1.0


@dataclass(frozen=True)
class PortsSummary:
    range: tuple[int, int]
    capacity: int
    in_use: int
    pressure: float
    pool: str
    pools: tuple[PoolUsage, ...] = ()  # busiest first, a few
    # The whole range, as bind() to port 0 before connect() sees it (and Windows always):
    # ports held by any socket, TIME_WAIT toward any destination included.
    range_in_use: int = 0
    range_capacity: int = 0

    @property
    def range_pressure(self) -> float:
        return min(1.0, self.range_in_use / self.range_capacity) if self.range_capacity > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "range": list(self.range),
            "capacity": self.capacity,
            "in_use": self.in_use,
            "pressure": round(self.pressure, 4),
            "pool": self.pool,
            "range_in_use": self.range_in_use,
            "range_capacity": self.range_capacity,
            "range_pressure": round(self.range_pressure, 4),
        }


@dataclass(frozen=True)
class Rates:
    active_opens_per_s: float = 0.0
    passive_opens_per_s: float = 0.0
    attempt_fails_per_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "active_opens_per_s": round(self.active_opens_per_s, 3),
            "passive_opens_per_s": round(self.passive_opens_per_s, 3),
            "attempt_fails_per_s": round(self.attempt_fails_per_s, 3),
        }


@dataclass(frozen=True)
class Forecast:
    steady_state_time_wait: int = 0
    seconds_to_exhaustion: float | None = None
    # False where tcp_tw_reuse lets connect() take over TIME_WAIT ports of the busiest
    # pool: then the steady-state TIME_WAIT does not use up the pool (not in the JSON).
    time_wait_holds_ports: bool = True
    open_rate_per_s: float = 0.0  # the rate behind the steady state (new connections, or attempts)

    def to_json(self) -> dict[str, Any]:
        return {
            "steady_state_time_wait": self.steady_state_time_wait,
            "seconds_to_exhaustion": (
                None if self.seconds_to_exhaustion is None else round(self.seconds_to_exhaustion, 1)
            ),
            "open_rate_per_s": round(self.open_rate_per_s, 3),
        }


Level = Literal["ok", "warning", "critical"]
LEVEL_ORDER: Mapping[str, int] = {"ok": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Verdict:
    level: Level
    title: str
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "title": self.title, "reasons": list(self.reasons)}


# What core.sampler puts in a Sample: the verdict is core.judgement's. Never shown, since
# everything that shows a sample judges it first; visible (not "ok") if that were forgotten.
UNJUDGED = Verdict("warning", "Not judged yet", ("This sample has not been through core.judgement yet.",))


@dataclass(frozen=True)
class ProbeFailure:
    """An outbound test that failed with an exhaustion error: evidence for the verdict."""

    monotonic: float
    target: str  # "host:port"
    error: str  # e.g. "[Errno 99] Cannot assign requested address"


EventKind = Literal["setting", "probe", "note"]


@dataclass(frozen=True)
class Event:
    """Something that happened between two samples, for the record: a setting that
    changed (whoever changed it), an outbound test's result, a note. `details` holds the
    kind's own keys (setting: name, old, new; probe: target, ok, category)."""

    time_iso: str  # ISO-8601 with offset
    kind: EventKind
    text: str  # one sentence for a ticket
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time_iso, "kind": self.kind, "text": self.text, **self.details}


@dataclass(frozen=True)
class Sample:
    """Everything known at one moment. Built by core.sampler, judged (verdict, events) by
    core.judgement."""

    time_iso: str  # ISO-8601 with offset
    timestamp: float  # seconds since the epoch, for plots
    states: Mapping[str, int]  # every name in STATE_NAMES
    ports: PortsSummary
    rates: Rates
    forecast: Forecast
    processes: tuple[ProcessRow, ...]
    remotes: tuple[RemoteRow, ...]
    verdict: Verdict
    sample_ms: float
    time_wait_unattributed: int = 0
    time_wait_seconds: float = 60.0
    os_name: str = ""
    limits: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()  # new since the previous sample, oldest first

    def to_json(self, top: int | None = None) -> dict[str, Any]:
        """The `watch --json` contract (DESIGN.md). `top` trims the process/remote lists."""
        processes = self.processes if top is None else self.processes[:top]
        remotes = self.remotes if top is None else self.remotes[:top]
        return {
            "time": self.time_iso,
            "states": {name: int(self.states.get(name, 0)) for name in STATE_NAMES},
            "ports": self.ports.to_json(),
            "rates": self.rates.to_json(),
            "forecast": self.forecast.to_json(),
            "processes": [p.to_json() for p in processes],
            "remotes": [r.to_json() for r in remotes],
            "verdict": self.verdict.to_json(),
            "sample_ms": round(self.sample_ms, 2),
            "time_wait_unattributed": self.time_wait_unattributed,
            "time_wait_seconds": self.time_wait_seconds,
            "os": self.os_name,
            "events": [e.to_json() for e in self.events],
            "limits": list(self.limits),
        }
