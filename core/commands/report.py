"""`portpressure report [--out DIR] [--seconds S]`: take a few real samples (rates need
two), then write the evidence bundle (core.report) and print the folder it made."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.cli import EXIT_FAILED, EXIT_OK, OneLineParser, UsageError, bounded_float
from core.history import History
from core.report import Evidence, ReportError, write_bundle
from core.sources import SourceError

SAMPLE_INTERVAL_S = 0.5
MAX_SECONDS = 3600.0  # samples are kept in memory: an hour of them at most


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write an evidence bundle (HTML, JSON, CSV) for a support ticket")
    p.add_argument("--out", metavar="DIR", default=".",
                   help="folder to write the bundle into (default: the current folder)")
    p.add_argument("--seconds", type=bounded_float(MAX_SECONDS), default=2.0, metavar="S",
                   help=f"how long to sample before writing (default 2, at most {MAX_SECONDS:g}; "
                        "at least two samples are taken)")
    p.set_defaults(run=run)


def check_folder(out: Path) -> None:
    """Fail before sampling, not after: the folder must exist and take a new folder."""
    if not out.is_dir():
        raise UsageError(f"portpressure report: --out: {out} " +
                         ("is not a folder" if out.exists() else "does not exist"))
    try:
        tempfile.TemporaryDirectory(prefix=".portpressure-check-", dir=out).cleanup()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"portpressure report: --out: cannot write to {out}: {reason}") from None


def read_settings() -> tuple[tuple[Mapping[str, Any], ...], str | None]:
    """The `tune show --json` rows, asked of the tune command itself (the contract, not
    its internals), or () and why they are missing."""
    try:
        tune = importlib.import_module("core.commands.tune")
    except ImportError:
        return (), "OS settings were not read: `tune` is not available in this build"
    parser = OneLineParser(prog="portpressure")
    tune.register(parser.add_subparsers(dest="command", parser_class=OneLineParser))
    output = io.StringIO()
    try:
        args = parser.parse_args(["tune", "show", "--json"])
        with contextlib.redirect_stdout(output):
            args.run(args)
        rows = json.loads(output.getvalue())
    except Exception as exc:  # a report must still be written when one part fails
        return (), f"OS settings could not be read: {type(exc).__name__}: {exc}"
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return (), "OS settings could not be read: `tune show --json` did not print a list of objects"
    return tuple(rows), None


def read_event_log() -> tuple[Mapping[str, Any] | None, str | None]:
    """The Windows Tcpip 4227/4231 summary from core.eventlog.summary(), where it exists."""
    try:
        eventlog = importlib.import_module("core.eventlog")
    except ImportError:
        return None, None
    summary = getattr(eventlog, "summary", None)
    if not callable(summary):
        return None, None
    try:
        result = summary()
    except Exception as exc:  # the rest of the report is still worth having
        return None, f"Windows event log could not be read: {type(exc).__name__}: {exc}"
    return (dict(result) if isinstance(result, Mapping) else None), None


def run(args: argparse.Namespace) -> int:
    from core.judgement import JudgedSampler
    from core.sampler import Sampler
    from core.settings_watch import SettingsWatch

    out = Path(args.out)
    check_folder(out)
    try:
        sampler = JudgedSampler(Sampler(), settings=SettingsWatch())
    except (SourceError, OSError) as exc:
        print(f"portpressure report: cannot read the socket table: {exc}", file=sys.stderr)
        return EXIT_FAILED
    count = max(2, int(args.seconds / SAMPLE_INTERVAL_S) + 1)
    history = History(count)
    sample = None
    events: list[dict[str, Any]] = []
    try:
        next_at = time.monotonic()
        for i in range(count):
            sample = sampler.sample()
            history.append(sample)
            events += (e.to_json() for e in sample.events)
            if i + 1 < count:
                next_at += SAMPLE_INTERVAL_S
                time.sleep(max(0.0, next_at - time.monotonic()))  # the sampling cadence, not a sync
        config = sampler.port_config
        source, privileged = sampler.source_name, sampler.privileged
    except (SourceError, OSError) as exc:
        print(f"portpressure report: sampling failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        sampler.close()
    assert sample is not None
    settings, settings_note = read_settings()
    event_log, event_note = read_event_log()
    made = f"Made by `portpressure report` from {len(history)} samples over {args.seconds:g} s."
    notes = (made,) + tuple(n for n in (settings_note, event_note) if n)
    evidence = Evidence(
        sample=sample, history=history.snapshot(), settings=settings, event_log=event_log,
        port_config=config, source=source, privileged=privileged,
        notes=notes, events=tuple(events),
    )
    try:
        folder = write_bundle(out, evidence)
    except ReportError as exc:
        raise UsageError(f"portpressure report: {exc}") from None
    print(folder)
    return EXIT_OK
