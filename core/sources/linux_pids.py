"""Which process holds which socket: socket inode -> pid from /proc/<pid>/fd, kept
incrementally.

A full scan costs ~5-7 us per open fd (readlink each). Between samples only
processes whose fd count changed are rescanned: on Linux >= 6.2
`stat("/proc/PID/fd").st_size` is the number of open fds, a cheap change detector.
A socket replaced by another one in the same fd slot keeps the count, so an owned
socket that nobody claims (in two reads running) triggers a rescan of the processes
known to hold sockets, and every process is rescanned every `full_every` seconds
regardless, a few per read.
"""

from __future__ import annotations

import os
import time

import numpy as np

_SOCKET_PREFIX = "socket:["


class InodeOwners:
    def __init__(self, proc: str = "/proc", full_every: float = 30.0, periodic_fd_budget: int = 4000) -> None:
        self.proc = proc
        self.full_every = full_every
        self.periodic_fd_budget = periodic_fd_budget
        self._fd_count: dict[int, int] = {}
        self._inodes_of: dict[int, set[int]] = {}
        self._owner: dict[int, int] = {}
        self._everything = True  # the next refresh scans every process
        self._scanned_at: dict[int, float] = {}  # pid -> when its fds were last read
        # A periodic check in progress: pid, its fd names, how many read, sockets found.
        self._slice: tuple[int, list[str], int, set[int]] | None = None
        self._last_fallback = -1e18
        self._keys = np.zeros(0, dtype=np.uint64)
        self._pids = np.zeros(0, dtype=np.int32)
        self._dirty = True
        self._unclaimed: set[int] = set()  # searched for and not found
        self._missing_before: set[int] = set()  # unclaimed at the previous read
        self.denied_pids = 0  # processes whose fds we may not read (not root)
        self.fds_scanned = 0  # cost accounting for the last refresh
        # pid -> (comm, parent pid), read when a process is first seen holding sockets: a
        # short-lived process may be gone by the time anyone asks for its name.
        self._identified: set[int] = set()
        self._new_identities: dict[int, tuple[str, int]] = {}

    # -- scanning ---------------------------------------------------------------
    def _list_fds(self, pid: int) -> list[str]:
        try:
            return os.listdir(f"{self.proc}/{pid}/fd")
        except PermissionError:
            self.denied_pids += 1
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            pass
        return []

    def _socket_inodes(self, pid: int, names: list[str]) -> set[int]:
        fd_dir = f"{self.proc}/{pid}/fd"
        found: set[int] = set()
        readlink = os.readlink
        for name in names:
            try:
                target = readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith(_SOCKET_PREFIX):
                found.add(int(target[8:-1]))
        self.fds_scanned += len(names)
        return found

    def _scan_pid(self, pid: int) -> None:
        if self._slice is not None and self._slice[0] == pid:
            self._slice = None  # read whole now: a periodic check in progress is moot
        self._apply(pid, self._socket_inodes(pid, self._list_fds(pid)))

    def _apply(self, pid: int, found: set[int]) -> None:
        """`found` is what `pid` holds now."""
        old = self._inodes_of.pop(pid, set())
        for inode in old:
            if self._owner.get(inode) == pid:
                del self._owner[inode]
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

    def _periodic_checks(self, due: list[int], now: float) -> None:
        """Re-read processes not read for `full_every` seconds, ~periodic_fd_budget fds a
        call: a process with 10k fds is read over several calls (a change of its fd
        count meanwhile makes refresh read it whole, which drops the partial read)."""
        budget = self.periodic_fd_budget
        while budget > 0:
            if self._slice is None:
                if not due:
                    return
                pid = due.pop(0)
                if now - self._scanned_at.get(pid, now) < self.full_every:
                    continue  # read since (the partial read just finished)
                self._slice = (pid, self._list_fds(pid), 0, set())
            pid, names, pos, found = self._slice
            if pid not in self._fd_count:  # exited
                self._slice = None
                continue
            chunk = names[pos:pos + budget]
            found |= self._socket_inodes(pid, chunk)
            budget -= max(len(chunk), 1)
            if pos + len(chunk) >= len(names):
                self._slice = None
                self._scanned_at[pid] = now
                self._apply(pid, found)
            else:
                self._slice = (pid, names, pos + len(chunk), found)

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

    def refresh(self, now: float | None = None, *, scan_changed: bool = True,
                periodic_pids: set[int] | None = None) -> None:
        """Bring the map up to date: rescan new processes and those whose fd count
        changed; forget exited ones; everything at the first call (and when owners()
        asks). Besides, each process is re-read once every `full_every` seconds, at
        most ~`periodic_fd_budget` fds a read: all at once was one read costing ~7 us
        per open fd of the whole machine every 30 s.

        scan_changed=False leaves processes whose fd count changed unread (and still
        counted as changed): nothing in the table needs an owner. periodic_pids: re-read
        only these periodically (the owners of sockets in the table): a busy neighbour's
        10k fds, another network namespace's, cost ~20k readlink a read otherwise."""
        now = time.monotonic() if now is None else now
        self.fds_scanned = 0
        self.denied_pids = 0
        alive = self._list_pids()
        alive_set = set(alive)
        for pid in list(self._fd_count):
            if pid not in alive_set:
                self._forget(pid)
        due: list[int] = []
        if not scan_changed and not self._everything and periodic_pids is not None:
            # Nothing to rescan: only the table's owners may be due for their periodic
            # re-read; the others' fd counts are not even looked at (a stat each).
            alive = [pid for pid in periodic_pids if pid in alive_set]
        for pid in alive:
            count = self._fd_count_of(pid)
            if count is None:
                self._forget(pid)
                continue
            changed = self._fd_count.get(pid) != count or count == 0 and pid not in self._fd_count
            if self._everything or changed and scan_changed:
                self._fd_count[pid] = count
                self._scanned_at[pid] = now
                self._scan_pid(pid)
            elif changed:
                continue
            elif now - self._scanned_at.get(pid, now) >= self.full_every and (
                    periodic_pids is None or pid in periodic_pids):
                due.append(pid)
        self._everything = False
        self._periodic_checks(due, now)

    def _forget(self, pid: int) -> None:
        self._fd_count.pop(pid, None)
        self._scanned_at.pop(pid, None)
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
        """Refresh incrementally, then look up. Sockets that no process claims in two
        reads running, and that were not searched for before, trigger one rescan of the
        known socket holders (and at most every 5 s a full one). Two reads, because a
        socket seen once unclaimed is nearly always one that closed between the dump and
        the fd scan (a churning client makes some every read): searching for those
        rescanned every socket holder each second (~7 us an fd: 150-400 ms at 20k
        fds). Sockets nobody holds (kernel sockets, other pid namespaces) are remembered
        so they do not cost a rescan every sample."""
        now = time.monotonic() if now is None else now
        if self._everything:
            self.refresh(now)
            pids = self.lookup(inodes)
        else:
            # Processes whose fd count changed are read only when some socket of the
            # table has no owner yet: else nothing there can be learnt.
            pids = self.lookup(inodes)
            unknown = (pids < 0) & (inodes != 0)
            if unknown.any() and self._unclaimed:
                unknown &= ~np.isin(inodes, np.fromiter(self._unclaimed, dtype=np.uint64))
            owners = set(np.unique(pids[pids >= 0]).tolist())
            self.refresh(now, scan_changed=bool(unknown.any()), periodic_pids=owners)
            if self._dirty:  # the map changed (lookup left it clean)
                pids = self.lookup(inodes)
        missing = (pids < 0) & (inodes != 0)
        if not missing.any():
            self._unclaimed = set()
            self._missing_before = set()
            return pids
        missing_now = set(inodes[missing].tolist())
        if (missing_now & self._missing_before) - self._unclaimed:
            self.rescan_socket_holders()
            pids = self.lookup(inodes)
            missing = (pids < 0) & (inodes != 0)
            if missing.any() and now - self._last_fallback >= 5.0:
                self._last_fallback = now
                self._everything = True
                self.refresh(now)
                pids = self.lookup(inodes)
                missing = (pids < 0) & (inodes != 0)
            still = set(inodes[missing].tolist())
            self._unclaimed = still & self._missing_before
            missing_now = still
        else:
            self._unclaimed &= missing_now
        self._missing_before = missing_now
        return pids
