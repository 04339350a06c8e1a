"""CPU of a process and its children, read from /proc by another process.

The window benchmarks measure themselves with psutil from inside; this is the same
question asked from outside, as an operator would with `top` or `pidstat`: a separate
process reads utime + stime from /proc/PID/stat of the window's process (all its
threads) and of each of its child processes (the sampling child), at the start and at
the end of the run. Children named in `ignore` (the socket-building keeper) are not
counted. Linux only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BUSY_FDS = 1000


@dataclass(frozen=True)
class ProcCpu:
    """What the watcher saw: CPU seconds of the process and of its counted children over
    `seconds` of wall time."""

    seconds: float
    process_s: float
    children_s: float
    # Other processes of the machine holding more than BUSY_FDS fds whose count changed
    # during the run: (pid, fds at the end, command). The sampler re-reads the fds of a
    # process whose count changed, so they cost the sampling child, not the window.
    busy_others: tuple[tuple[int, int, str], ...] = ()

    @property
    def cpu_s(self) -> float:
        return self.process_s + self.children_s

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu_s / self.seconds if self.seconds else 0.0


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of `pid` in clock ticks (None: it is gone). The command name, field
    2, may hold spaces and parentheses: the fields are counted after its last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (every thread's list in /proc/PID/task/*/children)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found.update(int(p) for p in f.read().split())
        except OSError:
            continue  # the thread ended
    return sorted(found)


def fd_counts(skip: set[int]) -> dict[int, int]:
    """Open fds of every process not in `skip` with more than BUSY_FDS (Linux >= 6.2
    gives the count as the size of /proc/PID/fd)."""
    counts = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in skip:
            try:
                size = os.stat(f"/proc/{name}/fd").st_size
            except OSError:
                continue
            if size > BUSY_FDS:
                counts[int(name)] = size
    return counts


def command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def _snapshot(pid: int, ignore: set[int]) -> tuple[int, dict[int, int]]:
    own = cpu_ticks(pid) or 0
    kids = {}
    for child in children(pid):
        if child not in ignore and child != os.getpid():
            ticks = cpu_ticks(child)
            if ticks is not None:
                kids[child] = ticks
    return own, kids


def watch(conn: Connection, pid: int, ignore: tuple[int, ...]) -> None:
    """The watcher process: on "start" and on "stop" (from the measured process) read
    /proc; after "stop" send back a ProcCpu. A child that appeared during the run counts
    in full; one that ended during it cannot be read (the sampling child lives throughout)."""
    skip = set(ignore)
    message: Any = conn.recv()
    if message != "start":
        return
    started = time.monotonic()
    own_before, kids_before = _snapshot(pid, skip)
    ours = skip | {pid, os.getpid()} | set(kids_before)
    fds_before = fd_counts(ours)
    conn.recv()  # "stop"
    own_after, kids_after = _snapshot(pid, skip)
    seconds = time.monotonic() - started
    fds_after = fd_counts(ours)
    busy = tuple((other, n, command(other)) for other, n in sorted(fds_after.items())
                 if fds_before.get(other) != n)
    children_ticks = sum(ticks - kids_before.get(child, 0) for child, ticks in kids_after.items())
    conn.send(ProcCpu(seconds, (own_after - own_before) / CLOCK_TICKS, children_ticks / CLOCK_TICKS, busy))
