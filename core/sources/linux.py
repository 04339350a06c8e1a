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
from core.sources.netlink_diag import ALL_STATES_MASK, DiagSocket, parse_dump  # noqa: E402

log = logging.getLogger(__name__)


class LinuxSource:
    name = "netlink sock_diag"

    def __init__(self, proc: str = "/proc", trace: bool = True) -> None:
        self.proc = proc
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

    def read(self, with_table: bool = True) -> TableRead:
        started = time.perf_counter()
        config = self.port_config()
        if with_table:
            try:
                table = parse_dump(*self._diag_socket().dump(ALL_STATES_MASK))
            except OSError as exc:
                # A broken netlink socket is replaced on the next sample.
                if self._diag is not None:
                    self._diag.close()
                    self._diag = None
                raise SourceError(f"sock_diag dump failed: {exc}") from exc
            table["pid"] = self._owners.owners(table["inode"])
        else:
            table = empty_table()
        events = self.drain_events()
        counters = self.read_counters()
        return TableRead(
            table=table,
            counters=counters,
            config=config,
            events=events,
            read_ms=(time.perf_counter() - started) * 1000.0,
            complete=self.privileged,
            limits=self.limits,
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
