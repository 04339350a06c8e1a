"""Kernel socket events from the tracepoint sock:inet_sock_set_state (Linux, root).

Why: TIME_WAIT sockets have no owner in the socket table. Two transitions name one:
newstate FIN_WAIT1 fires in the context of the process calling close(), with the full
4-tuple (exact attribution); newstate SYN_SENT fires in the context of the process
calling connect(), with the destination, also when the attempt then fails with
EADDRNOTAVAIL (sport is 0: no port was found), so it names the culprit even when the
range is already exhausted and no connection lives long enough to be sampled.

The events are recorded in a private tracing instance named portpressure-<pid>, so the
machine's own tracing is untouched; it is removed on close/exit, and instances left
by a crashed run (their pid is gone) are removed on start.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import ipaddress
import os
import re
import subprocess
import sys

from core.model import FIN_WAIT1, SYN_SENT, TraceEvent

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

INSTANCE_PREFIX = "portpressure-"
EVENT_DIR = "events/sock/inet_sock_set_state"
# Linux TCP state numbers: 2 TCP_SYN_SENT, 4 TCP_FIN_WAIT1; protocol 6 is TCP.
EVENT_FILTER = "protocol == 6 && (newstate == 2 || newstate == 4)"
NEWSTATE = {"TCP_SYN_SENT": SYN_SENT, "TCP_FIN_WAIT1": FIN_WAIT1}
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
MAX_READ_BYTES = 64 << 20  # one drain reads at most this much; the rest waits for the next

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\].*?inet_sock_set_state: "
    r"family=(?P<family>AF_INET6?) protocol=\S+ sport=(?P<sport>\d+) dport=(?P<dport>\d+) "
    r"saddr=(?P<saddr>\S+) daddr=(?P<daddr>\S+) saddrv6=(?P<saddr6>\S+) daddrv6=(?P<daddr6>\S+) "
    r"oldstate=\S+ newstate=(?P<newstate>\S+)"
)


class TraceUnavailable(Exception):
    """Kernel events cannot be read here; the message says why, in words."""


def _packed(text: str, family: int) -> bytes:
    raw = ipaddress.ip_address(text).packed
    return raw + bytes(12) if family == 4 else raw


def parse_line(line: str) -> TraceEvent | None:
    """One trace_pipe line -> TraceEvent, or None for other lines (LOST EVENTS, noise)."""
    match = _LINE.match(line)
    if match is None:
        return None
    newstate = NEWSTATE.get(match["newstate"])
    if newstate is None:
        return None
    family = 6 if match["family"] == "AF_INET6" else 4
    try:
        if family == 4:
            laddr, raddr = _packed(match["saddr"], 4), _packed(match["daddr"], 4)
        else:
            laddr, raddr = _packed(match["saddr6"], 6), _packed(match["daddr6"], 6)
    except ValueError:
        return None
    return TraceEvent(pid=int(match["pid"]), comm=match["comm"].strip(), family=family, laddr=laddr,
                      lport=int(match["sport"]), raddr=raddr, rport=int(match["dport"]),
                      newstate=newstate)


def find_tracefs() -> str:
    for path in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(path, "instances")):
            return path
    if os.geteuid() != 0:
        raise TraceUnavailable("tracefs is not mounted and mounting it needs root")
    result = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS_CANDIDATES[0]],
                            capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isdir(os.path.join(TRACEFS_CANDIDATES[0], "instances")):
        raise TraceUnavailable(f"cannot mount tracefs: {result.stderr.strip() or 'no instances dir'}")
    return TRACEFS_CANDIDATES[0]


def remove_stale_instances(tracefs: str) -> list[str]:
    """Remove portpressure-<pid> instances whose process is gone (a crashed run)."""
    removed = []
    instances = os.path.join(tracefs, "instances")
    for name in os.listdir(instances):
        if not name.startswith(INSTANCE_PREFIX):
            continue
        pid_text = name[len(INSTANCE_PREFIX):]
        if pid_text.isdigit() and not os.path.exists(f"/proc/{pid_text}"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(instances, name))
                removed.append(name)
    return removed


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class SockStateTrace:
    def __init__(self, tracefs: str | None = None, buffer_kb: int = 4096) -> None:
        self._fd: int | None = None
        self._own_netns = ""
        self._netns_of: dict[int, bool] = {}
        self._partial = b""
        self.lost = 0
        self.dropped_foreign = 0
        if os.geteuid() != 0:
            raise TraceUnavailable("reading kernel socket events needs root")
        self.tracefs = tracefs or find_tracefs()
        if not os.path.isdir(os.path.join(self.tracefs, EVENT_DIR)):
            raise TraceUnavailable("this kernel has no sock:inet_sock_set_state tracepoint")
        self.stale_removed = remove_stale_instances(self.tracefs)
        self.instance = os.path.join(self.tracefs, "instances", f"{INSTANCE_PREFIX}{os.getpid()}")
        self._own_netns = os.readlink("/proc/self/ns/net")
        try:
            if not os.path.isdir(self.instance):
                os.mkdir(self.instance)
            _write(os.path.join(self.instance, "buffer_size_kb"), str(buffer_kb))
            _write(os.path.join(self.instance, EVENT_DIR, "filter"), EVENT_FILTER)
            _write(os.path.join(self.instance, EVENT_DIR, "enable"), "1")
            self._fd = os.open(os.path.join(self.instance, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self.close()
            raise TraceUnavailable(f"cannot set up a tracing instance: {exc}") from exc
        atexit.register(self.close)

    def _in_our_netns(self, pid: int) -> bool:
        """The tracepoint is global; keep only events of processes in our network
        namespace. A pid already gone cannot be checked and is dropped."""
        known = self._netns_of.get(pid)
        if known is None:
            try:
                known = os.readlink(f"/proc/{pid}/ns/net") == self._own_netns
            except OSError:
                return False
            if len(self._netns_of) > 50_000:
                self._netns_of.clear()
            self._netns_of[pid] = known
        return known

    def drain(self, max_events: int = 1_000_000) -> list[TraceEvent]:
        """Everything recorded since the last call. Never blocks."""
        if self._fd is None:
            return []
        chunks = [self._partial]
        total = 0
        while total < MAX_READ_BYTES:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)
        end = data.rfind(b"\n")
        self._partial = data[end + 1:]
        events: list[TraceEvent] = []
        for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
            if "LOST" in raw and "EVENTS" in raw:
                digits = re.search(r"LOST (\d+) EVENTS", raw)
                self.lost += int(digits.group(1)) if digits else 1
                continue
            event = parse_line(raw)
            if event is None:
                continue
            if not self._in_our_netns(event.pid):
                self.dropped_foreign += 1
                continue
            events.append(event)
            if len(events) >= max_events:
                break
        return events

    def close(self) -> None:
        """Disable the event and remove the instance. Idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        instance = getattr(self, "instance", None)
        if instance and os.path.isdir(instance):
            with contextlib.suppress(OSError):
                _write(os.path.join(instance, EVENT_DIR, "enable"), "0")
            with contextlib.suppress(OSError):
                os.rmdir(instance)
