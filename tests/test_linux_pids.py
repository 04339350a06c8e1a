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
