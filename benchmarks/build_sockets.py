"""Build many real TIME_WAIT sockets fast, inside the current network namespace.

Batches of connections are made, accepted and closed by the client first, so the
TIME_WAIT lands on the client side as in a real churn; several listener ports spread
the 4-tuples so 100k fit in one ephemeral range. About 2-4 s for 100k on 2 cores.
"""

from __future__ import annotations

import socket

from tests.support.netns import set_sysctl


def build_time_wait(count: int, first_port: int = 9000, batch: int = 1000) -> int:
    set_sysctl("net.ipv4.ip_local_port_range", "1024 65535")
    set_sysctl("net.ipv4.tcp_max_tw_buckets", str(max(262144, count * 2)))
    set_sysctl("net.ipv4.tcp_tw_reuse", "0")  # else loopback TIME_WAIT is recycled while we build
    # Few 4-tuples per listener: a client port reused toward the same listener would
    # recycle the server's TIME_WAIT for that tuple instead of adding one.
    per_listener = 12_000
    listeners = []
    for i in range((count + per_listener - 1) // per_listener):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", first_port + i))
        listener.listen(batch * 2)
        listeners.append(listener)
    made = 0
    while made < count:
        listener = listeners[made // per_listener]
        n = min(batch, count - made, per_listener - made % per_listener)
        clients = []
        for _ in range(n):
            c = socket.socket()
            c.connect(listener.getsockname())
            clients.append(c)
        accepted = [listener.accept()[0] for _ in range(n)]
        for c in clients:
            c.close()  # the client closes first, as a churning client does: TIME_WAIT is its
        for conn in accepted:
            conn.close()
        made += n
    for listener in listeners:
        listener.close()
    return made


def hold_established(count: int, port: int = 8999) -> list[socket.socket]:
    """`count` established connections kept open by this process (returned: keep them)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(count + 16)
    held = [listener]
    for _ in range(count):
        c = socket.socket()
        c.connect(("127.0.0.1", port))
        held.append(c)
        held.append(listener.accept()[0])
    return held
