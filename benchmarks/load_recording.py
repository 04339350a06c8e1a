"""Size of a day of recording at 1 Hz and the time to load it for replay.

Synthesizes a realistic 24-hour recording through the real Recorder (the same write
path as `watch --record`): 10 processes and 6 remote endpoints per line, counts that
drift every second, a verdict with three sentences that carry changing numbers, as the
sampler produces under churn. fsync is skipped while synthesizing (durable=False) only
to keep the run short; the bytes written are the same.

    python3 -m benchmarks.load_recording [--hours H] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from core.model import (
    STATE_NAMES,
    Forecast,
    PoolUsage,
    PortsSummary,
    ProcessRow,
    Rates,
    RemoteRow,
    Sample,
    Verdict,
)
from core.recording import Recorder, load_recording, record_json

PROCESSES = [(4100 + i * 37, name) for i, name in enumerate(
    ["java", "w3wp", "python3", "node", "nginx", "sqlservr", "dotnet", "httpd", "svchost", "backup-agent"])]
REMOTES = [(f"10.20.{i}.{10 + i}", port) for i, port in enumerate([443, 1433, 5432, 6379, 8080, 9000])]


def synthetic_sample(start: datetime, second: int, rng: random.Random, walk: list[float]) -> Sample:
    """One second of a busy server; `walk` carries the drifting load between calls."""
    walk[0] = min(max(walk[0] + rng.uniform(-25, 25), 50.0), 1500.0)  # opens per second
    opens = walk[0]
    time_wait = int(opens * 60 * rng.uniform(0.9, 1.1))
    capacity = 28232
    in_use = min(capacity, time_wait + rng.randint(100, 300))
    moment = start + timedelta(seconds=second)
    shares = [0.55, 0.2, 0.1, 0.05, 0.03, 0.02, 0.02, 0.01, 0.01, 0.01]
    processes = []
    for (pid, name), share in zip(PROCESSES, shares, strict=True):
        tw = int(time_wait * share)
        exact = int(tw * rng.uniform(0.6, 0.9))
        est = rng.randint(1, 40)
        states = {"ESTABLISHED": est, "TIME_WAIT": tw}
        if rng.random() < 0.3:
            states["CLOSE_WAIT"] = rng.randint(1, 5)
        processes.append(ProcessRow(pid, name, est + states.get("CLOSE_WAIT", 0), tw, exact, tw - exact,
                                    round(opens * share, 3), states, states.get("CLOSE_WAIT", 0)))
    remotes = tuple(RemoteRow(addr, port, int(time_wait * s) + rng.randint(0, 30), int(time_wait * s))
                    for (addr, port), s in zip(REMOTES, [0.5, 0.2, 0.15, 0.1, 0.03, 0.02], strict=True))
    pressure = in_use / capacity
    top = processes[0]
    reasons = (
        f"{in_use} of {capacity} usable local ports (range 49152-65535) are held in the pool "
        f"0.0.0.0 (all local addresses): {pressure:.0%} used.",
        f"Most of it comes from {top.name} (pid {top.pid}), opening {top.opens_per_s:.0f} connections/s: "
        f"{top.time_wait} TIME_WAIT sockets are attributed to it (exactly, from its connections).",
        "TIME_WAIT lasts 120 s here: lowering TcpTimedWaitDelay to 30 frees ports four times sooner "
        "(takes effect after a reboot).",
    )
    level = "critical" if pressure >= 0.9 else "warning" if pressure >= 0.6 else "ok"
    states = {name: 0 for name in STATE_NAMES}
    states.update(ESTABLISHED=rng.randint(200, 400), TIME_WAIT=time_wait, LISTEN=24,
                  CLOSE_WAIT=rng.randint(0, 20), SYN_SENT=rng.randint(0, 5), FIN_WAIT2=rng.randint(0, 30))
    return Sample(
        time_iso=moment.isoformat(timespec="milliseconds"),
        timestamp=moment.timestamp(),
        states=states,
        ports=PortsSummary((49152, 65535), capacity, in_use, pressure, "0.0.0.0 (all local addresses)",
                           (PoolUsage("0.0.0.0 (all local addresses)", capacity, in_use, time_wait, False),)),
        rates=Rates(opens, opens * 0.8, rng.choice([0.0, 0.0, 0.0, 1.5])),
        forecast=Forecast(int(opens * 120), None if pressure < 0.5 else rng.uniform(30, 600)),
        processes=tuple(processes),
        remotes=remotes,
        verdict=Verdict(level, f"Port pressure is building: {pressure:.0%} of the busiest pool in use",
                        reasons),
        sample_ms=rng.uniform(8, 40),
        time_wait_unattributed=rng.randint(0, 200),
        time_wait_seconds=120.0,
        os_name="Windows",
        limits=("process names of other users' sockets need administrator rights",),
        extra={"source": "GetExtendedTcpTable", "sockets": time_wait + 600, "kernel_read_ms": 12.5},
    )


def synthesize(path: Path, seconds: int, seed: int = 7) -> int:
    """Write `seconds` samples at 1 Hz to `path`; returns the plain JSON bytes they encode."""
    rng = random.Random(seed)
    walk = [400.0]
    start = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    plain = 0
    recorder = Recorder(path, durable=False, max_bytes=1 << 40)
    try:
        for second in range(seconds):
            sample = synthetic_sample(start, second, rng, walk)
            if second % 600 == 0:
                plain_line = json.dumps(record_json(sample), separators=(",", ":"))
                plain += (len(plain_line) + 1) * min(600, seconds - second)
                recorder.flush()  # keep the queue short: the producer is faster than a real sampler
            recorder.append(sample)
    finally:
        recorder.close()
    if recorder.error:
        raise SystemExit(recorder.error)
    return plain


def append_cost(path: Path, samples: int = 300) -> tuple[float, float]:
    """Median and 95th percentile of Recorder.append with fsync after every sample (ms):
    what recording adds to each tick of the sampling loop."""
    rng = random.Random(3)
    walk = [400.0]
    start = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    made = [synthetic_sample(start, i, rng, walk) for i in range(samples)]
    costs = []
    with Recorder(path) as recorder:
        for sample in made:
            t0 = time.perf_counter()
            recorder.append(sample)
            costs.append((time.perf_counter() - t0) * 1000)
    costs.sort()
    return costs[len(costs) // 2], costs[int(len(costs) * 0.95)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--keep", type=Path, help="write the recording here and keep it")
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "day.jsonl.gz"
        t0 = time.perf_counter()
        plain = synthesize(path, seconds)
        written_s = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"samples: {seconds} ({args.hours:g} h at 1 Hz), synthesized and written in {written_s:.1f} s")
        print(f"file size: {size / 1e6:.1f} MB ({size / seconds:.0f} bytes/sample; the same lines "
              f"uncompressed: {plain / 1e6:.0f} MB, {plain / seconds:.0f} bytes/sample)")
        print(f"per day at 1 Hz: {size / seconds * 86400 / 1e6:.1f} MB")
        median, p95 = append_cost(Path(tmp) / "fsync.jsonl.gz")
        print(f"append with fsync (returns once on disk): median {median:.2f} ms, p95 {p95:.2f} ms")
        t0 = time.perf_counter()
        recording = load_recording(path)
        load_s = time.perf_counter() - t0
        assert len(recording) == seconds, (len(recording), seconds)
        print(f"load_recording: {load_s:.2f} s")
        tracemalloc.start()  # a second load, measured: tracemalloc slows it several times
        kept = load_recording(path)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"memory: {held / 1e6:.0f} MB held by the loaded recording, "
              f"{peak / 1e6:.0f} MB peak while loading")
        del kept
        rng = random.Random(1)
        t0 = time.perf_counter()
        picks = [rng.randrange(seconds) for _ in range(50)]
        for i in picks:
            recording.samples[i]
        print(f"random access: {(time.perf_counter() - t0) / len(picks) * 1000:.1f} ms per sample "
              "(decode its block + rebuild the Sample)")
        t0 = time.perf_counter()
        neighbours = min(seconds, 600)
        for i in range(neighbours):
            recording.samples[i]
        print(f"scrubbing neighbours: {(time.perf_counter() - t0) / neighbours * 1000:.2f} ms per sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
