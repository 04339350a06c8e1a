"""The one interface every OS reader implements."""

from __future__ import annotations

from typing import Protocol

from core.model import KernelCounters, PortConfig, TableRead


class SourceError(RuntimeError):
    """The kernel could not be read this time; the next sample may succeed."""


class SocketSource(Protocol):
    name: str  # e.g. "netlink sock_diag", "GetExtendedTcpTable", "psutil"

    def read(self, with_table: bool = True) -> TableRead:
        """One sample's worth of kernel data. with_table=False returns an empty table
        and only the O(1) counters (the cheap path)."""
        ...

    def read_counters(self) -> KernelCounters: ...

    # A source whose reads name time_wait_slices also has
    #   list_time_wait(lo: int, hi: int) -> TimeWaitPiece
    # (LinuxSource): the TIME_WAIT sockets of one slice, listed when the Sampler asks.

    def port_config(self) -> PortConfig: ...

    def close(self) -> None:
        """Release OS resources (netlink socket, tracing instance). Idempotent."""
        ...
