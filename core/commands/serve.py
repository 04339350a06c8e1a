"""`portpressure serve`: Prometheus metrics of the latest sample, on /metrics or in a
textfile for node_exporter's / windows_exporter's textfile collector.

Read-only by design: the HTTP side answers GET (and HEAD) on `/metrics` and on a small
index page, 404 on any other path and 405 on any other method; nothing it receives can
change a setting. It listens on loopback unless a wider address is given.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from core import __version__
from core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    MAX_DURATION_S,
    MAX_INTERVAL_S,
    UsageError,
    bounded_float,
    bounded_int,
    positive_int,
)
from core.sources import SourceError

DEFAULT_LISTEN = "127.0.0.1:9466"  # 9466: free in Prometheus's default port allocations list
DEFAULT_INTERVAL_S = 15.0  # Prometheus's default scrape interval: one fresh sample per scrape
MAX_PROBES = 10
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def register(sub: Any) -> None:
    try:
        from core.exporter import DEFAULT_PROBE_EVERY_S
        from core.metrics import DEFAULT_TOP, MAX_TOP
    except ImportError:  # a build without prometheus_client (or what it imports): not offered
        return
    p = sub.add_parser("serve", help="serve Prometheus metrics of the latest sample (/metrics)",
                       description="Samples in the background and serves the latest sample as Prometheus "
                                   "metrics; a scrape never waits on the kernel.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", type=endpoint("--listen"), default=None, metavar="ADDR:PORT",
                       help=f"address and port to listen on (default {DEFAULT_LISTEN}: this machine only)")
    where.add_argument("--textfile", metavar="FILE.prom",
                       help="instead of listening, write the metrics to FILE.prom after every sample "
                            "(atomically: write, then rename) for a textfile collector")
    p.add_argument("--interval", type=bounded_float(MAX_INTERVAL_S), default=DEFAULT_INTERVAL_S, metavar="S",
                   help=f"seconds between samples (default {DEFAULT_INTERVAL_S:g}, a usual scrape interval)")
    p.add_argument("--top", type=bounded_int(MAX_TOP, "label cardinality"), default=DEFAULT_TOP, metavar="N",
                   help=f"processes and remotes exported (default {DEFAULT_TOP}, at most {MAX_TOP})")
    p.add_argument("--probe", type=endpoint("--probe"), action="append", default=[], metavar="HOST:PORT",
                   help=f"run the outbound test against HOST:PORT as a canary "
                        f"(repeatable, at most {MAX_PROBES})")
    p.add_argument("--probe-every", type=bounded_float(MAX_INTERVAL_S), default=DEFAULT_PROBE_EVERY_S,
                   metavar="S",
                   help=f"seconds between canary tests (default {DEFAULT_PROBE_EVERY_S:g})")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--count", type=positive_int, metavar="N", help="stop after N samples")
    limit.add_argument("--duration", type=bounded_float(MAX_DURATION_S), metavar="S",
                       help="stop after S seconds (at most a year)")
    p.set_defaults(run=run)


def endpoint(option: str) -> Callable[[str], tuple[str, int]]:
    """An argparse type for HOST:PORT or [IPv6]:PORT, checked by the outbound test's parsers."""
    from core.probe import ProbeInputError, parse_host, parse_port

    def convert(text: str) -> tuple[str, int]:
        if "/" in text:
            raise argparse.ArgumentTypeError(f"{text!r} looks like a URL: write HOST:PORT")
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise argparse.ArgumentTypeError(f"write an IPv6 address in brackets, [ADDR]:PORT, not {text!r}")
        try:
            return parse_host(host), parse_port(port)
        except ProbeInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = option  # argparse names it in its messages
    return convert


# -- HTTP ------------------------------------------------------------------------------------

class MetricsHandler(BaseHTTPRequestHandler):
    """GET/HEAD on /metrics and / only. The server object carries the exporter."""

    server_version = f"PortPressure/{__version__}"
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
               head: bool = False, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _get(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        exporter = self.server.exporter  # type: ignore[attr-defined]
        if path == "/metrics":
            latest = exporter.latest
            if latest is None:
                self._reply(503, b"no sample yet\n", head=head, extra={"Retry-After": "1"})
            else:
                self._reply(200, latest.body, CONTENT_TYPE, head=head)
        elif path == "/":
            self._reply(200, index_page(exporter).encode(), "text/html; charset=utf-8", head=head)
        else:
            self._reply(404, b"not found: only /metrics and / are served\n", head=head)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._get(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(head=True)

    def _not_allowed(self) -> None:
        self._reply(405, b"method not allowed: this exporter is read-only\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """One line per scrape would fill a journal; errors reach the scraper anyway."""


def index_page(exporter: Any) -> str:
    latest = exporter.latest
    when = (time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(latest.sample_time)) if latest
            else "none yet")
    return (f"<!doctype html><html><head><title>PortPressure exporter</title></head><body>"
            f"<h1>PortPressure exporter {html.escape(__version__)}</h1>"
            f"<p><a href=\"/metrics\">/metrics</a>: ephemeral port pressure, sockets by state, the verdict "
            f"and the top processes, sampled every {exporter.interval_s:g} s.</p>"
            f"<p>Latest sample: {html.escape(when)}.</p></body></html>\n")


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        host = address[0]
        self.address_family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
        self.exporter: Any = None  # set before serve_forever starts
        super().__init__(address, MetricsHandler)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


# -- the command -----------------------------------------------------------------------------

def _check_textfile(path: str) -> str:
    if not path.endswith(".prom"):
        raise UsageError(f"portpressure serve: --textfile {path!r} must end in .prom "
                         "(the textfile collectors read only *.prom files)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"portpressure serve: --textfile folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"portpressure serve: --textfile folder is not writable: {folder}")
    return path


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from core.exporter import Exporter, Exposition
    from core.judgement import JudgedSampler
    from core.metrics import FixedCollector
    from core.sampler_process import open_sampler
    from core.settings_watch import SettingsWatch

    out = out or sys.stderr
    if len(args.probe) > MAX_PROBES:
        raise UsageError(f"portpressure serve: at most {MAX_PROBES} --probe targets, not {len(args.probe)}")
    textfile = _check_textfile(args.textfile) if args.textfile else None
    listen = args.listen or endpoint("--listen")(DEFAULT_LISTEN)

    def report(message: str) -> None:
        print(f"portpressure serve: {message}", file=out, flush=True)

    def write_textfile(latest: Exposition) -> None:
        from prometheus_client import write_to_textfile

        assert textfile is not None
        try:
            write_to_textfile(textfile, FixedCollector(latest.families))  # type: ignore[arg-type]
        except OSError as exc:
            report(f"cannot write {textfile}, retrying at the next sample: {exc}")

    server: ExporterServer | None = None
    if textfile is None:  # before anything else starts: a busy port is bad input
        try:
            server = ExporterServer(listen)
        except OSError as exc:
            raise UsageError(f"portpressure serve: cannot listen on {listen[0]}:{listen[1]}: "
                             f"{exc.strerror or exc}") from None
    try:
        # On Linux in a child process, as for the window: a sample of 100k sockets holds
        # the GIL for tens of milliseconds at a time, which a scrape must not wait for.
        sampler = JudgedSampler(open_sampler(), settings=SettingsWatch())
    except (SourceError, OSError) as exc:
        report(f"cannot read the socket table: {exc}")
        if server is not None:
            server.server_close()
        return EXIT_FAILED
    exporter = Exporter(sampler, interval_s=args.interval, top=args.top, canaries=args.probe,
                        probe_every_s=args.probe_every, count=args.count,
                        on_exposition=write_textfile if textfile else None, on_error=report)
    serving = False
    try:
        if server is not None:
            server.exporter = exporter
            threading.Thread(target=server.serve_forever, name="portpressure-http", daemon=True).start()
            serving = True
            bound = server.server_address
            report(f"serving http://{_url_host(str(bound[0]))}:{bound[1]}/metrics "
                   f"(sampling every {args.interval:g} s)")
        else:
            report(f"writing {textfile} every {args.interval:g} s")
        _stop_on_sigterm()
        exporter.start()
        deadline = time.monotonic() + args.duration if args.duration else None
        # Bounded waits so Ctrl+C and SIGTERM are seen promptly.
        while not exporter.finished.wait(0.5):
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            if serving:  # shutdown() waits for serve_forever to end: only once it runs
                server.shutdown()
            server.server_close()
        exporter.stop()
        sampler.close()
    return EXIT_OK if exporter.samples and exporter.broken is None else EXIT_FAILED


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _stop_on_sigterm() -> None:
    """systemd and Task Scheduler stop a service with SIGTERM: leave as on Ctrl+C, so the
    sampler removes its kernel tracing instance."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        def interrupt(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, interrupt)
