"""`portpressure watch`: one line per sample in the terminal, or JSON lines (--json)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from core.canary import DEFAULT_EVERY_S, parse_target
from core.cli import EXIT_FAILED, EXIT_OK, UsageError, positive_float, positive_int
from core.model import Sample
from core.sources import SourceError

LEVEL_MARK = {"ok": "OK  ", "warning": "WARN", "critical": "CRIT"}


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help="sample the socket table and print one line per sample")
    p.add_argument("--interval", type=positive_float, default=1.0, metavar="S",
                   help="seconds between samples (default 1)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--count", type=positive_int, metavar="N", help="stop after N samples")
    limit.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per sample per line (the contract)")
    p.add_argument("--record", metavar="FILE",
                   help="also append every sample to FILE (JSON lines; gzip when FILE ends in .gz)")
    p.add_argument("--top", type=positive_int, default=10, metavar="N",
                   help="processes and remotes per JSON line (default 10)")
    p.add_argument("--probe", action="append", type=probe_target, default=[], metavar="HOST:PORT",
                   help="run the outbound test to HOST:PORT repeatedly (a canary; repeatable)")
    p.add_argument("--probe-every", type=positive_float, default=DEFAULT_EVERY_S, metavar="S",
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


def sample_json(sample: Sample, top: int | None = None) -> dict[str, Any]:
    """The `watch --json` object for one sample (DESIGN.md "Command-line contract"):
    the one builder every consumer of that contract calls."""
    return sample.to_json(top=top)


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
        sampler = JudgedSampler(Sampler(), settings=SettingsWatch())
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
    next_at = time.monotonic()
    try:
        while True:
            try:
                sample = sampler.sample()
            except (SourceError, OSError) as exc:
                failures += 1
                print(f"portpressure watch: sample failed, retrying: {exc}", file=sys.stderr)
            else:
                if args.json:
                    out.write(json.dumps(sample_json(sample, top=args.top)) + "\n")
                else:
                    out.write("".join(f"{e.time_iso[11:19]} {e.kind.upper():>8} {e.text}\n"
                                      for e in sample.events) + format_line(sample) + "\n")
                out.flush()
                if recorder is not None:
                    recorder.append(sample)
                    if getattr(recorder, "error", None):
                        print(f"portpressure watch: recording stopped: {recorder.error}", file=sys.stderr)
                        recorder = None
            taken += 1
            if args.count is not None and taken >= args.count:
                break
            next_at += args.interval
            now = time.monotonic()
            if deadline is not None and next_at > deadline:
                break
            # Sampling cadence: wait for the next tick (a schedule, not a synchronisation).
            time.sleep(max(0.0, next_at - now))
    finally:
        if canary is not None:
            canary.stop()
        sampler.close()
        if recorder is not None:
            recorder.close()
    return EXIT_OK if failures < taken else EXIT_FAILED
