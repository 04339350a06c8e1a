"""Which process holds which socket: socket inode -> pid from /proc/<pid>/fd, kept
incrementally.

A full scan costs ~5-7 us per open fd (readlink each). Between samples only
processes whose fd count changed are rescanned: on Linux >= 6.2
`stat("/proc/PID/fd").st_size` is the number of open fds, a cheap change detector.
A socket replaced by another one in the same fd slot keeps the count, so an owned
socket that nobody claims triggers a rescan of the processes known to hold sockets,
and a full rescan runs every `full_every` seconds regardless.
"""

from __future__ import annotations

import os
import time

import numpy as np

_SOCKET_PREFIX = "socket:["


class InodeOwners:
    def __init__(self, proc: str = "/proc", full_every: float = 30.0) -> None:
        self.proc = proc
        self.full_every = full_every
        self._fd_count: dict[int, int] = {}
        self._inodes_of: dict[int, set[int]] = {}
        self._owner: dict[int, int] = {}
        self._last_full = -1e18
        self._last_fallback = -1e18
        self._keys = np.zeros(0, dtype=np.uint64)
        self._pids = np.zeros(0, dtype=np.int32)
        self._dirty = True
        self._unclaimed: set[int] = set()
        self.denied_pids = 0  # processes whose fds we may not read (not root)
        self.fds_scanned = 0  # cost accounting for the last refresh
        # pid -> (comm, parent pid), read when a process is first seen holding sockets: a
        # short-lived process may be gone by the time anyone asks for its name.
        self._identified: set[int] = set()
        self._new_identities: dict[int, tuple[str, int]] = {}

    # -- scanning ---------------------------------------------------------------
    def _scan_pid(self, pid: int) -> None:
        fd_dir = f"{self.proc}/{pid}/fd"
        old = self._inodes_of.pop(pid, set())
        for inode in old:
            if self._owner.get(inode) == pid:
                del self._owner[inode]
        found: set[int] = set()
        try:
            names = os.listdir(fd_dir)
        except PermissionError:
            self.denied_pids += 1
            names = []
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            names = []
        readlink = os.readlink
        for name in names:
            try:
                target = readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith(_SOCKET_PREFIX):
                found.add(int(target[8:-1]))
        self.fds_scanned += len(names)
        if found:
            if pid not in self._identified:
                self._identify(pid)
            self._inodes_of[pid] = found
            for inode in found:
                # The same socket can be shared (fork); the lowest pid is usually the parent.
                current = self._owner.get(inode)
                if current is None or pid < current:
                    self._owner[inode] = pid
        self._dirty = True

    def _identify(self, pid: int) -> None:
        """Name and parent from /proc/PID/stat, e.g. '812 (check_tcp) S 811 ...'."""
        try:
            with open(f"{self.proc}/{pid}/stat") as f:
                stat = f.read()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return
        self._identified.add(pid)
        self._new_identities[pid] = (comm, ppid)

    def take_identities(self) -> dict[int, tuple[str, int]]:
        """The (comm, parent pid) of the processes first seen since the last call."""
        new, self._new_identities = self._new_identities, {}
        return new

    def _fd_count_of(self, pid: int) -> int | None:
        try:
            return os.stat(f"{self.proc}/{pid}/fd").st_size
        except PermissionError:
            return -1
        except OSError:
            return None

    def _list_pids(self) -> list[int]:
        return [int(name) for name in os.listdir(self.proc) if name.isdigit()]

    def refresh(self, now: float | None = None) -> None:
        """Bring the map up to date: rescan new processes and those whose fd count
        changed; forget exited ones; everything every `full_every` seconds."""
        now = time.monotonic() if now is None else now
        full = now - self._last_full >= self.full_every
        if full:
            self._last_full = now
        self.fds_scanned = 0
        self.denied_pids = 0
        alive = self._list_pids()
        alive_set = set(alive)
        for pid in list(self._fd_count):
            if pid not in alive_set:
                self._forget(pid)
        for pid in alive:
            count = self._fd_count_of(pid)
            if count is None:
                self._forget(pid)
                continue
            if full or self._fd_count.get(pid) != count or count == 0 and pid not in self._fd_count:
                self._fd_count[pid] = count
                self._scan_pid(pid)

    def _forget(self, pid: int) -> None:
        self._fd_count.pop(pid, None)
        self._identified.discard(pid)  # the pid may come back as another program
        for inode in self._inodes_of.pop(pid, set()):
            if self._owner.get(inode) == pid:
                del self._owner[inode]
        self._dirty = True

    def rescan_socket_holders(self) -> None:
        for pid in list(self._inodes_of):
            self._scan_pid(pid)

    # -- lookup -----------------------------------------------------------------
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._dirty:
            if self._owner:
                keys = np.fromiter(self._owner.keys(), dtype=np.uint64, count=len(self._owner))
                pids = np.fromiter(self._owner.values(), dtype=np.int32, count=len(self._owner))
                order = np.argsort(keys)
                self._keys, self._pids = keys[order], pids[order]
            else:
                self._keys = np.zeros(0, dtype=np.uint64)
                self._pids = np.zeros(0, dtype=np.int32)
            self._dirty = False
        return self._keys, self._pids

    def lookup(self, inodes: np.ndarray) -> np.ndarray:
        """pid per inode (-1 where unknown or inode 0)."""
        keys, pids = self._arrays()
        result = np.full(len(inodes), -1, dtype=np.int32)
        if not len(keys) or not len(inodes):
            return result
        pos = np.searchsorted(keys, inodes)
        pos[pos >= len(keys)] = 0
        hit = (keys[pos] == inodes) & (inodes != 0)
        result[hit] = pids[pos[hit]]
        return result

    def owners(self, inodes: np.ndarray, now: float | None = None) -> np.ndarray:
        """Refresh incrementally, then look up. Sockets that no process claims and
        that were not searched for before trigger one rescan of the known socket
        holders (and at most every 5 s a full one). Sockets nobody holds (kernel
        sockets, other pid namespaces) are remembered so they do not cost a rescan
        every sample."""
        now = time.monotonic() if now is None else now
        self.refresh(now)
        pids = self.lookup(inodes)
        missing = (pids < 0) & (inodes != 0)
        if not missing.any():
            self._unclaimed = set()
            return pids
        missing_now = set(inodes[missing].tolist())
        if missing_now - self._unclaimed:
            self.rescan_socket_holders()
            pids = self.lookup(inodes)
            missing = (pids < 0) & (inodes != 0)
            if missing.any() and now - self._last_fallback >= 5.0:
                self._last_fallback = now
                self._last_full = -1e18
                self.refresh(now)
                pids = self.lookup(inodes)
                missing = (pids < 0) & (inodes != 0)
        self._unclaimed = set(inodes[missing].tolist())
        return pids
