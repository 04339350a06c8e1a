"""Linux reader: netlink sock_diag for the table, /proc for counters and settings,
/proc/<pid>/fd for owners, and (as root) the sock:inet_sock_set_state tracepoint."""

from __future__ import annotations

import logging
import os
import sys
import time

from core.model import KernelCounters, PortConfig, TableRead, TraceEvent, empty_table
from core.sources.base import SourceError
from core.sources.linux_pids import InodeOwners
from core.sources.linux_proc import read_counters, read_port_config

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

from core.sources.linux_trace import SockStateTrace, TraceUnavailable  # noqa: E402
from core.sources.netlink_diag import ALL_STATES_MASK, TIME_WAIT_BIT, DiagSocket, parse_dump  # noqa: E402

log = logging.getLogger(__name__)

# Below this many TIME_WAIT sockets every read lists them all (a few ms). Above it the
# TIME_WAIT tuples are listed every TIME_WAIT_REFRESH_SECONDS and the reads between
# leave them out in the kernel (the kernel still walks its hash table, but sends and
# we parse only the other states); their count comes from sockstat every read.
# 5,000 rather than higher: at 10k TIME_WAIT listing every second cost the window's
# sampling child 16 ms a second, tiered 12 ms (benchmarks/gui_cpu.py: the whole app must
# stay under 3% of a core there); TIME_WAIT newer than the last listing (< 5 s) is
# attributed by inference until the next listing names it exactly.
TIME_WAIT_TIER_MIN = 5_000
TIME_WAIT_REFRESH_SECONDS = 5.0


class LinuxSource:
    name = "netlink sock_diag"

    def __init__(self, proc: str = "/proc", trace: bool = True, *,
                 tier_min: int = TIME_WAIT_TIER_MIN,
                 refresh_seconds: float = TIME_WAIT_REFRESH_SECONDS) -> None:
        self.proc = proc
        self.tier_min = tier_min
        self.refresh_seconds = refresh_seconds
        self._listed_at: float | None = None  # monotonic time of the last read listing TIME_WAIT
        self._diag: DiagSocket | None = None
        self._owners = InodeOwners(proc)
        self._trace: SockStateTrace | None = None
        self.trace_status = "kernel events off"
        self.privileged = os.geteuid() == 0
        if trace:
            self._start_trace()

    def _start_trace(self) -> None:
        try:
            self._trace = SockStateTrace()
            self.trace_status = "kernel events on (sock:inet_sock_set_state)"
        except TraceUnavailable as exc:
            self.trace_status = f"kernel events off: {exc}"
        except OSError as exc:
            self.trace_status = f"kernel events off: {exc}"

    @property
    def kernel_events(self) -> bool:
        """Whether kernel events name the processes that open and close connections."""
        return self._trace is not None

    @property
    def limits(self) -> tuple[str, ...]:
        hidden: list[str] = []
        if not self.privileged:
            hidden.append("not root: sockets of other users' processes show no owner, "
                          "and TIME_WAIT cannot be attributed from kernel events")
        if self._trace is None:
            hidden.append(self.trace_status)
        return tuple(hidden)

    def _diag_socket(self) -> DiagSocket:
        if self._diag is None:
            self._diag = DiagSocket()
        return self._diag

    def read_counters(self) -> KernelCounters:
        try:
            return read_counters(self.proc)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read TCP counters: {exc}") from exc

    def port_config(self) -> PortConfig:
        try:
            return read_port_config(self.proc)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read the local port range: {exc}") from exc

    def drain_events(self) -> tuple[TraceEvent, ...]:
        if self._trace is None:
            return ()
        try:
            return tuple(self._trace.drain())
        except OSError as exc:
            log.warning("kernel event reader stopped: %s", exc)
            self.trace_status = f"kernel events stopped: {exc}"
            self._close_trace()
            return ()

    def request_listing(self) -> None:
        """Make the next read list the TIME_WAIT tuples whatever their number."""
        self._listed_at = None

    def _lists_time_wait(self, counters: KernelCounters) -> bool:
        """Whether this read dumps the TIME_WAIT tuples too."""
        if self._listed_at is None or counters.time_wait is None or counters.time_wait < self.tier_min:
            return True
        return counters.monotonic - self._listed_at >= self.refresh_seconds

    def read(self, with_table: bool = True) -> TableRead:
        started = time.perf_counter()
        config = self.port_config()
        counters = self.read_counters()
        listed = with_table and self._lists_time_wait(counters)
        expires = None
        if with_table:
            mask = ALL_STATES_MASK if listed else ALL_STATES_MASK & ~TIME_WAIT_BIT
            try:
                table, expires = parse_dump(*self._diag_socket().dump(mask), with_expires=listed)
            except OSError as exc:
                # A broken netlink socket is replaced on the next sample.
                if self._diag is not None:
                    self._diag.close()
                    self._diag = None
                raise SourceError(f"sock_diag dump failed: {exc}") from exc
            if listed:
                self._listed_at = counters.monotonic
            table["pid"] = self._owners.owners(table["inode"])
            identities = self._owners.take_identities()
        else:
            table = empty_table()
            identities = {}
        events = self.drain_events()
        return TableRead(
            table=table,
            counters=counters,
            config=config,
            events=events,
            read_ms=(time.perf_counter() - started) * 1000.0,
            complete=self.privileged,
            limits=self.limits,
            time_wait_listed=listed,
            expires_ms=expires if listed else None,
            identities=identities,
        )

    def _close_trace(self) -> None:
        if self._trace is not None:
            try:
                self._trace.close()
            finally:
                self._trace = None

    def close(self) -> None:
        self._close_trace()
        if self._diag is not None:
            self._diag.close()
            self._diag = None
