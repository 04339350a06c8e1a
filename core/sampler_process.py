"""The sampler in a child process, so the window never waits for the GIL.

At 100,000 sockets one sample is ~150 ms of Python and numpy in core.sampler, with
single numpy calls holding the GIL for tens of milliseconds; in a thread of the GUI
process every such call froze the event loop (measured: 60-130 ms stalls with
benchmarks/gui_responsiveness.py). In a child process the sampling worker thread
only waits on a pipe, which releases the GIL.

The child is forked (Linux) and runs nothing but core: no Qt. Requests and replies
are pickled over a Pipe. The child only samples: the verdict is given in the window's
process (core.judgement), where the evidence is. The child dies with
the window (PR_SET_PDEATHSIG) and closes its source (tracing instance) on the way out.
No Qt here.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from core.model import PortConfig, Sample
from core.sources.base import SourceError

log = logging.getLogger(__name__)
REPLY_TIMEOUT_S = 30.0  # a first sample with a full /proc scan at 100k sockets takes ~1 s
PR_SET_PDEATHSIG = 1


def supported() -> bool:
    """fork is the cheap, safe way here (the child runs no Qt); elsewhere the sampler
    stays in a thread (Windows reads its tables with the GIL released anyway)."""
    return sys.platform.startswith("linux")


def _default_factory() -> Any:
    from core.sampler import Sampler

    return Sampler()


def _serve(conn: Connection, make_sampler: Callable[[], Any]) -> None:
    """The child: open the sampler, then answer requests until told to close."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def terminate(_signum: int, _frame: object) -> None:
        raise SystemExit(0)  # runs the finally below: the tracing instance is removed

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C belongs to the window
    sampler = None
    try:
        try:
            sampler = make_sampler()
            conn.send(("ok", (sampler.source_name, sampler.privileged, tuple(sampler.limits),
                              sampler.port_config)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError | SourceError)
                       else str(exc)))
            return
        while True:
            try:
                request, _payload = conn.recv()
            except EOFError:
                return  # the window went away
            if request == "close":
                conn.send(("ok", None))
                return
            try:
                sample = sampler.sample()
                conn.send(("ok", (sample, sampler.port_config, tuple(sampler.limits))))
            except Exception as exc:  # reported to the window; the next request retries
                conn.send(("error", str(exc) if isinstance(exc, OSError | SourceError)
                           else f"{type(exc).__name__}: {exc}"))
    finally:
        if sampler is not None:
            try:
                sampler.close()
            except Exception as exc:  # closing must not hide why the child ended
                log.warning("closing the sampler in the child: %s", exc)


class SamplerProcess:
    """core.sampler.Sampler's interface, served by a child process."""

    def __init__(self, make_sampler: Callable[[], Any] = _default_factory) -> None:
        ctx: Any = multiprocessing.get_context("fork")  # mypy types it per platform; Linux-only here
        self._conn, child_conn = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child_conn, make_sampler), daemon=True,
                                    name="portpressure-sampler")
        self._process.start()
        child_conn.close()
        self._closed = False
        try:
            facts = self._reply()
        except BaseException:
            self.close()
            raise
        self.source_name, self.privileged, self.limits, self._port_config = facts

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def port_config(self) -> PortConfig:
        return self._port_config

    def _reply(self) -> Any:
        if not self._conn.poll(REPLY_TIMEOUT_S):
            raise SourceError(f"the sampling process did not answer within {REPLY_TIMEOUT_S:.0f} s")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            code = self._process.exitcode
            raise SourceError(f"the sampling process ended (exit status {code})") from None
        if status != "ok":
            raise SourceError(payload)
        return payload

    def sample(self) -> Sample:
        if self._closed or not self._process.is_alive():
            raise SourceError("the sampling process is not running")
        try:
            self._conn.send(("sample", None))
        except (BrokenPipeError, OSError) as exc:
            raise SourceError(f"the sampling process is gone: {exc}") from None
        sample, self._port_config, self.limits = self._reply()
        return sample  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._process.is_alive():
                self._conn.send(("close", None))
                if self._conn.poll(5):
                    self._conn.recv()
        except (OSError, EOFError):
            pass  # already gone
        self._process.join(5)
        if self._process.is_alive():
            log.warning("the sampling process did not stop; terminating it")
            self._process.terminate()
            self._process.join(5)
        self._conn.close()


def open_sampler() -> Any:
    """The window's default: the sampler in a child process where supported, else in
    the calling thread. PORTPRESSURE_SAMPLER=thread forces the thread (diagnostics)."""
    if supported() and os.environ.get("PORTPRESSURE_SAMPLER", "process") != "thread":
        return SamplerProcess()
    return _default_factory()
