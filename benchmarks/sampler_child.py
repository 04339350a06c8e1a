"""The sampler in a fresh interpreter, driven one tick at a time by benchmarks/sampling.py.

A fresh process (not a fork of the benchmark, which built the sockets) so its resident
memory is the sampler's own, as for `portpressure watch`. Imports only what a sampler
process imports. One JSON line in, one out:
  {"do": "tick"}   one sample; reply {"ms", "kind", "tw", "sockets", "rss_mb"}
  {"do": "range"}  the same, after narrowing the port range by one port (a new setting:
                   the next tick lists every TIME_WAIT slice again)
  {"do": "quit"}   reply {"peak_rss_mb", "idle_rss_mb", "counters_ms"} and exit
kind: "first" (start-up: whole /proc fd scan, every TIME_WAIT slice listed), "slice"
(one slice of TIME_WAIT listed with the live table), "renewal" (a few slices: new
settings), "cached" (no slice due) or "full listing" (every slice: a slow pace).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> None:
    """Start VmHWM afresh (Linux >= 4.0), so each tick's own peak can be read."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    from core.sampler import Sampler
    from core.sources.linux import LinuxSource

    idle = _rss_mb()  # interpreter + imports, before any sample
    source = LinuxSource(trace=False)
    sampler = Sampler(source)
    peaks = [idle]
    for tick, line in enumerate(sys.stdin):
        command = json.loads(line)["do"]
        if command == "quit":
            counters = []
            for _ in range(200):
                started = time.perf_counter()
                source.read_counters()
                counters.append((time.perf_counter() - started) * 1000)
            sampler.close()
            print(json.dumps({"peak_rss_mb": max(peaks),
                              "idle_rss_mb": idle, "counters_ms": statistics.median(counters)}), flush=True)
            return 0
        if command == "range":
            path = "/proc/sys/net/ipv4/ip_local_port_range"
            with open(path) as f:
                lo, hi = f.read().split()
            with open(path, "w") as f:
                f.write(f"{int(lo) + 1} {hi}")
        _reset_peak()
        started = time.perf_counter()
        sample = sampler.sample()
        ms = (time.perf_counter() - started) * 1000
        peaks.append(_peak_mb())
        extra = sample.extra
        slices = extra["time_wait_slices"]
        kind = ("first" if tick == 0 else "full listing" if extra["time_wait_listing"] == "full"
                else "renewal" if slices > 1 else "slice" if slices else "cached")
        print(json.dumps({"ms": ms, "kind": kind, "tw": sample.states["TIME_WAIT"],
                          "sockets": extra["sockets"], "rss_mb": _rss_mb(),
                          "peak_rss_mb": _peak_mb()}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
