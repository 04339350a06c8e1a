"""Real TCP traffic on loopback for tests and benchmarks: listeners and churning clients.

Clients run in their own processes (forked) with their own process name (prctl), so
the sampler has a real, distinct pid and name to attribute sockets to.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
import time
from typing import Any, Self

from tests.support.netns import fork_context

PR_SET_NAME = 15

# A churner as a program of its own, for another Python (`python -c CHURNER_SCRIPT host port count
# held_port held`; a Windows Python under Wine, or on Windows): `held` connections kept open to
# held_port, each sending a request as a client does (Wine names a socket's owner only once the
# process has used it), then `count` connections opened and closed by it first (each leaves
# TIME_WAIT on its side). Prints "ready pid=N", then holds its connections until a line on stdin.
CHURNER_SCRIPT = """
import os, socket, sys
host, port, count, held_port, held = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5])
keep = [socket.create_connection((host, held_port)) for _ in range(held)]
for s in keep:
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
for _ in range(count):
    socket.create_connection((host, port)).close()
print(f"ready pid={os.getpid()}", flush=True)
sys.stdin.readline()
"""


def set_process_name(name: str) -> None:
    """Set /proc/self/comm (what psutil reports as the name); at most 15 bytes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


class Listener:
    """A loopback TCP listener served by a thread.

    mode "client_closes": waits for the client's FIN, then closes (TIME_WAIT lands on
    the client). "server_closes": closes right after accept (TIME_WAIT lands on the
    server's listening port). "never_close": keeps every accepted socket open, never
    reads, so closed clients leave CLOSE_WAIT behind.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, mode: str = "client_closes",
                 backlog: int = 4096) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.host, self.port = self.sock.getsockname()[:2]
        self.mode = mode
        self.held: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.mode == "never_close":
                self.held.append(conn)
            elif self.mode == "server_closes":
                conn.close()
            else:
                threading.Thread(target=self._drain_then_close, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain_then_close(conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        for conn in self.held:
            conn.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def close_inherited_listeners() -> None:
    """A forked child inherits the parent's listening sockets; close them so the
    table shows the listener owned by the parent only, as in real life."""
    for entry in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=int(entry))
        except (OSError, ValueError):
            continue  # not a socket (or already gone)
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        if listening:
            sock.close()
        else:
            sock.detach()


def _churn(host: str, port: int, hold_s: float, duration_s: float, name: str,
           counts: Any) -> None:
    set_process_name(name)
    close_inherited_listeners()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + duration_s
    ok = failed = 0
    while time.monotonic() < deadline:
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect((host, port))
            ok += 1
            counts[0] = ok
            if hold_s:
                time.sleep(hold_s)  # the workload: a short-lived connection, not a sync
        except OSError as exc:
            failed += 1
            counts[1] = failed
            if exc.errno == errno.EADDRNOTAVAIL:
                counts[2] = counts[2] + 1
            time.sleep(0.002)  # back off a little when the range is exhausted
        finally:
            s.close()  # client closes first: TIME_WAIT is ours


class ChildProcess:
    """A traffic child process: its pid, and stop() (kill, reap) on leaving a with-block."""

    process: Any

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Churner(ChildProcess):
    """A child process opening and closing short connections to host:port in a loop
    (connect, hold `hold_s`, close) for `duration_s` or until stopped. `ok`, `failed`
    and `addr_not_avail` count what happened."""

    def __init__(self, host: str, port: int, hold_s: float = 0.02, duration_s: float = 60.0,
                 name: str = "churner") -> None:
        self._counts = fork_context().Array("q", 3, lock=False)
        self.process = fork_context().Process(target=_churn, args=(host, port, hold_s, duration_s, name,
                                                         self._counts), daemon=True)
        self.process.start()
        self.name = name

    @property
    def ok(self) -> int:
        return int(self._counts[0])

    @property
    def failed(self) -> int:
        return int(self._counts[1])

    @property
    def addr_not_avail(self) -> int:
        return int(self._counts[2])


def _hold(host: str, port: int, count: int, every_s: float, name: str, opened: Any) -> None:
    set_process_name(name)
    close_inherited_listeners()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect((host, port))
        held.append(s)
        opened.value = len(held)
        if every_s:
            time.sleep(every_s)  # the workload's pace (a leak), not a synchronisation
    while True:  # keep them until killed
        time.sleep(1)


class Holder(ChildProcess):
    """A child process opening `count` connections to host:port and keeping them all
    until stopped: a pool of long-lived connections (every_s 0) or a slow leak (every_s
    > 0: one more connection every every_s seconds). `opened` counts them."""

    def __init__(self, host: str, port: int, count: int, every_s: float = 0.0, name: str = "holder") -> None:
        self._opened = fork_context().Value("q", 0, lock=False)
        self.process = fork_context().Process(target=_hold, args=(host, port, count, every_s, name,
                                                                  self._opened), daemon=True)
        self.process.start()
        self.name = name

    @property
    def opened(self) -> int:
        return int(self._opened.value)


def _fork_per_connection(host: str, port: int, hold_s: float, duration_s: float, parent_name: str,
                         child_name: str, counts: Any) -> None:
    set_process_name(parent_name)
    close_inherited_listeners()
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        child = os.fork()
        if child == 0:  # one check: connect, hold, close, end
            code = 1
            try:
                set_process_name(child_name)
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.connect((host, port))
                time.sleep(hold_s)  # the check's work, not a synchronisation
                s.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        counts[0 if status == 0 else 1] += 1


class ForkPerConnection(ChildProcess):
    """A parent process (like a monitoring engine) starting one short-lived child per
    connection: the child connects, holds `hold_s`, closes and exits. `ok` counts checks."""

    def __init__(self, host: str, port: int, hold_s: float = 0.03, duration_s: float = 60.0,
                 parent_name: str = "moneng", child_name: str = "check_tcp") -> None:
        self._counts = fork_context().Array("q", 2, lock=False)
        self.process = fork_context().Process(
            target=_fork_per_connection,
            args=(host, port, hold_s, duration_s, parent_name, child_name, self._counts), daemon=True)
        self.process.start()

    @property
    def ok(self) -> int:
        return int(self._counts[0])

