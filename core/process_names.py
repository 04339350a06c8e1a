"""pid -> process name through psutil, cached: names are asked for every sample."""

from __future__ import annotations

import psutil


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
            return fallback or f"pid {pid}"
        self._cache[pid] = name
        return name

    def forget_except(self, alive: set[int]) -> None:
        """Drop names of pids not seen any more: a pid can be reused by another program."""
        for pid in [p for p in self._cache if p not in alive]:
            del self._cache[pid]
