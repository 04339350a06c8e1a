"""64-bit keys for socket 4-tuples and remote endpoints, computed with numpy.

Sets of 100k tuples are compared every sample (attribution memory, new connections);
hashing the 36 address/port bytes to one uint64 makes those np.isin/searchsorted
operations on plain integers. A collision needs ~4e9 tuples to be likely.
"""

from __future__ import annotations

import numpy as np

from core.model import SOCKET_DTYPE, TraceEvent

_PRIME = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0xCBF29CE484222325)
_SHIFT = np.uint64(32)


def _mix(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    h = (h ^ x) * _PRIME
    return h ^ (h >> _SHIFT)


def _words(addresses: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(addresses).view("<u8").reshape(-1, 2)


def remote_keys(table: np.ndarray) -> np.ndarray:
    """Key of (family, remote address, remote port) per row."""
    ra = _words(table["raddr"])
    h = np.full(len(table), _SEED, dtype=np.uint64)
    h = _mix(h, ra[:, 0])
    h = _mix(h, ra[:, 1])
    return _mix(h, table["rport"].astype(np.uint64) | (table["family"].astype(np.uint64) << np.uint64(16)))


def pool_keys(table: np.ndarray, remote: np.ndarray | None = None) -> np.ndarray:
    """Key of (family, local address, remote address, remote port): a Linux port pool."""
    la = _words(table["laddr"])
    h = remote_keys(table) if remote is None else remote
    h = _mix(h, la[:, 0])
    return _mix(h, la[:, 1])


def connection_keys(table: np.ndarray, pools: np.ndarray | None = None) -> np.ndarray:
    """Key of the full 4-tuple per row."""
    h = pool_keys(table) if pools is None else pools
    return _mix(h, table["lport"].astype(np.uint64) + np.uint64(1))


_V4_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def fold_v4_mapped(table: np.ndarray) -> np.ndarray:
    """Rewrite IPv4-mapped IPv6 rows (::ffff:a.b.c.d, what a dual-stack socket shows for
    an IPv4 peer: Java's default) as the IPv4 rows they are, in place. They share the
    IPv4 port space, so they belong to the same pools and read as IPv4. Returns table.

    A row is folded when its remote address is mapped, or (unconnected) its local one is.
    """
    v6 = np.flatnonzero(table["family"] == 6)
    if not len(v6):
        return table
    raddr = np.ascontiguousarray(table["raddr"][v6]).view(np.uint8).reshape(-1, 16)
    laddr = np.ascontiguousarray(table["laddr"][v6]).view(np.uint8).reshape(-1, 16)
    r_mapped = (raddr[:, :12] == _V4_MAPPED_PREFIX).all(axis=1)
    l_mapped = (laddr[:, :12] == _V4_MAPPED_PREFIX).all(axis=1)
    unconnected = ~raddr.any(axis=1)
    fold = r_mapped | (l_mapped & unconnected)
    if not fold.any():
        return table
    rows = v6[fold]
    for column, raw in (("raddr", raddr[fold]), ("laddr", laddr[fold])):
        # The IPv4 address is the mapped one's last 4 bytes; the unspecified :: becomes 0.0.0.0.
        v4 = np.zeros_like(raw)
        v4[:, :4] = raw[:, 12:]
        table[column][rows] = v4.view("V16").reshape(-1)
    table["family"][rows] = 4
    return table


def events_table(events: list[TraceEvent] | tuple[TraceEvent, ...]) -> np.ndarray:
    """The events' 4-tuples as SOCKET_DTYPE rows (pid = the event's pid)."""
    table = np.zeros(len(events), dtype=SOCKET_DTYPE)
    if not events:
        return table
    # Columns by transposing the tuples (one pass in C; hundreds of events a second).
    pid, _comm, family, laddr, lport, raddr, rport, newstate = zip(*events, strict=True)
    table["family"] = family
    table["lport"] = lport
    table["rport"] = rport
    table["pid"] = pid
    table["state"] = newstate
    for column, addresses in (("laddr", laddr), ("raddr", raddr)):
        raw = b"".join(addresses)
        if len(raw) != 16 * len(events):  # addresses not all 16 raw bytes: pad each
            raw = b"".join(bytes(a).ljust(16, b"\0")[:16] for a in addresses)
        table[column] = np.frombuffer(raw, dtype="V16")
    return fold_v4_mapped(table)
