"""The outbound test, repeated: `watch --probe HOST:PORT` and the window's Repeat.

One thread per target runs core.probe's attempt at once and then every `every_s`
(the pause between the end of one attempt and the start of the next) until stopped;
each result goes to `on_result` (core.judgement takes it as evidence and as a `probe`
event). stop() cancels a wait in progress within core.probe.CANCEL_SLICE_S. No Qt here.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

from core.free_ports import read_free_ports
from core.probe import (
    DEFAULT_TIMEOUT_S,
    ProbeCancelled,
    ProbeInputError,
    Prober,
    ProbeResult,
    parse_host,
    parse_port,
)

DEFAULT_EVERY_S = 10.0
_TARGET = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]+):(?P<port>[^:]*)")


def parse_target(text: str) -> tuple[str, int]:
    """"HOST:PORT" (an IPv6 address in brackets: "[::1]:80") -> (host, port), or a
    one-line ProbeInputError."""
    match = _TARGET.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ProbeInputError(f"{text!r} is not HOST:PORT (e.g. 10.0.0.5:443, [::1]:80)")
    host = match["host"][1:-1] if match["host"].startswith("[") else match["host"]
    return parse_host(host), parse_port(match["port"])


class Canary:
    """Repeats the outbound test to each (host, port) until stop()."""

    def __init__(self, targets: Sequence[tuple[str, int]], on_result: Callable[[ProbeResult], object],
                 every_s: float = DEFAULT_EVERY_S, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.targets = tuple(targets)
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._on_result = on_result
        self._prober = Prober(free_ports=read_free_ports)  # judges WSAEADDRNOTAVAIL with the table
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=target, daemon=True,
                                          name=f"portpressure-canary-{host}:{port}")
                         for target in self.targets for host, port in [target]]

    def start(self) -> Canary:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, host: str, port: int) -> None:
        attempt = 0
        while not self._stopped.is_set():
            attempt += 1
            try:
                result = self._prober.probe(host, port, self.timeout_s, attempt=attempt)
            except ProbeCancelled:
                return
            self._on_result(result)
            if self._stopped.wait(self.every_s):
                return

    def cancel(self) -> None:
        """Stop without waiting: each thread ends within core.probe.CANCEL_SLICE_S."""
        self._stopped.set()
        self._prober.cancel()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.cancel()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout_s)
