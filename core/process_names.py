"""pid -> process name through psutil, cached: names are asked for every sample."""

from __future__ import annotations

import ntpath

import psutil


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

    def name(self, pid: int, fallback: str | None = None) -> str:
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        try:
            name = psutil.Process(pid).name()
        except psutil.NoSuchProcess:
            return fallback or f"(exited, pid {pid})"
        except psutil.AccessDenied:
            name = fallback or f"(access denied, pid {pid})"
        except Exception:  # psutil can raise OSError variants on odd /proc entries
            name = _program_of_command_line(pid)
            if name is None:
                return fallback or f"pid {pid}"
        self._cache[pid] = name
        return name

    def forget_except(self, alive: set[int]) -> None:
        """Drop names of pids not seen any more: a pid can be reused by another program."""
        for pid in [p for p in self._cache if p not in alive]:
            del self._cache[pid]
