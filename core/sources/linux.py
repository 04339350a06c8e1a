"""Linux reader: netlink sock_diag for the table, /proc for counters and settings,
/proc/<pid>/fd for owners, and (as root) the sock:inet_sock_set_state tracepoint."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time

import numpy as np

from core.model import (
    TIME_WAIT,
    KernelCounters,
    PortConfig,
    TableRead,
    TimeWaitPiece,
    TraceEvent,
    empty_table,
    take_rows,
)
from core.sources.base import SourceError
from core.sources.linux_pids import InodeOwners
from core.sources.linux_proc import read_counters, read_port_config
from core.time_wait_slices import KEY_END, SLICE_ROWS, WHOLE_ROWS, TimeWaitSlices, port_keys

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

from core.sources.linux_malloc import pin_mmap_threshold  # noqa: E402
from core.sources.linux_trace import SockStateTrace, TraceUnavailable  # noqa: E402
from core.sources.netlink_diag import (  # noqa: E402
    ALL_STATES_MASK,
    TIME_WAIT_BIT,
    DiagSocket,
    NetlinkDiagError,
    full_sockets_and,
    port_key_filter,
    read_table,
)

log = logging.getLogger(__name__)

# Below this many TIME_WAIT sockets every read lists them all (a few ms). Above it
# the reads leave TIME_WAIT out of the main dump (the kernel still walks its hash
# table, but sends and we parse only the other states; their count comes from
# sockstat) and list one slice of the TIME_WAIT tuples each (core.time_wait_slices),
# so each slice is renewed every TIME_WAIT_REFRESH_SECONDS and no read lists them all.
# 5,000 rather than higher: at 10k TIME_WAIT listing every second cost the window's
# sampling child 16 ms a second, tiered 12 ms (benchmarks/gui_cpu.py: the whole app must
# stay under 3% of a core there); TIME_WAIT newer than its slice's listing (< 5 s) is
# attributed by inference until the next listing names it exactly.
TIME_WAIT_TIER_MIN = 5_000
TIME_WAIT_REFRESH_SECONDS = 5.0
RUN_SLICES = 3  # contiguous due slices dumped together (start-up, new settings)
# New settings: slices renewed a read besides the one whose turn it is (at 100k, two
# slices a read cost ~0.19x ss -tanp, three 0.25x: benchmarks/sampling.py).
RENEWED_EXTRA_PER_READ = 1


class LinuxSource:
    name = "netlink sock_diag"

    def __init__(self, proc: str = "/proc", trace: bool = True, *,
                 tier_min: int = TIME_WAIT_TIER_MIN,
                 refresh_seconds: float = TIME_WAIT_REFRESH_SECONDS,
                 slice_rows: int = SLICE_ROWS, whole_rows: int = WHOLE_ROWS) -> None:
        self.proc = proc
        self.tier_min = tier_min
        self.refresh_seconds = refresh_seconds
        self._slice_sizes = {"slice_rows": slice_rows, "whole_rows": whole_rows}  # tests make them small
        self._slices: TimeWaitSlices | None = None  # made at the first read (needs the port range)
        # The slices the last read named: its time, slot per range, port keys of those listed.
        self._due: tuple[float, dict[tuple[int, int], int], dict[int, np.ndarray]] = (0.0, {}, {})
        self._one_dump: bool | None = None  # whether the kernel takes full_sockets_and (None: not tried)
        # The due slices dumped together (the read's own dump holds the first run): lo,
        # hi, and the TIME_WAIT there (keys, rows, ms left).
        self._run: tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._diag: DiagSocket | None = None
        self._owners = InodeOwners(proc)
        self._trace: SockStateTrace | None = None
        self.trace_status = "kernel events off"
        self.privileged = os.geteuid() == 0
        pin_mmap_threshold()  # this process reads big tables every second: see linux_malloc
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
        """Make the next read list every TIME_WAIT tuple (in slices above the threshold)."""
        if self._slices is not None:
            self._slices.request_everything()

    def renew_time_wait_soon(self) -> None:
        """Renew every TIME_WAIT slice within the next few reads (new settings)."""
        if self._slices is not None:
            self._slices.renew_soon(RENEWED_EXTRA_PER_READ)

    def _lists_everything_at_once(self, counters: KernelCounters) -> bool:
        """Whether this read's one dump includes the TIME_WAIT tuples (a small table)."""
        return counters.time_wait is None or counters.time_wait < self.tier_min

    def read(self, with_table: bool = True) -> TableRead:
        started = time.perf_counter()
        config = self.port_config()
        counters = self.read_counters()
        now = counters.monotonic
        if self._slices is None or self._slices.refresh_seconds != self.refresh_seconds:
            self._slices = TimeWaitSlices(config.dynamic_range, self.refresh_seconds, **self._slice_sizes)
        whole = with_table and self._lists_everything_at_once(counters)
        expires = None
        slices: tuple[tuple[int, int], ...] = ()
        if with_table:
            due = [] if whole else self._slices.due(now)
            ranges = self._slices.ranges()
            slices = tuple(ranges[i] for i in due)
            self._due = (now, {ranges[i]: i for i in due}, {})
            self._run = None
            if whole:
                table, expires = self._dump(ALL_STATES_MASK, with_expires=True)
                self._slices.listed_whole(port_keys(table[table["state"] == TIME_WAIT]), now)
            elif slices and self._one_dump is not False:
                table = self._dump_with_run(slices[0][0], _run_end(slices))
            else:
                table, _ = self._dump(ALL_STATES_MASK & ~TIME_WAIT_BIT, with_expires=False)
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
            time_wait_listed=whole,
            expires_ms=expires if whole else None,
            time_wait_slices=slices,
            identities=identities,
        )

    def _dump_with_run(self, lo: int, hi: int) -> np.ndarray:
        """The live table and the TIME_WAIT of the first run of due slices, [lo, hi),
        from one dump (full_sockets_and): one walk of the kernel's table. The run is kept
        for list_time_wait. Where the kernel refuses the filter, two dumps from then on."""
        whole = (lo, hi) == (0, KEY_END)  # every TIME_WAIT: no filter to run on each socket
        try:
            rows, left = self._dump(ALL_STATES_MASK, with_expires=True,
                                    bytecode=b"" if whole else full_sockets_and(port_key_filter(lo, hi)))
        except SourceError as exc:
            if not isinstance(exc.__cause__, NetlinkDiagError) or exc.__cause__.errno != errno.EINVAL:
                raise
            log.info("this kernel filters sockets by port only: two dumps a read (%s)", exc)
            self._one_dump = False
            table, _ = self._dump(ALL_STATES_MASK & ~TIME_WAIT_BIT, with_expires=False)
            return table
        self._one_dump = True
        is_tw = rows["state"] == TIME_WAIT
        keys = port_keys(rows)
        # TIME_WAIT bound to a device comes whatever the filter: only the run's is kept.
        mine = is_tw & (keys >= lo) & (keys < hi)
        self._run = (lo, hi, keys[mine], take_rows(rows, mine), left[mine])
        return take_rows(rows, ~is_tw)

    def _run_of(self, lo: int, hi: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """The run of due slices [lo, hi) is in: dumped together, up to RUN_SLICES
        contiguous ones (one walk of the kernel's table for them: at 100k a walk costs
        ~9 ms, a slice's messages ~2 ms). A run rather than everything at once: its rows
        are held while its slices are keyed."""
        if self._run is None or not (self._run[0] <= lo and hi <= self._run[1]):
            due = sorted(self._due[1])
            run_hi = _run_end(tuple(due[due.index((lo, hi)):]))
            self._run = None  # the previous run's rows go before this one's come
            rows, left = self._dump(TIME_WAIT_BIT, with_expires=True, bytecode=port_key_filter(lo, run_hi))
            self._run = (lo, run_hi, port_keys(rows), rows, left)
        return self._run

    def _dump(self, mask: int, *, with_expires: bool, bytecode: bytes = b"") -> tuple[np.ndarray, np.ndarray]:
        try:
            return read_table(self._diag_socket(), mask, with_expires=with_expires, bytecode=bytecode)
        except OSError as exc:
            # A broken netlink socket is replaced on the next sample.
            if self._diag is not None:
                self._diag.close()
                self._diag = None
            raise SourceError(f"sock_diag dump failed: {exc}") from exc

    def list_time_wait(self, lo: int, hi: int) -> TimeWaitPiece:
        """The TIME_WAIT sockets of one slice the last read named (filtered by the
        kernel: it sends only those). Once every slice it named was listed, they count as
        listed at that read."""
        at, slots, listed = self._due
        if (lo, hi) in slots:
            _, _, run_keys, rows, left = self._run_of(lo, hi)
            mine = (run_keys >= lo) & (run_keys < hi)
            keys, rows, left = run_keys[mine], take_rows(rows, mine), left[mine]
        else:
            rows, left = self._dump(TIME_WAIT_BIT, with_expires=True, bytecode=port_key_filter(lo, hi))
        rows["pid"] = -1  # a TIME_WAIT socket has no owner (inode 0)
        if (lo, hi) in slots:
            listed[slots[(lo, hi)]] = keys
            if len(listed) == len(slots) and self._slices is not None:
                self._slices.listed(list(listed), list(listed.values()), at)
                self._run = None
        return TimeWaitPiece(lo, hi, rows, left)

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


def _run_end(slices: tuple[tuple[int, int], ...]) -> int:
    """Where the run of contiguous slices the first one starts ends (RUN_SLICES at most):
    the slices one dump carries."""
    end = 0
    while end + 1 < min(len(slices), RUN_SLICES) and slices[end + 1][0] == slices[end][1]:
        end += 1
    return slices[end][1]
