"""Build many real TIME_WAIT sockets fast, inside the current network namespace, hold
established connections in their own processes, and keep TIME_WAIT arriving.

Batches of connections are made, accepted and closed by the client first, so the
TIME_WAIT lands on the client side as in a real churn; several listener ports spread
the 4-tuples so 100k fit in one ephemeral range. About 2-4 s for 100k on 2 cores.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from multiprocessing.connection import Connection

from tests.support.netns import fork_context, set_sysctl
from tests.support.traffic import set_process_name

# Few 4-tuples per listener: a client port reused toward the same listener would
# recycle the server's TIME_WAIT for that tuple instead of adding one.
PER_LISTENER = 12_000


def build_time_wait(count: int, first_port: int = 9000, batch: int = 1000) -> int:
    set_sysctl("net.ipv4.ip_local_port_range", "1024 65535")
    set_sysctl("net.ipv4.tcp_max_tw_buckets", str(max(262144, count * 4)))
    set_sysctl("net.ipv4.tcp_tw_reuse", "0")  # else loopback TIME_WAIT is recycled while we build
    listeners = []
    for i in range((count + PER_LISTENER - 1) // PER_LISTENER):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", first_port + i))
        listener.listen(batch * 2)
        listeners.append(listener)
    made = 0
    while made < count:
        listener = listeners[made // PER_LISTENER]
        made += _close_batch(listener, min(batch, count - made, PER_LISTENER - made % PER_LISTENER))
    for listener in listeners:
        listener.close()
    return made


def _close_batch(listener: socket.socket, n: int) -> int:
    """n connections to the listener, closed by the client first (TIME_WAIT is the client's)."""
    clients = []
    for _ in range(n):
        c = socket.socket()
        c.connect(listener.getsockname())
        clients.append(c)
    accepted = [listener.accept()[0] for _ in range(n)]
    for c in clients:
        c.close()
    for conn in accepted:
        conn.close()
    return n


def _hold(role: str, port: int, count: int, conn: Connection) -> None:
    """One side of `count` established connections, held until the pipe says stop."""
    set_process_name(f"bench-{role}")
    held = []
    if role == "server":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(count + 16)
        conn.send("listening")
        held = [listener.accept()[0] for _ in range(count)]
        held.append(listener)
    else:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    conn.send("held")
    conn.recv()


class EstablishedHolders:
    """`count` established connections, the client ends held by one process and the
    accepted ends by another (each holds `count` fds: 20k sockets fit the usual 20k
    fd limit that way, and the owners are processes as on a real server)."""

    def __init__(self, count: int, port: int = 8999) -> None:
        self._pipes: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for role in ("server", "client"):
            parent, child = fork_context().Pipe()
            proc = fork_context().Process(target=_hold, args=(role, port, count, child), daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)
            if role == "server" and not (parent.poll(60) and parent.recv() == "listening"):
                raise RuntimeError("the established-connection server did not start")
        for pipe in self._pipes:
            if not (pipe.poll(120) and pipe.recv() == "held"):
                raise RuntimeError("established connections were not all opened")

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.send("stop")
        for proc in self._procs:
            proc.join(30)


def _churn(rate: float, first_port: int, conn: Connection) -> None:
    """`rate` new TIME_WAIT sockets a second (client closes first) until the pipe says stop."""
    set_process_name("bench-churn")
    listeners = []
    for i in range(16):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", first_port + i))
        listener.listen(1024)
        listeners.append(listener)
    conn.send("listening")
    conn.recv()  # go
    started = time.monotonic()
    made = 0
    while not conn.poll(0):
        due = int((time.monotonic() - started) * rate) - made
        if due <= 0:
            time.sleep(0.01)
            continue
        # A listener per ~12k tuples, as in build_time_wait.
        made += _close_batch(listeners[(made // PER_LISTENER) % len(listeners)], min(due, 500))


class TimeWaitChurn:
    """A process adding `rate` TIME_WAIT sockets a second once started, so listings see
    new rows as on a server in steady state (100k TIME_WAIT over a 60 s lifetime is
    ~1,700 a second). Make it before building other sockets: its listeners' ports are
    inside the ephemeral range those would take."""

    def __init__(self, rate: float, first_port: int = 7000) -> None:
        self._pipe, child = fork_context().Pipe()
        self._proc = fork_context().Process(target=_churn, args=(rate, first_port, child), daemon=True)
        self._proc.start()
        if not (self._pipe.poll(30) and self._pipe.recv() == "listening"):
            raise RuntimeError("the TIME_WAIT churn did not start")

    def start(self) -> None:
        self._pipe.send("go")

    def close(self) -> None:
        self._pipe.send("stop")
        self._proc.join(30)
