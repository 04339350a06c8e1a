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


def remote_label(row: np.void) -> str:
    return endpoint_text(format_address(int(row["family"]), bytes(row["raddr"])), int(row["rport"]))


def pool_label(row: np.void) -> str:
    return f"{format_address(int(row['family']), bytes(row['laddr']))} -> {remote_label(row)}"


def summarize_ports(pools: Sequence[PoolUsage], config: PortConfig, table: np.ndarray,
                    facts: PoolFacts, *, range_in_use: int = 0) -> PortsSummary:
    whole = {"range_in_use": range_in_use, "range_capacity": config.capacity}
    if pools:
        top = max(pools, key=lambda p: p.pressure)
        # Between TIME_WAIT listings the newest TIME_WAIT is only counted, its ports unknown:
        # the whole range holds at least the busiest pool's ports.
        whole["range_in_use"] = min(max(range_in_use, top.in_use), config.capacity)
        return PortsSummary(config.dynamic_range, top.capacity, top.in_use, top.pressure, top.label,
                            tuple(pools), **whole)
    capacity = usable_capacity(table, facts, config)
    return PortsSummary(config.dynamic_range, capacity, 0, 0.0, "none (no outbound connections)", (), **whole)


def range_ports_in_use(table: np.ndarray, config: PortConfig, held: np.ndarray | None = None) -> int:
    """Ports of the dynamic range that some socket holds, whatever its state or peer: what
    bind() to port 0 needs free. held: bool per port number 0-65535 already known held
    (the cached TIME_WAIT rows).

    The kernel's rules, found in a namespace (tests/test_pools_netns.py pins them):
    - connect() without bind() picks a port per destination, and never a port that
      bind() took: a listener's, or one still held (TIME_WAIT included) by a socket that
      bound before connecting;
    - bind(addr, 0) before connect() needs a port no socket holds, TIME_WAIT toward any
      destination included, and fails with EADDRINUSE once there is none, with or without
      SO_REUSEADDR on either socket and whatever net.ipv4.tcp_tw_reuse says (tcp_tw_reuse
      only lets connect() take over a TIME_WAIT 4-tuple);
    - IP_BIND_ADDRESS_NO_PORT defers the choice to connect(), per destination again.
    The table does not tell which sockets bound before connecting, so the whole range is
    judged next to the per-destination pools."""
    ports = np.zeros(65536, dtype=bool) if held is None else held.copy()
    ports[table["lport"]] = True
    lo, hi = config.dynamic_range
    in_range = ports[lo:hi + 1].copy()
    for ex_lo, ex_hi in config.excluded:
        a, b = max(ex_lo, lo), min(ex_hi, hi)
        if a <= b:
            in_range[a - lo:b - lo + 1] = False
    return int(np.count_nonzero(in_range))


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
          now: float | None = None, *, unattributed: int = 0, time_wait: int = 0,
          kernel_events: bool = False, limits: Sequence[str] = ()) -> Verdict:
    """The verdict with reasons a support engineer can paste into a ticket.

    unattributed / time_wait: TIME_WAIT sockets no process could be credited with, of
    all; kernel_events: whether kernel events name connecting processes in this run;
    limits: what this run cannot see (each said in the reasons)."""
    verdict = _judge_pressure(ports, fc, config, processes, probe_failures, now)
    extra = []
    unowned = _unattributed_sentence(unattributed, time_wait, kernel_events)
    if unowned:
        extra.append(unowned)
    if limits:
        extra.append("This run cannot see everything: " + "; ".join(limits) + ".")
    if not extra:
        return verdict
    return Verdict(verdict.level, verdict.title, verdict.reasons + tuple(extra))


UNATTRIBUTED_SHARE = 0.1  # below this share of TIME_WAIT, the unattributed rest is not worth a sentence


def _unattributed_sentence(unattributed: int, time_wait: int, kernel_events: bool) -> str | None:
    if unattributed < 10 or unattributed < UNATTRIBUTED_SHARE * max(time_wait, 1):
        return None
    help_text = ("Kernel events are on: the next connection attempt names the process."
                 if kernel_events else
                 "Run PortPressure as root: kernel events then name the process at its next connection "
                 "attempt; otherwise it is named once it is seen opening or closing one.")
    return (f"{unattributed} TIME_WAIT sockets are not attributed to any process: none was seen opening "
            "or closing connections to their endpoints while PortPressure watched (they were opened "
            "before it started, or by processes that ended unseen). A process that merely holds "
            f"connections there is not blamed. {help_text}")


def _judge_pressure(ports: PortsSummary, fc: Forecast, config: PortConfig, processes: Sequence[ProcessRow],
                    probe_failures: Sequence[ProbeFailure], now: float | None) -> Verdict:
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
    whole_range = _range_sentence(ports, config)
    if whole_range:
        warning.append(whole_range)
    leakers = [p for p in processes if p.close_wait >= CLOSE_WAIT_PILE]
    for p in sorted(leakers, key=lambda p: -p.close_wait)[:3]:
        warning.append(f"{p.name} (pid {p.pid}) holds {p.close_wait} connections in CLOSE_WAIT: the peer "
                       "closed them but the application never called close(). This is an application "
                       "bug; restarting that process frees them.")
    if critical or warning:
        if culprit:
            (critical or warning).append(culprit)
        fix = _fix_sentence(config, fc.time_wait_holds_ports)
        if fix and (ports.pressure >= WARNING_PRESSURE or steady_fills_pool or probe_failures):
            (critical or warning).append(fix)
    if critical:
        return Verdict("critical", _critical_title(ports, probe_failures), tuple(critical + warning))
    if warning:
        if leakers and ports.pressure < WARNING_PRESSURE:
            title = "An application is not closing its sockets"
        elif whole_range and ports.pressure < WARNING_PRESSURE:
            title = (f"The whole port range is {round(ports.range_pressure * 100)}% held: "
                     "programs that bind() before connect() fail")
        else:
            title = f"Port pressure is building: {pct}% of the busiest pool in use"
        return Verdict("warning", title, tuple(warning))
    if not ports.in_use and not ports.pools:
        return Verdict("ok", "Healthy: local ports are plentiful",
                       (f"No outbound connections right now: all {ports.capacity} ports of the range "
                        "are free.",))
    return Verdict("ok", "Healthy: local ports are plentiful",
                   (f"The busiest pool ({ports.pool}) uses {ports.in_use} of {ports.capacity} ports "
                    f"({pct}%).",))


def _range_sentence(ports: PortsSummary, config: PortConfig) -> str | None:
    """The whole range judged as bind() to port 0 sees it (Linux; on Windows every pool is
    the whole range already). Said only where it is notably fuller than the busiest
    per-destination pool: TIME_WAIT spread over many destinations."""
    if config.pool_scope != "per_destination" or not ports.range_capacity:
        return None
    if ports.range_pressure < WARNING_PRESSURE or ports.range_pressure - ports.pressure < 0.1:
        return None
    lo, hi = config.dynamic_range
    full = ports.range_in_use >= ports.range_capacity
    state = ("none is free" if full else f"{round(ports.range_pressure * 100)}% used")
    return (f"{ports.range_in_use} of the {ports.range_capacity} ports of the whole range ({lo}-{hi}) are "
            f"held by some socket, TIME_WAIT toward any destination included: {state}. Programs that bind() "
            "a local address before connect() need a port no socket holds and "
            f"{'get' if full else 'will get'} EADDRINUSE ('Address already in use'), whatever tcp_tw_reuse "
            "says. Where those TIME_WAIT were left by such programs, connect() alone fails too "
            "(EADDRNOTAVAIL): the kernel never gives connect() a port that bind() took. Not binding, or "
            "IP_BIND_ADDRESS_NO_PORT, avoids it; widening the range helps both.")


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
    """The process behind the pool the verdict is about: the most TIME_WAIT toward that
    pool's destination. Where TIME_WAIT was never split by destination (a per-address
    pool, an old recording) the process with the most TIME_WAIT overall."""
    pool = next((p for p in ports.pools if p.label == ports.pool), None)
    remote = pool.remote if pool is not None else ""
    if remote and any(p.time_wait_toward for p in processes):
        ranked = sorted((p for p in processes if p.time_wait_toward.get(remote, 0) > 0),
                        key=lambda p: (-p.time_wait_toward.get(remote, 0), -p.opens_per_s, p.pid))
        if not ranked:
            return None
        top = ranked[0]
        count = top.time_wait_toward[remote]
        where = f" toward {remote}"
    else:
        busiest = next((p for p in processes if p.time_wait > 0 or p.opens_per_s > 0), None)
        if busiest is None:
            return None
        top, count, where = busiest, busiest.time_wait, ""
    how = ("exactly" if top.time_wait_exact >= top.time_wait_inferred else
           "from the connections it was seen opening and closing there")
    rate = f", opening {_fmt_rate(top.opens_per_s)} connections/s" if top.opens_per_s > 0 else ""
    return (f"Most of it comes from {process_text(top)}{rate}: {count} TIME_WAIT "
            f"sockets{where} are attributed to it ({how}).")


def process_text(row: ProcessRow) -> str:
    """How a reason names a process row: 'curl (pid 42)', 'check_tcp (pid 42, exited)',
    or for a group 'check_tcp ×1,234 (short-lived processes started by moneng, pid 812)'."""
    if row.instances > 1:
        started = (f"started by {row.parent.name}, pid {row.parent.pid}" if row.parent is not None
                   else "parent unknown")
        return f"{row.name} ×{row.instances:,} (short-lived processes {started})"
    return f"{row.name} (pid {row.pid}{', exited' if row.exited else ''})"


def _fix_sentence(config: PortConfig, time_wait_holds_ports: bool = True) -> str | None:
    """Advice that follows the settings in effect. time_wait_holds_ports: whether the
    busiest pool's TIME_WAIT keeps its ports from connect() (tcp_tw_reuse 0; 2 off loopback)."""
    if config.os_name == "Linux":
        lasts = "TIME_WAIT itself lasts 60 s and tcp_fin_timeout does not shorten it"
        if config.tw_reuse == 0:
            return ("net.ipv4.tcp_tw_reuse is 0, so TIME_WAIT ports are never reused for new "
                    f"connections; setting it to 1 lets connect() reuse them safely ({lasts}). Widening "
                    "net.ipv4.ip_local_port_range also helps; reusing connections helps most.")
        if config.tw_reuse == 2 and time_wait_holds_ports:
            return ("net.ipv4.tcp_tw_reuse is 2 (the kernel default): connect() reuses TIME_WAIT ports "
                    "on loopback only, and this pool is not loopback. Setting it to 1 lets connect() "
                    f"reuse them here too ({lasts}). Widening net.ipv4.ip_local_port_range also helps; "
                    "reusing connections helps most.")
        return (f"net.ipv4.tcp_tw_reuse ({config.tw_reuse}) already lets connect() reuse this pool's "
                "TIME_WAIT ports: widen net.ipv4.ip_local_port_range or make the application reuse "
                f"connections (keep-alive, pooling); {lasts}.")
    if config.os_name == "Windows":
        lo, hi = config.dynamic_range
        widen = (f"widening the dynamic port range (now {lo}-{hi}, {config.capacity} ports: "
                 "netsh int ipv4 set dynamicport tcp start=... num=...)")
        if config.time_wait_seconds > 30:
            return (f"TIME_WAIT lasts {config.time_wait_seconds:.0f} s here: lowering TcpTimedWaitDelay "
                    f"(e.g. to 30, reboot needed) or {widen} frees ports sooner; reusing connections "
                    "helps most.")
        return (f"TcpTimedWaitDelay is already {config.time_wait_seconds:.0f} s: {widen} or reusing "
                "connections is what is left.")
    return None
