"""socket inode -> pid, kept incrementally (core.sources.linux_pids), on this process's
own real sockets."""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux-only")


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def test_a_socket_swapped_into_a_held_fd_is_claimed_at_its_second_read() -> None:
    """Same fd count, new socket: the owner is found by rescanning the socket holders,
    but only once the socket is still unclaimed in a second read (a socket unclaimed
    once is nearly always one that closed between the dump and the scan)."""
    from core.sources.linux_pids import InodeOwners

    socks = [socket.socket() for _ in range(20)]
    owners = InodeOwners(full_every=3600.0)
    first = owners.owners(np.array([_inode(s) for s in socks], dtype=np.uint64))
    assert (first == os.getpid()).all()
    replacement = socket.socket()
    os.dup2(replacement.fileno(), socks[0].fileno())  # the fd count does not change
    replacement.close()
    swapped = np.array([_inode(socks[0])], dtype=np.uint64)
    assert owners.owners(swapped).tolist() == [-1]
    assert owners.owners(swapped).tolist() == [os.getpid()]
    for s in socks:
        s.close()


def test_the_periodic_reread_is_spread_over_reads_within_a_budget() -> None:
    from core.sources.linux_pids import InodeOwners

    socks = [socket.socket() for _ in range(300)]
    owners = InodeOwners(full_every=30.0, periodic_fd_budget=64)
    owners.refresh(now=0.0)  # the first read is whole
    inodes = np.array([_inode(s) for s in socks], dtype=np.uint64)
    assert (owners.lookup(inodes) == os.getpid()).all()
    # 30 s later this process is due: its fds are re-read over several calls, ~64 each
    # (the whole machine's processes are due too; only ours is followed here).
    scanned = []
    for step in range(20):
        owners.fds_scanned = 0
        owners._periodic_checks([os.getpid()], now=31.0 + step)  # noqa: SLF001 - the slicing is the subject
        scanned.append(owners.fds_scanned)
        if owners._slice is None:  # noqa: SLF001
            break
    assert max(scanned) <= 64 and sum(scanned) >= 300 and len(scanned) >= 5
    assert owners._scanned_at[os.getpid()] > 30.0  # noqa: SLF001
    assert (owners.lookup(inodes) == os.getpid()).all()
    for s in socks:
        s.close()


def _churning_neighbour(conn: object) -> None:
    """Another process whose fd count changes all the time (a busy proxy's, say)."""
    held = [socket.socket() for _ in range(2000)]
    conn.send("ready")  # type: ignore[attr-defined]
    while not conn.poll(0):  # type: ignore[attr-defined]
        held.append(socket.socket())
        held.pop(0).close()
    for s in held:
        s.close()


def test_a_busy_neighbour_is_not_read_while_every_socket_of_the_table_has_an_owner() -> None:
    """Processes whose fd count changed are read only when some socket in the table has
    no owner yet: a neighbour churning 2,000 fds costs nothing while the table's own
    sockets are all known, and a new socket of ours is still found at once."""
    import multiprocessing

    from core.sources.linux_pids import InodeOwners

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    neighbour = ctx.Process(target=_churning_neighbour, args=(child,), daemon=True)
    neighbour.start()
    try:
        assert parent.poll(20) and parent.recv() == "ready"
        ours = [socket.socket() for _ in range(10)]
        owners = InodeOwners(full_every=3600.0)
        inodes = np.array([_inode(s) for s in ours], dtype=np.uint64)
        assert (owners.owners(inodes) == os.getpid()).all()  # the first read is whole
        scanned = []
        for _ in range(5):
            owners.owners(inodes)
            scanned.append(owners.fds_scanned)
        assert max(scanned) < 100  # the neighbour's ~2,000 fds are never read again
        new = socket.socket()  # a socket of ours the map does not know yet
        found = owners.owners(np.append(inodes, np.uint64(_inode(new))))
        assert (found == os.getpid()).all()
        new.close()
        for s in ours:
            s.close()
    finally:
        parent.send("stop")
        neighbour.join(10)
