"""The O(1) counters and port settings from /proc (0.3 ms for all of them)."""

from __future__ import annotations

import os
import time

from core.model import KernelCounters, PortConfig

# TCP_TIMEWAIT_LEN in include/net/tcp.h: fixed, not a sysctl (tcp_fin_timeout is not it).
LINUX_TIME_WAIT_SECONDS = 60.0


def read_text(path: str) -> str:
    """The file's text. os.read rather than open(): five of these files are read every
    sample, and a text-mode file object cost about twice the read itself."""
    fd = os.open(path, os.O_RDONLY)  # non-inheritable, as every fd os.open makes (PEP 446)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


def parse_sockstat_tw(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            if "tw" in fields:
                return int(fields[fields.index("tw") + 1])
    return None


def parse_snmp_tcp(text: str) -> dict[str, int]:
    """The `Tcp:` header/value line pair of /proc/net/snmp as a dict."""
    lines = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    if len(lines) < 2:
        raise ValueError("no Tcp lines in /proc/net/snmp")
    header, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(header, values, strict=False)}


def read_counters(proc: str = "/proc") -> KernelCounters:
    now = time.monotonic()
    tw = parse_sockstat_tw(read_text(f"{proc}/net/sockstat"))
    tcp = parse_snmp_tcp(read_text(f"{proc}/net/snmp"))
    return KernelCounters(
        monotonic=now,
        time_wait=tw,
        active_opens=tcp.get("ActiveOpens", 0),
        passive_opens=tcp.get("PassiveOpens", 0),
        attempt_fails=tcp.get("AttemptFails", 0),
        established_resets=tcp.get("EstabResets", 0),
        current_established=tcp.get("CurrEstab", 0),
    )


def parse_port_list(text: str) -> tuple[tuple[int, int], ...]:
    """ip_local_reserved_ports: "8080,9000-9010" -> ((8080, 8080), (9000, 9010))."""
    ranges: list[tuple[int, int]] = []
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return tuple(ranges)


def read_port_config(proc: str = "/proc") -> PortConfig:
    lo, hi = (int(v) for v in read_text(f"{proc}/sys/net/ipv4/ip_local_port_range").split())
    notes: list[str] = []
    try:
        excluded = parse_port_list(read_text(f"{proc}/sys/net/ipv4/ip_local_reserved_ports"))
    except OSError:
        excluded = ()
    try:
        tw_reuse: int | None = int(read_text(f"{proc}/sys/net/ipv4/tcp_tw_reuse").strip())
    except (OSError, ValueError):
        tw_reuse = None
        notes.append("net.ipv4.tcp_tw_reuse could not be read")
    return PortConfig(
        os_name="Linux",
        dynamic_range=(lo, hi),
        excluded=excluded,
        time_wait_seconds=LINUX_TIME_WAIT_SECONDS,
        pool_scope="per_destination",
        tw_reuse=tw_reuse,
        notes=tuple(notes),
    )
