"""`portpressure probe HOST PORT [--timeout S] [--count N] [--interval S] [--json]`:
the outbound connect test (core.probe) from the command line.

Text: one line per attempt, then a summary with the connect latency percentiles and
what each kind of failure means. --json: one `probe --json` contract object per attempt
per line. Exit status 0 when every attempt connected, 1 when any failed, 2 on bad input
(one line on stderr; with --json also an "invalid_input" object on stdout), and no
socket is opened for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from core.cli import EXIT_FAILED, EXIT_OK, UsageError
from core.free_ports import read_free_ports
from core.probe import (
    DEFAULT_INTERVAL_S,
    DEFAULT_TIMEOUT_S,
    MAX_COUNT,
    MAX_TIMEOUT_S,
    ProbeInputError,
    Prober,
    ProbeResult,
    SeriesSummary,
    invalid_input_result,
    parse_count,
    parse_host,
    parse_interval,
    parse_port,
    parse_timeout,
)

EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Checked:
    """An argument as typed and what core.probe made of it. Checking is deferred to run()
    so that --json can also report bad input as an "invalid_input" object."""

    text: str
    value: Any = None
    problem: str | None = None


def checked(parse: Callable[[str], Any]) -> Callable[[str], Checked]:
    """An argparse `type=` wrapping one of core.probe's parsers."""
    def convert(text: str) -> Checked:
        try:
            return Checked(text, parse(text))
        except ProbeInputError as exc:
            return Checked(text, problem=str(exc))

    convert.__name__ = parse.__name__.removeprefix("parse_")  # argparse names it in its messages
    return convert


def register(sub: Any) -> None:
    p = sub.add_parser("probe", help="open outbound connections to HOST PORT and explain any failure",
                       description="The telnet-style outbound test: initiating a connection needs a fresh "
                                   "local port, so it fails first when ports run out.")
    p.add_argument("host", metavar="HOST", type=checked(parse_host),
                   help="host name, IPv4 address or IPv6 address")
    p.add_argument("port", metavar="PORT", type=checked(parse_port), help="TCP port, 1-65535")
    p.add_argument("--timeout", metavar="S", type=checked(parse_timeout),
                   default=Checked(str(DEFAULT_TIMEOUT_S), DEFAULT_TIMEOUT_S),
                   help=f"seconds to wait for the name lookup and for the connection "
                        f"(default {DEFAULT_TIMEOUT_S:g}, at most {MAX_TIMEOUT_S:g})")
    p.add_argument("--count", metavar="N", type=checked(parse_count), default=Checked("1", 1),
                   help=f"attempts (default 1, at most {MAX_COUNT})")
    p.add_argument("--interval", metavar="S", type=checked(parse_interval),
                   default=Checked(str(DEFAULT_INTERVAL_S), DEFAULT_INTERVAL_S),
                   help=f"seconds between attempts (default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("--json", action="store_true", help="one JSON object per attempt per line (the contract)")
    p.set_defaults(run=run)


def _first_problem(args: argparse.Namespace) -> str | None:
    for name in ("host", "port", "timeout", "count", "interval"):
        arg: Checked = getattr(args, name)
        if arg.problem is not None:
            return arg.problem
    return None


def format_attempt(result: ProbeResult, width: int = 1) -> str:
    head = f"#{result.attempt:<{width}}  {result.target}"
    via = f" ({result.address})" if result.address and result.address != result.host else ""
    if result.ok:
        return (f"{head}{via}  connected in {result.connect_ms or 0.0:.2f} ms"
                f" from local port {result.local_port}")
    return f"{head}{via}  FAILED {result.category} ({result.phase}): {result.error}"


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    problem = _first_problem(args)
    if problem is not None:
        if args.json:
            typed_port = args.port.value if args.port.problem is None else None
            print(json.dumps(invalid_input_result(args.host.text, typed_port, problem).to_json()), file=out,
                  flush=True)
        raise UsageError(f"portpressure probe: {problem}")
    host: str = args.host.value
    port: int = args.port.value
    count: int = args.count.value
    width = len(str(count))
    results: list[ProbeResult] = []

    def show(result: ProbeResult) -> None:
        results.append(result)
        line = json.dumps(result.to_json()) if args.json else format_attempt(result, width)
        print(line, file=out, flush=True)

    prober = Prober(free_ports=read_free_ports)
    try:
        summary = prober.series(host, port, count=count, interval_s=args.interval.value,
                                timeout_s=args.timeout.value, on_result=show)
    except KeyboardInterrupt:
        if not args.json:
            _print_summary(SeriesSummary.of(results[0].target if results else host, count, results, True),
                           results, out)
        return EXIT_INTERRUPTED
    if not args.json:
        _print_summary(summary, results, out)
    return EXIT_OK if results and all(r.ok for r in results) else EXIT_FAILED


def _print_summary(summary: SeriesSummary, results: list[ProbeResult], out: TextIO) -> None:
    if summary.requested > 1 or summary.cancelled:
        print(summary.text(), file=out)
    seen: set[str] = set()
    failed = any(not r.ok for r in results)
    for result in results:
        if result.category in seen or (failed and result.ok):
            continue
        seen.add(result.category)
        print(f"{result.category}: {result.diagnosis}", file=out)
    event_log = _event_log_line()
    if event_log:
        print(event_log, file=out)
    out.flush()


def _event_log_line() -> str | None:
    """The OS's own record of port exhaustion, on Windows (None elsewhere)."""
    from core.eventlog import EventLogError, read_tcpip_summary

    try:
        found = read_tcpip_summary()
    except EventLogError as exc:
        return f"Windows System log not read: {exc}"
    return None if found is None else found.text()
