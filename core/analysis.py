"""Port pools, pressure, forecast and the verdict (DESIGN.md "Verdict").

Pure functions of a socket table and a PortConfig: no I/O, so every rule is tested
on fixed tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.model import (
    BOUND,
    LISTEN,
    TIME_WAIT,
    Forecast,
    PoolUsage,
    PortConfig,
    PortsSummary,
    ProbeFailure,
    ProcessRow,
    RemoteRow,
    Verdict,
    endpoint_text,
    format_address,
)
from core.tuples import pool_keys

CRITICAL_PRESSURE = 0.9
WARNING_PRESSURE = 0.6
CRITICAL_ETA_SECONDS = 60.0
WARNING_STEADY_STATE_SHARE = 0.8
# CLOSE_WAIT means the application got the peer's FIN and never called close(); a
# few are normal for a moment, this many held by one process is a leak.
CLOSE_WAIT_PILE = 20
PROBE_EVIDENCE_SECONDS = 300.0
TOP_POOLS = 5

_LOOPBACK4 = 127


@dataclass(frozen=True)
class PoolFacts:
    """The table split the way the port allocator sees it."""

    listen_ports: np.ndarray  # unique local ports with a listener
    outbound: np.ndarray  # bool per row: a connection this host initiated (or a bound port)
    in_range: np.ndarray  # bool per row: local port inside the dynamic range, not excluded


def is_loopback(table: np.ndarray) -> np.ndarray:
    """bool per row: local or remote address is loopback (what tcp_tw_reuse=2 checks)."""
    def loop(addr: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(addr).view(np.uint8).reshape(-1, 16)
        v4 = raw[:, 0] == _LOOPBACK4
        v6 = (raw[:, :15] == 0).all(axis=1) & (raw[:, 15] == 1)
        mapped = (raw[:, :10] == 0).all(axis=1) & (raw[:, 10] == 0xFF) & (raw[:, 11] == 0xFF) & (
            raw[:, 12] == _LOOPBACK4)
        return np.where(table["family"] == 4, v4, v6 | mapped)

    return loop(table["laddr"]) | loop(table["raddr"])


def split_table(table: np.ndarray, config: PortConfig, listen_ports: np.ndarray | None = None) -> PoolFacts:
    """listen_ports: the listeners' ports when they are not in this table (the cached
    TIME_WAIT rows are split with the live table's listeners)."""
    states = table["state"]
    if listen_ports is None:
        listen_ports = np.unique(table["lport"][states == LISTEN])
    inbound = np.isin(table["lport"], listen_ports) & (states != LISTEN)
    outbound = (states != LISTEN) & ~inbound
    lo, hi = config.dynamic_range
    lport = table["lport"]
    in_range = (lport >= lo) & (lport <= hi)
    for ex_lo, ex_hi in config.excluded:
        in_range &= ~((lport >= ex_lo) & (lport <= ex_hi))
    return PoolFacts(listen_ports=listen_ports, outbound=outbound, in_range=in_range)


def time_wait_holds_ports(config: PortConfig, loopback_pool: bool) -> bool:
    """Whether TIME_WAIT sockets of a pool keep their ports from new connects: Linux's
    tcp_tw_reuse 1 lets connect() take them over, 2 only on loopback; Windows pools never."""
    if config.pool_scope != "per_destination" or not config.tw_reuse:
        return True
    return not (config.tw_reuse == 1 or loopback_pool)


def tw_reusable(table: np.ndarray, config: PortConfig) -> np.ndarray:
    """bool per row: a TIME_WAIT socket that a new outbound connect may take over."""
    if time_wait_holds_ports(config, loopback_pool=True):  # not even on loopback
        return np.zeros(len(table), dtype=bool)
    tw = table["state"] == TIME_WAIT
    if not time_wait_holds_ports(config, loopback_pool=False):
        return tw
    return tw & is_loopback(table)  # loopback only: the loopback test is paid only here


def _blocked_ports(table: np.ndarray, facts: PoolFacts, config: PortConfig) -> int:
    """Ports in the range that no connect() can pick: listeners, and (Linux) ports
    bound explicitly by unconnected sockets."""
    lo, hi = config.dynamic_range
    blocked = facts.listen_ports[(facts.listen_ports >= lo) & (facts.listen_ports <= hi)]
    if config.pool_scope == "per_destination":
        bound = table["lport"][(table["state"] == BOUND) & facts.in_range]
        blocked = np.union1d(blocked, bound)
    return len(blocked)


def compute_pools(table: np.ndarray, config: PortConfig, facts: PoolFacts | None = None,
                  keys: np.ndarray | None = None) -> tuple[list[PoolUsage], list[int]]:
    """The busiest pools' usage, busiest first, and (per destination) their pool keys
    as computed by core.tuples.pool_keys, for per-pool rates."""
    facts = facts or split_table(table, config)
    capacity = usable_capacity(table, facts, config)
    states = table["state"]
    if config.pool_scope == "per_destination":
        counted = facts.outbound & facts.in_range & (states != BOUND)
        rows = table[counted]
        row_keys = (keys[counted] if keys is not None else pool_keys(rows))
        reusable = tw_reusable(rows, config)
        return destination_pools(capacity, row_keys, rows, (~reusable).astype(np.int64),
                                 (rows["state"] == TIME_WAIT).astype(np.int64), reusable)
    # Windows: one pool per local address; a wildcard-bound port is held on every address.
    counted = facts.outbound & facts.in_range
    rows = table[counted]
    pools = []
    for family in (4, 6):
        fam = rows[rows["family"] == family]
        if not len(fam):
            continue
        addr = np.ascontiguousarray(fam["laddr"]).view(np.uint8).reshape(-1, 16)
        wildcard = ~addr.any(axis=1)
        for laddr in np.unique(fam["laddr"][~wildcard]) if (~wildcard).any() else [fam["laddr"][0]]:
            mine = (fam["laddr"] == laddr) | wildcard
            ports = np.unique(fam["lport"][mine])
            tw = int(np.count_nonzero(fam["state"][mine] == TIME_WAIT))
            name = format_address(family, bytes(laddr))
            if not (~wildcard).any():
                name = "0.0.0.0" if family == 4 else "::"
            pools.append(PoolUsage(f"{name} (all destinations)", capacity, len(ports), tw, False))
    pools.sort(key=lambda p: (-p.in_use, -p.time_wait))
    return pools[:TOP_POOLS], []


def usable_capacity(table: np.ndarray, facts: PoolFacts, config: PortConfig) -> int:
    return max(config.capacity - _blocked_ports(table, facts, config), 0)


def destination_pools(capacity: int, keys: np.ndarray, rows: np.ndarray, held: np.ndarray,
                      time_wait: np.ndarray, reusable: np.ndarray) -> tuple[list[PoolUsage], list[int]]:
    """Linux pools (per destination) from weighted parts: one entry per socket row, or
    per group of cached TIME_WAIT rows with their counts. keys are pool keys, rows
    give the labels; busiest first, at most TOP_POOLS."""
    if not len(keys):
        return [], []
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    held_n = np.bincount(inverse, weights=held, minlength=len(uniq)).astype(np.int64)
    tws = np.bincount(inverse, weights=time_wait, minlength=len(uniq)).astype(np.int64)
    reuse_any = np.bincount(inverse, weights=reusable, minlength=len(uniq)) > 0
    order = np.lexsort((-tws, -held_n))[:TOP_POOLS]
    pools = [PoolUsage(pool_label(rows[first[i]]), capacity, int(held_n[i]), int(tws[i]),
                       bool(reuse_any[i])) for i in order]
    return pools, [int(uniq[i]) for i in order]


def pool_label(row: np.void) -> str:
    family = int(row["family"])
    remote = endpoint_text(format_address(family, bytes(row["raddr"])), int(row["rport"]))
    return f"{format_address(family, bytes(row['laddr']))} -> {remote}"


def summarize_ports(pools: Sequence[PoolUsage], config: PortConfig, table: np.ndarray,
                    facts: PoolFacts) -> PortsSummary:
    if pools:
        top = max(pools, key=lambda p: p.pressure)
        return PortsSummary(config.dynamic_range, top.capacity, top.in_use, top.pressure, top.label,
                            tuple(pools))
    capacity = usable_capacity(table, facts, config)
    return PortsSummary(config.dynamic_range, capacity, 0, 0.0, "none (no outbound connections)", ())


def forecast(ports: PortsSummary, pool_open_rate: float, time_wait_seconds: float,
             growth_per_s: float | None, holds_ports: bool = True) -> Forecast:
    """steady state = opens/s into the busiest pool x TIME_WAIT length; the time to
    exhaustion only when that steady state would not fit and usage is growing. Where
    TIME_WAIT ports are reused (holds_ports False) the steady state does not fill the
    pool, so only a pool with no free port at all is out of ports."""
    steady = int(round(pool_open_rate * time_wait_seconds))
    eta: float | None = None
    if ports.capacity > 0:
        free = ports.capacity - ports.in_use
        if free <= 0:
            eta = 0.0
        elif holds_ports and growth_per_s and growth_per_s > 0 and steady >= ports.capacity:
            eta = free / growth_per_s
    return Forecast(steady_state_time_wait=steady, seconds_to_exhaustion=eta,
                    time_wait_holds_ports=holds_ports, open_rate_per_s=pool_open_rate)


def _fmt_rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


def judge(ports: PortsSummary, fc: Forecast, config: PortConfig, processes: Sequence[ProcessRow],
          remotes: Sequence[RemoteRow], probe_failures: Sequence[ProbeFailure] = (),
          now: float | None = None) -> Verdict:
    """The verdict with reasons a support engineer can paste into a ticket."""
    critical: list[str] = []
    warning: list[str] = []
    lo, hi = config.dynamic_range
    pct = round(ports.pressure * 100)
    held = (f"{ports.in_use} of {ports.capacity} usable local ports (range {lo}-{hi}) are held "
            f"in the pool {ports.pool}")
    culprit = _culprit_sentence(processes, ports)
    if ports.pressure >= CRITICAL_PRESSURE:
        critical.append(f"{held}: {pct}% used. New outbound connections there fail once none is left "
                        f"({_exhaustion_error(config)}).")
    elif ports.pressure >= WARNING_PRESSURE:
        warning.append(f"{held}: {pct}% used, above the {round(WARNING_PRESSURE * 100)}% warning line.")
    if fc.seconds_to_exhaustion is not None and fc.seconds_to_exhaustion <= CRITICAL_ETA_SECONDS \
            and ports.pressure < CRITICAL_PRESSURE:
        critical.append(f"At the current rate the pool {ports.pool} runs out of ports in about "
                        f"{fc.seconds_to_exhaustion:.0f} s.")
    steady_fills_pool = (fc.time_wait_holds_ports and ports.capacity > 0
                         and fc.steady_state_time_wait >= WARNING_STEADY_STATE_SHARE * ports.capacity)
    if steady_fills_pool:
        sentence = (f"Connections are opened fast enough to keep about {fc.steady_state_time_wait} "
                    f"sockets in TIME_WAIT ({config.time_wait_seconds:.0f} s each), "
                    f"{'more than' if fc.steady_state_time_wait >= ports.capacity else 'close to'} "
                    f"the {ports.capacity} ports available.")
        (critical if critical else warning).append(sentence)
    for failure in probe_failures:
        age = "" if now is None else f" {max(now - failure.monotonic, 0):.0f} s ago"
        critical.append(f"An outbound test to {failure.target} failed{age} with an exhaustion error: "
                        f"{failure.error}.")
    leakers = [p for p in processes if p.close_wait >= CLOSE_WAIT_PILE]
    for p in sorted(leakers, key=lambda p: -p.close_wait)[:3]:
        warning.append(f"{p.name} (pid {p.pid}) holds {p.close_wait} connections in CLOSE_WAIT: the peer "
                       "closed them but the application never called close(). This is an application "
                       "bug; restarting that process frees them.")
    if critical or warning:
        if culprit:
            (critical or warning).append(culprit)
        fix = _fix_sentence(config)
        if fix and (ports.pressure >= WARNING_PRESSURE or steady_fills_pool or probe_failures):
            (critical or warning).append(fix)
    if critical:
        return Verdict("critical", _critical_title(ports, probe_failures), tuple(critical + warning))
    if warning:
        title = ("An application is not closing its sockets" if leakers and ports.pressure < WARNING_PRESSURE
                 else f"Port pressure is building: {pct}% of the busiest pool in use")
        return Verdict("warning", title, tuple(warning))
    if not ports.in_use and not ports.pools:
        return Verdict("ok", "Healthy: local ports are plentiful",
                       (f"No outbound connections right now: all {ports.capacity} ports of the range "
                        "are free.",))
    return Verdict("ok", "Healthy: local ports are plentiful",
                   (f"The busiest pool ({ports.pool}) uses {ports.in_use} of {ports.capacity} ports "
                    f"({pct}%).",))


def _critical_title(ports: PortsSummary, probe_failures: Sequence[ProbeFailure]) -> str:
    if ports.pressure >= CRITICAL_PRESSURE:
        return f"Local ports exhausted: {ports.pool} is {round(ports.pressure * 100)}% used"
    if probe_failures:
        return "Outbound connections are failing: no free local port"
    return f"Local ports about to run out in {ports.pool}"


def _exhaustion_error(config: PortConfig) -> str:
    if config.os_name == "Windows":
        return "WSAENOBUFS 10055 or WSAEADDRINUSE 10048, Tcpip event 4227/4231"
    return "EADDRNOTAVAIL, 'Cannot assign requested address'"


def _culprit_sentence(processes: Sequence[ProcessRow], ports: PortsSummary) -> str | None:
    top = next((p for p in processes if p.time_wait > 0 or p.opens_per_s > 0), None)
    if top is None:
        return None
    how = ("exactly" if top.time_wait_exact >= top.time_wait_inferred else
           "by inference from the endpoints it talks to")
    rate = f", opening {_fmt_rate(top.opens_per_s)} connections/s" if top.opens_per_s > 0 else ""
    return (f"Most of it comes from {top.name} (pid {top.pid}){rate}: {top.time_wait} TIME_WAIT "
            f"sockets are attributed to it ({how}).")


def _fix_sentence(config: PortConfig) -> str | None:
    if config.os_name == "Linux":
        if config.tw_reuse == 0:
            return ("net.ipv4.tcp_tw_reuse is 0, so TIME_WAIT ports are never reused for new "
                    "connections; setting it to 1 lets connect() reuse them safely (TIME_WAIT itself "
                    "lasts 60 s and tcp_fin_timeout does not shorten it). Widening "
                    "net.ipv4.ip_local_port_range also helps; reusing connections helps most.")
        return ("Widen net.ipv4.ip_local_port_range or make the application reuse connections "
                "(keep-alive, pooling); TIME_WAIT lasts 60 s and tcp_fin_timeout does not shorten it.")
    if config.os_name == "Windows":
        return (f"TIME_WAIT lasts {config.time_wait_seconds:.0f} s here: lowering TcpTimedWaitDelay "
                "(e.g. to 30, reboot needed) or widening the dynamic port range frees ports sooner; "
                "reusing connections helps most.")
    return None
