"""pid -> process name (and parent, and whether it still runs) through psutil, cached:
names are asked for every sample, and a process that has ended can no longer be asked."""

from __future__ import annotations

import ntpath

import psutil

from core.model import ParentProcess


def _program_of_command_line(pid: int) -> str | None:
    """The program file named by the command line: where psutil cannot tell a name (it asks
    Windows for the image path, which fails on some systems), the command line may still be
    readable."""
    try:
        argv = psutil.Process(pid).cmdline()
    except Exception:
        return None
    # ntpath splits on both separators: a Windows path or a POSIX one.
    return ntpath.basename(argv[0]) or None if argv else None


class ProcessNames:
    def __init__(self) -> None:
        self._cache: dict[int, str] = {}
        self._parents: dict[int, ParentProcess | None] = {}
        self._seen_as: dict[int, str] = {}  # the name the socket owner scan read, for after it ends

    def name(self, pid: int, fallback: str | None = None) -> str:
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        try:
            proc = psutil.Process(pid)
            name = proc.name()
        except psutil.NoSuchProcess:
            return self._seen_as.get(pid) or fallback or f"(exited, pid {pid})"
        except psutil.AccessDenied:
            name = fallback or f"(access denied, pid {pid})"
        except Exception:  # psutil can raise OSError variants on odd /proc entries
            name = _program_of_command_line(pid)
            if name is None:
                return fallback or f"pid {pid}"
        else:
            self._parents[pid] = _parent(proc)
        self._cache[pid] = name
        return name

    def note(self, pid: int, name: str, ppid: int) -> None:
        """What the socket owner scan read while the process ran (its /proc/PID/stat): used
        once it has ended (a running process is asked again: an exec renames it)."""
        self._seen_as[pid] = name
        if pid not in self._parents:
            self._parents[pid] = (None if ppid <= 1 else
                                  ParentProcess(ppid, self._cache.get(ppid) or _name_of(ppid)))

    def parent(self, pid: int) -> ParentProcess | None:
        """The parent seen while the process ran (None if it was never seen running)."""
        return self._parents.get(pid)

    @staticmethod
    def running(pid: int) -> bool:
        """False once the process has ended (a zombie has ended too)."""
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except Exception:  # access denied and the like: it is there
            return True

    def forget_except(self, alive: set[int]) -> None:
        """Drop names of pids not seen any more: a pid can be reused by another program."""
        for pid in [p for p in self._cache if p not in alive]:
            del self._cache[pid]
        for pid in [p for p in self._parents if p not in alive]:
            del self._parents[pid]
        for pid in [p for p in self._seen_as if p not in alive]:
            del self._seen_as[pid]


def _name_of(pid: int) -> str:
    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return f"pid {pid}"


def _parent(proc: psutil.Process) -> ParentProcess | None:
    try:
        ppid = proc.ppid()
        if ppid <= 1:
            return None  # started by init (or a container's init): no parent worth naming
        return ParentProcess(ppid, psutil.Process(ppid).name())
    except (psutil.Error, OSError):
        return None
