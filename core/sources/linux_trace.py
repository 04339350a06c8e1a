"""Kernel socket events from the tracepoint sock:inet_sock_set_state (Linux, root).

Why: TIME_WAIT sockets have no owner in the socket table. Two transitions name one:
newstate FIN_WAIT1 fires in the context of the process calling close(), with the full
4-tuple (exact attribution); newstate SYN_SENT fires in the context of the process
calling connect(), with the destination (sport is still 0: no port is chosen yet), also
when the attempt then fails with EADDRNOTAVAIL, so it names the culprit even when the
range is already exhausted and no connection lives long enough to be sampled.

The events are recorded in a private tracing instance named portpressure-<pid>, so the
machine's own tracing is untouched; it is removed on close, at exit and when the object
is collected, and instances left by a crashed run (their pid is gone) are removed on start.

Choices worth knowing:
- The tracepoint is global; the socket table is per network namespace. An event is kept
  only if the process that fired it is in our network namespace. The check reads
  /proc/<pid>/ns/net once per process per drain (so a reused pid is re-checked), and a
  small LRU remembers the answer. A process that is gone by the time we drain is kept
  only if it was in our namespace when last seen; one never seen is dropped (counted in
  `dropped_foreign` and `dropped_gone`): naming a process of another container as ours
  would be worse than leaving a socket to the inferred/unattributed tiers. So a process
  living less than one drain interval that was never seen before is not named by its
  events. (A thread that moved itself into another namespace with setns() is judged by
  its process.)
- The trace line's pid is the thread id. The instance records the thread-group id too
  (option record-tgid, per instance), and TraceEvent.pid is that process id, which is
  what owns sockets in /proc/<pid>/fd. comm is the kernel's name of the thread. The kernel
  saves names (and tgids) lazily, at the task's next context switch, and prints "<...>"
  ("(-------)") until then or once its table has forgotten the task: the reader then asks
  /proc/<tid> (comm "" if the thread is gone).
- Events fired in interrupt context carry an unrelated pid; the filter drops them.
- The pids in the trace are the kernel's global pids: inside a PID namespace (a
  container) they cannot be matched to /proc, so the reader refuses to start there.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import logging
import os
import re
import socket
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

from core.model import FIN_WAIT1, SYN_SENT, TraceEvent

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

log = logging.getLogger(__name__)

INSTANCE_PREFIX = "portpressure-"
TRACEFS_MOUNT = "/sys/kernel/tracing"
TRACEFS_DEBUGFS = "/sys/kernel/debug/tracing"  # appears when debugfs is mounted
TRACEFS_CANDIDATES = (TRACEFS_MOUNT, TRACEFS_DEBUGFS)
EVENT_DIR = "events/sock/inet_sock_set_state"

# Kernel constants, used when the event's format file does not spell them out.
TCP_SYN_SENT = 2
TCP_FIN_WAIT1 = 4
# trace_entry.flags bits: hard irq 0x08, soft irq 0x10, NMI 0x40 (stable since 2.6).
INTERRUPT_FLAGS = 0x08 | 0x10 | 0x40
# The init PID namespace has this fixed inode (PROC_PID_INIT_INO).
INIT_PID_NS_INODE = 0xEFFFFFFC

READ_CHUNK = 1 << 16  # trace_pipe returns at most a page or two per read()
MAX_READ_BYTES = 32 << 20  # one drain reads at most this much; the rest waits in the kernel
MAX_PARTIAL_LINE = 1 << 12  # a trailing "line" longer than this is garbage, not a partial event
NETNS_MEMORY = 4096  # processes whose namespace is remembered after they exit
ADDRESS_CACHE = 1 << 16
CLOSE_LOCK_TIMEOUT_S = 1.0  # drain never blocks; this only guards against a wedged thread

_DROP_FOREIGN = -1
_DROP_GONE = -2
_NEWSTATE = {b"SYN_SENT": SYN_SENT, b"FIN_WAIT1": FIN_WAIT1}

# One trace_pipe line. The context is "<comm>-<tid> (<tgid>) [cpu] <flags> <ts>:"; comm is
# right-aligned and may contain spaces and dashes: the lazy comm group takes the first
# "-<digits>" after which the whole rest of the line matches, which for a real comm (at
# most 15 characters) is the one right before the tgid/cpu. "(<tgid>)" is absent when the
# option record-tgid is off and "(-------)" when the kernel did not record it.
_EVENT = re.compile(
    rb"^ *(.*?)-(\d+) +(?:\( *(\d+|-+)\) +)?\[\d+\] [^\n]*?: inet_sock_set_state: "
    rb"family=AF_INET(6?) protocol=IPPROTO_TCP sport=(\d+) dport=(\d+) "
    rb"saddr=([\d.]+) daddr=([\d.]+) saddrv6=([0-9a-fA-F:.]+) daddrv6=([0-9a-fA-F:.]+) "
    rb"oldstate=TCP_\w+ newstate=TCP_(SYN_SENT|FIN_WAIT1)$",
    re.MULTILINE,
)
_LOST = re.compile(rb"^CPU:\d+ \[LOST (\d+) EVENTS\]$", re.MULTILINE)
_INSTANCE_NAME = re.compile(re.escape(INSTANCE_PREFIX) + r"(\d+)(?:-\d+)?")


class TraceUnavailable(Exception):
    """Kernel events cannot be read here; the message says why, in words."""


# --- parsing -------------------------------------------------------------------------------

_packed_cache: dict[bytes, bytes] = {}
_comm_cache: dict[bytes, str] = {}


def _packed(text: bytes, v6: bool) -> bytes:
    """16 raw bytes (as in SOCKET_DTYPE) for an address printed by the kernel."""
    raw = _packed_cache.get(text)
    if raw is None:
        if v6:
            raw = socket.inet_pton(socket.AF_INET6, text.decode("ascii"))
        else:
            raw = socket.inet_pton(socket.AF_INET, text.decode("ascii")) + bytes(12)
        if len(_packed_cache) >= ADDRESS_CACHE:
            _packed_cache.clear()
        _packed_cache[text] = raw
    return raw


UNKNOWN_COMM = b"<...>"  # printed when the kernel no longer (or not yet) knows the task's name


def _comm(text: bytes) -> str:
    comm = _comm_cache.get(text)
    if comm is None:
        comm = "" if text == UNKNOWN_COMM else text.decode("utf-8", "replace")
        if len(_comm_cache) >= ADDRESS_CACHE:
            _comm_cache.clear()
        _comm_cache[text] = comm
    return comm


def _event(groups: tuple[bytes, ...], pid: int, comm: str) -> TraceEvent:
    """TraceEvent from the groups of an _EVENT match. Raises OSError/ValueError on a bad address."""
    _comm_text, _tid, _tgid, v6, sport, dport, saddr, daddr, saddr6, daddr6, newstate = groups
    if v6:
        laddr, raddr, family = _packed(saddr6, True), _packed(daddr6, True), 6
    else:
        laddr, raddr, family = _packed(saddr, False), _packed(daddr, False), 4
    return TraceEvent(pid=pid, comm=comm, family=family, laddr=laddr, lport=int(sport),
                      raddr=raddr, rport=int(dport), newstate=_NEWSTATE[newstate])


def _recorded_tgid(tgid: bytes | None) -> int:
    """The process id the kernel recorded next to the thread id; 0 when it did not."""
    return int(tgid) if tgid and tgid[0] != ord("-") else 0


def parse_line(line: str | bytes) -> TraceEvent | None:
    """One trace_pipe line -> TraceEvent (pid = process id when recorded, else thread id),
    or None for anything else (LOST EVENTS lines, other states, noise)."""
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    match = _EVENT.match(raw.rstrip(b"\r\n"))
    if match is None or match.end() != len(raw.rstrip(b"\r\n")):
        return None
    groups = match.groups()
    pid = _recorded_tgid(groups[2]) or int(groups[1])
    try:
        return _event(groups, pid, _comm(groups[0]))
    except (OSError, ValueError):
        return None


def lost_in(line: str | bytes) -> int:
    """n for a "CPU:x [LOST n EVENTS]" line, else 0."""
    raw = line.encode() if isinstance(line, str) else line
    match = _LOST.match(raw.strip())
    return int(match[1]) if match else 0


class TraceParser:
    """trace_pipe text -> TraceEvents, chunk by chunk (a line cut between two reads is kept
    for the next chunk). `pid_to_keep(tid, tgid_text)` says which process id to report for a
    thread, or a negative _DROP_* reason; it is asked once per thread per chunk.

    Counters (cumulative): `lost` events the kernel overwrote before they were read,
    `unparsed` lines that were not events of ours, `dropped_foreign` events not shown to be
    of our network namespace, of which `dropped_gone` are of processes that exited before
    they could be checked, `returned` events handed out.
    """

    def __init__(self) -> None:
        self._pending = b""
        self.lost = 0
        self.unparsed = 0
        self.dropped_foreign = 0
        self.dropped_gone = 0
        self.returned = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def feed(self, chunk: bytes, pid_to_keep: Callable[[int, bytes | None], int],
             max_events: int = 1_000_000, comm_of: Callable[[int], str] | None = None) -> list[TraceEvent]:
        """Events in `chunk` (plus what was left from the last call). `comm_of(tid)` names a
        thread whose name the kernel printed as "<...>" (asked once per thread per chunk)."""
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        if len(self._pending) > MAX_PARTIAL_LINE:
            self.unparsed += 1
            self._pending = b""
        events: list[TraceEvent] = []
        if end == 0 or max_events <= 0:
            self._pending = data[:end] + self._pending
            return events
        consumed = end
        # Only a chunk with at least max_events lines can be cut short, and only then are
        # the matches' positions needed; otherwise findall, which makes no Match objects.
        if data.count(b"\n", 0, end) < max_events:
            matches = None
            found = _EVENT.findall(data, 0, end)
        else:
            matches = list(_EVENT.finditer(data, 0, end))
            found = [match.groups() for match in matches]
        matched = len(found)
        pid_of: dict[bytes, int] = {}  # by the thread id's text: no int() per event
        comm_of_tid: dict[int, str] = {}
        # Hundreds of events a second: the loop keeps to local names, looks the caches up
        # in place and makes each event with tuple.__new__ (what TraceEvent's own __new__
        # calls, without its Python frame): each call per event was ~5% of the cost.
        append, newstates, new_event = events.append, _NEWSTATE, tuple.__new__
        packed_cache, comm_cache = _packed_cache, _comm_cache
        for index, groups in enumerate(found):
            comm_text, tid_text, tgid, v6, sport, dport, saddr, daddr, saddr6, daddr6, state = groups
            pid = pid_of.get(tid_text)
            if pid is None:
                pid = pid_of[tid_text] = pid_to_keep(int(tid_text), tgid or None)  # findall: b"" if absent
            if pid < 0:
                self.dropped_foreign += 1
                if pid == _DROP_GONE:
                    self.dropped_gone += 1
                continue
            if comm_text == UNKNOWN_COMM and comm_of is not None:
                tid = int(tid_text)
                comm = comm_of_tid.get(tid)
                if comm is None:
                    comm = comm_of_tid[tid] = comm_of(tid)
            else:
                comm = comm_cache.get(comm_text) or _comm(comm_text)
            try:
                if v6:
                    laddr = packed_cache.get(saddr6) or _packed(saddr6, True)
                    raddr = packed_cache.get(daddr6) or _packed(daddr6, True)
                    family = 6
                else:
                    laddr = packed_cache.get(saddr) or _packed(saddr, False)
                    raddr = packed_cache.get(daddr) or _packed(daddr, False)
                    family = 4
                append(new_event(TraceEvent, (pid, comm, family, laddr, int(sport), raddr, int(dport),
                                              newstates[state])))
            except (OSError, ValueError):
                self.unparsed += 1
                continue
            if len(events) >= max_events:
                assert matches is not None  # as many events as lines: the positions were kept
                matched = index + 1
                consumed = matches[index].end() + 1
                break
        lost_lines = 0
        if data.find(b"LOST", 0, consumed) >= 0:
            for lost in _LOST.finditer(data, 0, consumed):
                lost_lines += 1
                self.lost += int(lost[1])
        self.unparsed += data.count(b"\n", 0, consumed) - matched - lost_lines
        if consumed < end:
            self._pending = data[consumed:end] + self._pending
        self.returned += len(events)
        return events


def keep_recorded_pid(tid: int, tgid: bytes | None) -> int:
    """pid_to_keep for recorded text: the process id the kernel recorded, else the thread id."""
    return _recorded_tgid(tgid) or tid


# --- tracefs -------------------------------------------------------------------------------


def _is_tracefs(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "instances")) and os.path.isdir(os.path.join(path, "events"))


def _mount_tracefs(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"nodev", target.encode(), b"tracefs", ctypes.c_ulong(0), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def find_tracefs(path: str | None = None) -> str:
    """The tracefs directory: `path` if given, else /sys/kernel/tracing (mounted here as
    root when missing), else /sys/kernel/debug/tracing. Raises TraceUnavailable."""
    if path is not None:
        if _is_tracefs(path):
            return path
        raise TraceUnavailable(f"{path} is not a tracefs directory (no instances/ and events/ in it)")
    if _is_tracefs(TRACEFS_MOUNT):
        return TRACEFS_MOUNT
    problems = []
    if os.geteuid() != 0:
        problems.append("tracefs is not mounted and mounting it needs root")
    elif not os.path.isdir(TRACEFS_MOUNT):
        problems.append(f"{TRACEFS_MOUNT} does not exist (kernel built without tracing?)")
    else:
        try:
            _mount_tracefs(TRACEFS_MOUNT)
        except OSError as exc:
            problems.append(f"mount -t tracefs nodev {TRACEFS_MOUNT} failed: {exc.strerror}")
        else:
            log.info("mounted tracefs at %s", TRACEFS_MOUNT)
            if _is_tracefs(TRACEFS_MOUNT):
                return TRACEFS_MOUNT
            problems.append(f"{TRACEFS_MOUNT} has no instances/ after mounting tracefs")
    if _is_tracefs(TRACEFS_DEBUGFS):
        return TRACEFS_DEBUGFS
    raise TraceUnavailable("; ".join(problems) + f"; {TRACEFS_DEBUGFS} is not available either")


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def remove_stale_instances(tracefs: str) -> list[str]:
    """Remove portpressure-<pid>[-n] instances whose process is gone (a crashed run).
    Instances of live pids are left alone; one still held open by a survivor (a child of
    the dead run that inherited trace_pipe) cannot be removed and is left for next time."""
    removed = []
    instances = os.path.join(tracefs, "instances")
    for name in os.listdir(instances):
        match = _INSTANCE_NAME.fullmatch(name)
        if match is None or _pid_alive(int(match[1])):
            continue
        path = os.path.join(instances, name)
        with contextlib.suppress(OSError):
            _write(os.path.join(path, EVENT_DIR, "enable"), "0")
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue  # another run removed it first
        except OSError as exc:
            log.warning("cannot remove the stale tracing instance %s: %s", path, exc.strerror)
        else:
            removed.append(name)
    if removed:
        log.info("removed stale tracing instances: %s", ", ".join(removed))
    return removed


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def event_filter(format_text: str) -> str:
    """The filter for our instance: TCP only, newstate SYN_SENT or FIN_WAIT1, not fired in
    interrupt context. State numbers come from the event's format when it lists them."""
    def state(name: str, default: int) -> int:
        match = re.search(r"\{\s*(\d+),\s*\"" + name + r"\"\s*\}", format_text)
        return int(match[1]) if match else default

    syn_sent, fin_wait1 = state("TCP_SYN_SENT", TCP_SYN_SENT), state("TCP_FIN_WAIT1", TCP_FIN_WAIT1)
    tcp = f"protocol == {socket.IPPROTO_TCP} && " if "field:__u16 protocol" in format_text else ""
    return (f"{tcp}(newstate == {syn_sent} || newstate == {fin_wait1}) "
            f"&& !(common_flags & {INTERRUPT_FLAGS:#x})")


def _memory_capped_kb(want_kb: int) -> int:
    """At most 1/16 of available memory across all CPUs: a diagnostic tool must not
    starve the server it diagnoses (4 MB per CPU is 256 MB on 64 CPUs)."""
    cpus = os.sysconf("SC_NPROCESSORS_ONLN") or 1
    try:
        found = re.search(r"MemAvailable:\s+(\d+)", _read("/proc/meminfo"))
    except OSError:
        found = None
    if found is None:
        return want_kb
    available_kb = int(found[1])
    return min(want_kb, max(64, available_kb // 16 // cpus))


# --- the reader ----------------------------------------------------------------------------


def _parser_counter(name: str) -> property:
    return property(lambda self: getattr(self._parser, name), doc=f"TraceParser.{name}")

_live: weakref.WeakSet[SockStateTrace] = weakref.WeakSet()
_held_instances: set[str] = set()  # instance names this process holds open


class SockStateTrace:
    """A private tracing instance recording TCP SYN_SENT/FIN_WAIT1 transitions, and its reader.
    Counters as in TraceParser (lost, unparsed, dropped_foreign, dropped_gone, returned)."""

    def __init__(self, tracefs: str | None = None, buffer_kb: int = 4096) -> None:
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._owner_pid = os.getpid()
        self._parser = TraceParser()
        self._netns_seen: OrderedDict[int, bool] = OrderedDict()  # pid -> in our namespace
        self._removed = True
        self.instance = ""
        self.stale_removed: list[str] = []
        if buffer_kb <= 0:
            raise ValueError(f"buffer_kb must be positive, not {buffer_kb}")
        if os.geteuid() != 0:
            raise TraceUnavailable(f"reading kernel socket events needs root (running as uid {os.geteuid()})")
        try:
            in_init_pid_ns = os.stat("/proc/self/ns/pid").st_ino == INIT_PID_NS_INODE
        except OSError:
            in_init_pid_ns = True  # kernels without pid ns files have no pid namespaces
        if not in_init_pid_ns:
            raise TraceUnavailable("running inside a PID namespace (a container): the kernel's "
                                   "event pids cannot be matched to processes here")
        try:
            self._own_netns: str | None = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = None  # cannot tell namespaces apart: keep all (own_netns_only False)
        self.tracefs = find_tracefs(tracefs)
        event_dir = os.path.join(self.tracefs, EVENT_DIR)
        if not os.path.isdir(event_dir):
            raise TraceUnavailable("this kernel has no sock:inet_sock_set_state tracepoint (Linux 4.16+)")
        self.stale_removed = remove_stale_instances(self.tracefs)
        try:
            self.instance = _claim_instance(os.path.join(self.tracefs, "instances"))
            self._removed = False
            _live.add(self)
            self.buffer_kb = self._set_buffer_kb(_memory_capped_kb(buffer_kb))
            # The process id next to each thread id; without it pid falls back to /proc.
            with contextlib.suppress(OSError):
                _write(os.path.join(self.instance, "options", "record-tgid"), "1")
            self.filter = self._set_filter(_read(os.path.join(event_dir, "format")))
            _write(os.path.join(self.instance, EVENT_DIR, "enable"), "1")
            self._fd = os.open(os.path.join(self.instance, "trace_pipe"),
                               os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.close()
            raise TraceUnavailable(f"cannot set up the tracing instance {self.instance or self.tracefs}: "
                                   f"{exc.strerror or exc}") from exc

    @property
    def own_netns_only(self) -> bool:
        """True when drain() returns only events of tasks in our network namespace (the
        one the socket table shows). False only where /proc/self/ns/net cannot be read:
        then every event is returned and a match against the table may be a coincidence."""
        return self._own_netns is not None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _set_buffer_kb(self, want_kb: int) -> int:
        path = os.path.join(self.instance, "buffer_size_kb")
        kb = want_kb
        while True:
            try:
                _write(path, str(kb))
                break
            except OSError as exc:
                if exc.errno != errno.ENOMEM or kb <= 64:
                    raise
                kb //= 2
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(_read(path).split()[0])
        return kb

    def _set_filter(self, format_text: str) -> str:
        path = os.path.join(self.instance, EVENT_DIR, "filter")
        wanted = event_filter(format_text)
        try:
            _write(path, wanted)
            return wanted
        except OSError:
            # An old kernel that rejects the interrupt clause: states and protocol still hold.
            simpler = wanted.rsplit(" && !(", 1)[0]
            _write(path, simpler)
            return simpler

    # --- reading ---

    def _read_available(self) -> bytes:
        chunks = []
        total = self._parser.pending_bytes
        while total < MAX_READ_BYTES and self._fd is not None:
            try:
                chunk = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EBADF and self._fd is None:
                    break  # closed under us (close() from a signal handler)
                raise
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def _pid_to_keep(self, tid: int, tgid: bytes | None) -> int:
        """The process id to report for events of thread `tid`, or a _DROP_* reason.
        The namespace checked is the process's: a short-lived thread of a long-lived
        process is gone by the time we drain, its process is not."""
        pid = _recorded_tgid(tgid)
        if pid and pid != tid and not os.path.exists(f"/proc/{pid}/task/{tid}") \
                and os.path.exists(f"/proc/{tid}"):
            pid = 0  # the kernel's tgid map still held a previous owner of this pid
        pid = pid or _tgid_from_proc(tid) or tid
        if self._own_netns is None:
            return pid
        seen = self._netns_seen
        try:
            ours = os.readlink(f"/proc/{pid}/ns/net") == self._own_netns
        except OSError:
            ours_before = seen.get(pid)
            if ours_before is None:
                return _DROP_GONE
            return pid if ours_before else _DROP_FOREIGN
        seen[pid] = ours
        seen.move_to_end(pid)
        if len(seen) > NETNS_MEMORY:
            seen.popitem(last=False)
        return pid if ours else _DROP_FOREIGN

    def drain(self, max_events: int = 1_000_000) -> list[TraceEvent]:
        """Everything recorded since the last call (at most max_events; the rest waits for
        the next call). Never blocks. Returns [] once closed."""
        with self._lock:
            if self._fd is None:
                return []
            return self._parser.feed(self._read_available(), self._pid_to_keep, max_events, _comm_from_proc)

    # The parser's counters (see TraceParser).
    lost = _parser_counter("lost")
    unparsed = _parser_counter("unparsed")
    dropped_foreign = _parser_counter("dropped_foreign")
    dropped_gone = _parser_counter("dropped_gone")
    returned = _parser_counter("returned")

    # --- cleanup ---

    def close(self) -> None:
        """Disable the event and remove the instance. Idempotent; safe from atexit and from a
        signal handler that interrupts drain() (the lock is re-entrant and never awaited long)."""
        acquired = self._lock.acquire(timeout=CLOSE_LOCK_TIMEOUT_S)
        try:
            fd, self._fd = self._fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # first: an instance with trace_pipe open cannot be removed
            if self._removed or os.getpid() != self._owner_pid:
                return  # a forked copy: the instance belongs to the parent
            self._removed = True
            _held_instances.discard(os.path.basename(self.instance))
            with contextlib.suppress(OSError):
                _write(os.path.join(self.instance, EVENT_DIR, "enable"), "0")
            try:
                os.rmdir(self.instance)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # Busy: another process holds trace_pipe. The next run removes it as stale.
                log.warning("cannot remove the tracing instance %s: %s", self.instance, exc.strerror)
        finally:
            if acquired:
                self._lock.release()

    def __enter__(self) -> SockStateTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _tgid_from_proc(tid: int) -> int:
    """Process id of thread `tid` from /proc, 0 if gone (used when the kernel did not record it)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _comm_from_proc(tid: int) -> str:
    """The thread's name now, for events whose name the kernel had not saved; "" if gone."""
    try:
        with open(f"/proc/{tid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return ""


def _claim_instance(instances: str) -> str:
    """mkdir instances/portpressure-<pid>; a second reader in this process gets -2, -3, ...
    A directory with our pid that this process does not hold is a dead namesake's: replace it."""
    pid = os.getpid()
    for n in range(1, 1000):
        name = f"{INSTANCE_PREFIX}{pid}" if n == 1 else f"{INSTANCE_PREFIX}{pid}-{n}"
        if name in _held_instances:
            continue
        path = os.path.join(instances, name)
        if os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                continue
        os.mkdir(path)
        _held_instances.add(name)
        return path
    raise OSError(errno.EEXIST, "no free tracing instance name")


def _close_all_at_exit() -> None:
    for trace in list(_live):
        trace.close()


def _forget_in_child() -> None:
    """After fork: the child must not hold our trace_pipe (the parent could not remove its
    instance) nor remove the parent's instance when it exits."""
    for trace in list(_live):
        trace._lock = threading.RLock()  # a lock held by another thread at fork stays held
        fd, trace._fd = trace._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _held_instances.clear()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_forget_in_child)
