"""`portpressure watch`: one line per sample in the terminal, or JSON lines (--json)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from core.canary import DEFAULT_EVERY_S, parse_target
from core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    MAX_DURATION_S,
    MAX_INTERVAL_S,
    UsageError,
    bounded_float,
    bounded_int,
)
from core.model import Sample
from core.sources import SourceError

LEVEL_MARK = {"ok": "OK  ", "warning": "WARN", "critical": "CRIT"}
MAX_TOP = 1000  # processes and remotes per JSON line


class Stopped(Exception):
    """SIGTERM or SIGHUP: end like Ctrl-C (file finished, tracing instance removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped in the main thread while the block runs."""
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sample_json(sample: Sample, top: int | None = None) -> dict[str, Any]:
    """The `watch --json` object for one sample (DESIGN.md "Command-line contract"):
    the one builder every consumer of that contract calls."""
    return sample.to_json(top=top)


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="sample the socket table and print one line per sample")
    p.add_argument("--interval", type=bounded_float(MAX_INTERVAL_S), default=1.0, metavar="S",
                   help=f"seconds between samples (default 1, at most {MAX_INTERVAL_S:g})")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--count", type=bounded_int(10**9), metavar="N", help="stop after N samples")
    limit.add_argument("--duration", type=bounded_float(MAX_DURATION_S), metavar="S",
                       help="stop after S seconds (at most a year)")
    p.add_argument("--json", action="store_true", help="one JSON object per sample per line (the contract)")
    p.add_argument("--record", metavar="FILE",
                   help="also append every sample to FILE (JSON lines; gzip when FILE ends in .gz)")
    p.add_argument("--top", type=bounded_int(MAX_TOP), default=10, metavar="N",
                   help=f"processes and remotes per JSON line (default 10, at most {MAX_TOP})")
    p.add_argument("--probe", action="append", type=probe_target, default=[], metavar="HOST:PORT",
                   help="run the outbound test to HOST:PORT repeatedly (a canary; repeatable)")
    p.add_argument("--probe-every", type=bounded_float(MAX_INTERVAL_S), default=DEFAULT_EVERY_S, metavar="S",
                   help=f"seconds between outbound tests (default {DEFAULT_EVERY_S:g})")
    p.set_defaults(run=run)


def probe_target(text: str) -> tuple[str, int]:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_line(sample: Sample) -> str:
    s = sample.states
    top = sample.processes[0] if sample.processes else None
    culprit = ""
    if top is not None and (top.time_wait or top.connections):
        culprit = f" | top {top.name}[{top.pid}] tw={top.time_wait}"
        if top.opens_per_s:
            culprit += f" {top.opens_per_s:.0f}/s"
    return (f"{sample.time_iso[11:19]} {LEVEL_MARK[sample.verdict.level]} "
            f"ports {sample.ports.in_use}/{sample.ports.capacity} ({sample.ports.pressure:.0%}) "
            f"TW={s['TIME_WAIT']} EST={s['ESTABLISHED']} CW={s['CLOSE_WAIT']} SYN={s['SYN_SENT']}"
            f" opens={sample.rates.active_opens_per_s:.0f}/s{culprit} | {sample.verdict.title}"
            f" [{sample.sample_ms:.0f} ms]")


def _open_recorder(path: str, sampler: Any) -> Any:
    try:
        from core.recording import Recorder, RecordingError
    except ImportError:
        raise UsageError("portpressure watch: --record is not available in this build") from None
    try:
        return Recorder(path, port_config=sampler.port_config, source=sampler.source_name)
    except (RecordingError, OSError) as exc:
        raise UsageError(f"portpressure watch: cannot record to {path}: {exc}") from None


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from core.canary import Canary
    from core.judgement import JudgedSampler
    from core.sampler import Sampler
    from core.settings_watch import SettingsWatch

    out = out or sys.stdout
    try:
        sampler = JudgedSampler(Sampler(top=max(args.top, 50)), settings=SettingsWatch())
    except (SourceError, OSError) as exc:
        print(f"portpressure watch: cannot read the socket table: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        recorder = _open_recorder(args.record, sampler) if args.record else None
    except (UsageError, SourceError, OSError):
        sampler.close()
        raise
    canary = (Canary(args.probe, sampler.note_probe, every_s=args.probe_every).start()
              if args.probe else None)
    deadline = time.monotonic() + args.duration if args.duration else None
    taken = 0
    failures = 0
    shown_limits: tuple[str, ...] = ()
    next_at = time.monotonic()
    try:
        with stop_on_signals():
            while True:
                try:
                    sample = sampler.sample()
                except (SourceError, OSError) as exc:
                    failures += 1
                    print(f"portpressure watch: sample failed, retrying: {exc}", file=sys.stderr)
                else:
                    # Into the file first: a sample on screen is one the recording has.
                    if recorder is not None:
                        recorder.append(sample)
                        if getattr(recorder, "error", None):
                            print(f"portpressure watch: recording stopped: {recorder.error}", file=sys.stderr)
                            recorder = None
                    if args.json:
                        out.write(json.dumps(sample_json(sample, top=args.top)) + "\n")
                    else:
                        if sample.limits != shown_limits:
                            shown_limits = sample.limits
                            for limit in shown_limits:
                                out.write(f"cannot see: {limit}\n")
                        out.write("".join(f"{e.time_iso[11:19]} {e.kind.upper():>8} {e.text}\n"
                                          for e in sample.events) + format_line(sample) + "\n")
                    out.flush()
                taken += 1
                if args.count is not None and taken >= args.count:
                    break
                next_at += args.interval
                now = time.monotonic()
                if deadline is not None and next_at > deadline:
                    break
                # Sampling cadence: wait for the next tick (a schedule, not a synchronisation).
                time.sleep(max(0.0, next_at - now))
    except Stopped as stopped:
        return 128 + stopped.signum
    finally:
        if canary is not None:
            canary.stop()
        sampler.close()
        if recorder is not None:
            recorder.close()
    return EXIT_OK if failures < taken else EXIT_FAILED
