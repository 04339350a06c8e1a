"""The outbound connect test ("telnet HOST PORT" from the affected machine), decoded.

An outbound connection needs a fresh local (ephemeral) port; an inbound one reuses the
listening port. So when TIME_WAIT sockets hold every local port, connections this
machine *opens* fail at once while connections it *receives* still work. One attempt
here is: check the input, resolve the name (in a worker thread, with its own timeout),
connect without blocking (with a timeout, cancellable from another thread), close.
Every outcome becomes a category from the `probe --json` contract (DESIGN.md) and a
sentence a support engineer can paste into a ticket.

Used by `portpressure probe` and by the window's outbound test panel; no Qt here.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np

from core.model import ProbeFailure, endpoint_text

Category = Literal["ok", "ports_exhausted", "refused", "timeout", "unreachable", "dns", "invalid_input"]
CATEGORIES: tuple[Category, ...] = ("ok", "ports_exhausted", "refused", "timeout", "unreachable", "dns",
                                    "invalid_input")
Phase = Literal["resolve", "connect"]

IS_WINDOWS = sys.platform == "win32"

MAX_HOST_LENGTH = 253  # RFC 1035: a name in text form, without the trailing dot
MAX_LABEL_LENGTH = 63
MAX_TIMEOUT_S = 300.0
MAX_COUNT = 1000
MAX_INTERVAL_S = 600.0
DEFAULT_TIMEOUT_S = 3.0
DEFAULT_INTERVAL_S = 1.0
# How often a wait looks at the cancel flag: the longest a Cancel click waits.
CANCEL_SLICE_S = 0.05
# Longer text is refused before any other work, so a pasted novel costs nothing.
_MAX_INPUT_CHARS = 1000
_SHOWN_CHARS = 40


class ProbeInputError(ValueError):
    """Bad input for the test: the message is one line naming the problem."""


class ProbeCancelled(Exception):
    """cancel() was called while this attempt was waiting."""


# -- input ---------------------------------------------------------------------------------

def _shown(text: str) -> str:
    """The input quoted for a message: repr escapes control characters and line breaks,
    so the message stays on one line whatever was typed."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _bad_character(text: str) -> str | None:
    """The first control, format, surrogate or private-use character, if any."""
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            return ch
    return None


def _checked_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise ProbeInputError(f"{what} must be text, not {type(text).__name__}")
    if len(text) > _MAX_INPUT_CHARS:
        raise ProbeInputError(f"{what} is too long ({len(text)} characters)")
    stripped = text.strip()
    if not stripped:
        raise ProbeInputError(f"{what} is empty")
    bad = _bad_character(stripped)
    if bad is not None:
        raise ProbeInputError(f"{what} contains a control or invisible character (U+{ord(bad):04X}): "
                              f"{_shown(stripped)}")
    return stripped


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_HOST_PORT = re.compile(r"(?P<host>[^:\[\]]+|\[[^\]]*\]):(?P<port>[0-9]+)")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def parse_host(text: str) -> str:
    """A host name (IDNA allowed), an IPv4 address or an IPv6 address (with or without
    brackets), as it should be shown and looked up; ProbeInputError otherwise."""
    host = _checked_text(text, "host")
    if any(ch.isspace() for ch in host):
        raise ProbeInputError(f"host contains a space: {_shown(host)}")
    if "://" in host or "/" in host:
        raise ProbeInputError(f"host {_shown(host)} looks like a URL: enter only the host name")
    if "@" in host:
        raise ProbeInputError(f"host {_shown(host)} contains '@': enter only the host name")
    host_port = _HOST_PORT.fullmatch(host)
    if host_port and not _is_ipv6(host):
        raise ProbeInputError(f"host {_shown(host)} includes a port: enter the host and the port "
                              f"{host_port['port']} in their own fields")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        if inner is None or not _is_ipv6(inner):
            raise ProbeInputError(f"host {_shown(host)} is not a valid IPv6 address in brackets")
        return inner
    if ":" in host:
        if _is_ipv6(host):
            return host
        raise ProbeInputError(f"host {_shown(host)} is not a valid IPv6 address")
    if len(host) > MAX_HOST_LENGTH + (1 if host.endswith(".") else 0):
        raise ProbeInputError(f"host is too long ({len(host)} characters, at most {MAX_HOST_LENGTH})")
    labels = host.rstrip(".").split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # A name whose last label is a number is read as an address by the resolver
        # (inet_aton takes "10.1", "0x7f.1", "2130706433"): insist on the usual form.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ProbeInputError(f"host {_shown(host)} is not a valid IPv4 address") from None
    for label in labels:
        if not label:
            raise ProbeInputError(f"host {_shown(host)} is not a valid host name: empty label between dots")
        if len(label) > MAX_LABEL_LENGTH:
            raise ProbeInputError(f"host {_shown(host)} is not a valid host name: a label is longer than "
                                  f"{MAX_LABEL_LENGTH} characters")
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        raise ProbeInputError(f"host {_shown(host)} is not a valid host name "
                              "(a label is too long or has characters a name cannot have)") from None
    if len(ascii_name.rstrip(".")) > MAX_HOST_LENGTH:
        raise ProbeInputError(f"host is too long once encoded for DNS ({len(ascii_name)} characters, "
                              f"at most {MAX_HOST_LENGTH})")
    for label in ascii_name.rstrip(".").split("."):
        if len(label) > MAX_LABEL_LENGTH:
            raise ProbeInputError(f"host {_shown(host)} is not a valid host name: a label is longer than "
                                  f"{MAX_LABEL_LENGTH} characters")
        if label.startswith("-") or label.endswith("-"):
            raise ProbeInputError(f"host {_shown(host)} is not a valid host name: label {_shown(label)} "
                                  "starts or ends with '-'")
        if not _LABEL.fullmatch(label):
            bad = next((ch for ch in label if not (ch.isalnum() or ch in "-_")), label[:1])
            raise ProbeInputError(f"host {_shown(host)} is not a valid host name: {_shown(bad)} "
                                  "is not allowed")
    return host


def _is_ip(text: str, version: int | None = None) -> bool:
    """Whether text is an IP address (of that version, when given)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_ipv6(text: str) -> bool:
    return _is_ip(text, 6)


_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def _whole(text: str, what: str, lo: int, hi: int) -> int:
    value = _checked_text(text, what)
    # Only ASCII digits: int() would also take "1_000", "+5" and Arabic-Indic digits.
    if not _WHOLE.fullmatch(value):
        raise ProbeInputError(f"{what} must be a whole number from {lo} to {hi}, not {_shown(value)}")
    number = int(value)  # at most _MAX_INPUT_CHARS digits: cheap
    if not lo <= number <= hi:
        raise ProbeInputError(f"{what} {_shown(value)} is out of range: use {lo} to {hi}")
    return number


def _seconds(text: str, what: str, lo: float, hi: float, allow_zero: bool) -> float:
    value = _checked_text(text, what)
    if value.startswith("-") and _DECIMAL.fullmatch(value[1:]):
        floor = "at least 0" if allow_zero else "more than 0"
        raise ProbeInputError(f"{what} must be {floor} seconds, not {_shown(value)}")
    if not _DECIMAL.fullmatch(value):
        raise ProbeInputError(f"{what} must be a number of seconds, not {_shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ProbeInputError(f"{what} {_shown(value)} is not a finite number of seconds")
    if number < lo or (number == 0 and not allow_zero):
        floor = "at least 0" if allow_zero else "more than 0"
        raise ProbeInputError(f"{what} must be {floor} seconds, not {_shown(value)}")
    if number > hi:
        raise ProbeInputError(f"{what} {_shown(value)} is too long: at most {hi:g} seconds")
    return number


def parse_port(text: str) -> int:
    """A TCP port, 1-65535."""
    return _whole(text, "port", 1, 65535)


def parse_timeout(text: str) -> float:
    """Seconds to wait for the name and for the connection, each; > 0, at most 300."""
    return _seconds(text, "timeout", 0.0, MAX_TIMEOUT_S, allow_zero=False)


def parse_count(text: str) -> int:
    """Attempts in a series, 1-1000."""
    return _whole(text, "count", 1, MAX_COUNT)


def parse_interval(text: str) -> float:
    """Seconds between attempts of a series, 0 (back to back) to 600."""
    return _seconds(text, "interval", 0.0, MAX_INTERVAL_S, allow_zero=True)


# -- errors, categories and diagnoses -------------------------------------------------------

WSAEACCES = 10013
WSAEMFILE = 10024
WSAEWOULDBLOCK = 10035
WSAEINPROGRESS = 10036
WSAEALREADY = 10037
WSAEADDRINUSE = 10048
WSAEADDRNOTAVAIL = 10049
WSAENETDOWN = 10050
WSAENETUNREACH = 10051
WSAECONNABORTED = 10053
WSAECONNRESET = 10054
WSAENOBUFS = 10055
WSAETIMEDOUT = 10060
WSAECONNREFUSED = 10061
WSAEHOSTDOWN = 10064
WSAEHOSTUNREACH = 10065

# Winsock's own names and English texts (what FormatMessage says), for the codes that
# matter here; tested on any OS, used on Windows when FormatMessage is not reachable.
WINSOCK_ERRORS: Mapping[int, tuple[str, str]] = {
    WSAEACCES: ("WSAEACCES", "An attempt was made to access a socket in a way forbidden by its access "
                             "permissions"),
    WSAEMFILE: ("WSAEMFILE", "Too many open sockets"),
    WSAEADDRINUSE: ("WSAEADDRINUSE", "Only one usage of each socket address (protocol/network "
                                     "address/port) is normally permitted"),
    WSAEADDRNOTAVAIL: ("WSAEADDRNOTAVAIL", "The requested address is not valid in its context"),
    WSAENETDOWN: ("WSAENETDOWN", "A socket operation encountered a dead network"),
    WSAENETUNREACH: ("WSAENETUNREACH", "A socket operation was attempted to an unreachable network"),
    WSAECONNABORTED: ("WSAECONNABORTED", "An established connection was aborted by the software in "
                                         "your host machine"),
    WSAECONNRESET: ("WSAECONNRESET", "An existing connection was forcibly closed by the remote host"),
    WSAENOBUFS: ("WSAENOBUFS", "An operation on a socket could not be performed because the system "
                               "lacked sufficient buffer space or because a queue was full"),
    WSAETIMEDOUT: ("WSAETIMEDOUT", "A connection attempt failed because the connected party did not "
                                   "properly respond after a period of time, or established connection "
                                   "failed because connected host has failed to respond"),
    WSAECONNREFUSED: ("WSAECONNREFUSED", "No connection could be made because the target machine "
                                         "actively refused it"),
    WSAEHOSTDOWN: ("WSAEHOSTDOWN", "A socket operation failed because the destination host was down"),
    WSAEHOSTUNREACH: ("WSAEHOSTUNREACH", "A socket operation was attempted to an unreachable host"),
}

# Windows: no free port in the dynamic range (WSAENOBUFS, with Tcpip event 4231), or the
# only candidate port is still in TIME_WAIT toward this destination (WSAEADDRINUSE, 4227).
# WSAEADDRNOTAVAIL means "cannot connect to that address", but a stack that is out of local
# ports can say it too (a Linux kernel under Wine does: its EADDRNOTAVAIL arrives as 10049),
# so the Prober asks the socket table before calling it unreachable (FreePorts).
_WINDOWS_CATEGORY: Mapping[int, Category] = {
    WSAENOBUFS: "ports_exhausted",
    WSAEADDRINUSE: "ports_exhausted",
    WSAECONNREFUSED: "refused",
    WSAETIMEDOUT: "timeout",
    WSAENETUNREACH: "unreachable",
    WSAEHOSTUNREACH: "unreachable",
    WSAENETDOWN: "unreachable",
    WSAEHOSTDOWN: "unreachable",
    WSAEADDRNOTAVAIL: "unreachable",
}


def _posix_categories() -> Mapping[int, Category]:
    # Built from the errno module's names, which are the POSIX numbers off Windows
    # (Linux EADDRNOTAVAIL is 99: connect() found no free local port for this destination).
    table: dict[int, Category] = {
        errno.EADDRNOTAVAIL: "ports_exhausted",
        errno.EADDRINUSE: "ports_exhausted",
        errno.ECONNREFUSED: "refused",
        errno.ETIMEDOUT: "timeout",
        errno.ENETUNREACH: "unreachable",
        errno.EHOSTUNREACH: "unreachable",
        errno.ENETDOWN: "unreachable",
    }
    host_down = getattr(errno, "EHOSTDOWN", None)
    if host_down is not None:
        table[host_down] = "unreachable"
    return table


_POSIX_CATEGORY: Mapping[int, Category] = {} if IS_WINDOWS else _posix_categories()
# connect() on a non-blocking socket: the handshake has started. Only EINPROGRESS on
# POSIX (EAGAIN from a TCP connect means something else there); WSAEWOULDBLOCK on Windows.
_IN_PROGRESS = (frozenset({WSAEWOULDBLOCK, WSAEINPROGRESS, WSAEALREADY}) if IS_WINDOWS
                else frozenset({errno.EINPROGRESS}))


def classify_errno(code: int, windows: bool = IS_WINDOWS) -> Category:
    """The contract category of a connect() error. Anything not known to be exhaustion,
    refusal or a timeout means the target could not be reached ("unreachable")."""
    table = _WINDOWS_CATEGORY if windows else _POSIX_CATEGORY
    return table.get(code, "unreachable")


def errno_name(code: int, windows: bool = IS_WINDOWS) -> str | None:
    if windows:
        known = WINSOCK_ERRORS.get(code)
        return known[0] if known else None
    return errno.errorcode.get(code)


def describe_errno(code: int, windows: bool = IS_WINDOWS) -> str:
    """The error as Python would print it: "[Errno 99] Cannot assign requested address"
    on POSIX, "[WinError 10055] An operation on a socket ..." on Windows."""
    if windows:
        text = _format_message(code) or WINSOCK_ERRORS.get(code, ("", f"Windows socket error {code}"))[1]
        return f"[WinError {code}] {text}"
    return f"[Errno {code}] {os.strerror(code)}"


def _format_message(code: int) -> str | None:
    """FormatMessage's text (in the OS language) on Windows; None elsewhere."""
    if sys.platform == "win32":
        import ctypes

        text = ctypes.FormatError(code).strip().rstrip(".")
        # ctypes says "<no description>" where the system has no text for the code.
        return text if text and text != "<no description>" else None
    return None


def _fix_sentence(windows: bool) -> str:
    if windows:
        return ("Find the process opening them (the Top processes table), shorten TIME_WAIT with "
                "TcpTimedWaitDelay or widen the dynamic port range (netsh int ipv4 set dynamicport tcp), "
                "and have the application reuse its connections.")
    return ("Find the process opening them (the Top processes table), let new connections reuse TIME_WAIT "
            "ports (net.ipv4.tcp_tw_reuse=1) or widen net.ipv4.ip_local_port_range, and have the "
            "application reuse its connections.")


def diagnose(category: Category, *, target: str, host: str = "", error: str | None = None,
             timeout_s: float | None = None, latency_ms: float | None = None,
             local_port: int | None = None, timed_out: bool = False, known_error: bool = True,
             windows: bool = IS_WINDOWS, evidence: str | None = None) -> str:
    """One or two sentences a support engineer can paste into a ticket. `timed_out`: our
    own timer ran out (no OS error to quote); `evidence`: the socket table's word, added."""
    text = _diagnosis(category, target=target, host=host, error=error, timeout_s=timeout_s,
                      latency_ms=latency_ms, local_port=local_port, timed_out=timed_out,
                      known_error=known_error, windows=windows)
    return f"{text} {evidence}" if evidence else text


def _diagnosis(category: Category, *, target: str, host: str, error: str | None, timeout_s: float | None,
               latency_ms: float | None, local_port: int | None, timed_out: bool, known_error: bool,
               windows: bool) -> str:
    quoted = f" ({error})" if error else ""
    if category == "ok":
        via = f" from local port {local_port}" if local_port else ""
        took = f" in {latency_ms:.1f} ms" if latency_ms is not None else ""
        return f"Connected to {target}{took}{via}: this machine can open outbound connections right now."
    if category == "ports_exhausted":
        return (f"No free local port was left for a new outbound connection to {target}{quoted}. "
                "Every connection this machine opens needs its own local (ephemeral) port, and they are all "
                "held, typically by sockets waiting out TIME_WAIT after connections were opened and closed "
                "at a high rate; connections this machine receives still work, which is why inbound looks "
                f"healthy. {_fix_sentence(windows)}")
    if category == "refused":
        return (f"{target} answered and refused the connection{quoted}: nothing listens on that port there, "
                "or a firewall rejected it. The network path and the local ports work, so this is NOT port "
                "exhaustion; check that the service runs on that port.")
    if category == "timeout":
        waited = f" within {timeout_s:g} s" if timeout_s is not None else ""
        quoted = "" if timed_out else quoted
        return (f"No answer from {target}{waited}{quoted}: the connection request went unanswered "
                "(a firewall dropping it, a host that is down, or a service whose accept queue is full). "
                "This is not port exhaustion, which fails at once with an error.")
    if category == "unreachable":
        if not known_error:
            return (f"The connection to {target} failed{quoted}. This is not one of the port exhaustion "
                    "errors; look the error up with the network team.")
        return (f"{target} cannot be reached from this machine{quoted}: no route to that network or "
                "host, or the local firewall blocked it. This is a routing or firewall problem, not port "
                "exhaustion.")
    if category == "dns":
        name = host or target
        if timed_out:
            return (f"Looking up {name} did not finish within {timeout_s:g} s: the DNS server did not answer "
                    "in time. No connection was attempted, so this says nothing about local ports.")
        return (f"The name {name} could not be resolved to an address{quoted}: check the spelling and "
                "this machine's DNS settings. No connection was attempted, so this says nothing about "
                "local ports.")
    return f"The test was not run: {error or 'the input is not valid'}."


# -- results ---------------------------------------------------------------------------------

def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ProbeResult:
    """One attempt. `to_json()` is the `probe --json` contract (extra keys allowed)."""

    host: str
    port: int | None
    ok: bool
    phase: Phase
    elapsed_ms: float  # the whole attempt: lookup + connect
    errno: int | None
    error: str | None
    category: Category
    diagnosis: str
    time_iso: str = field(default_factory=_now_iso)
    monotonic: float = field(default_factory=time.monotonic)  # for the verdict's evidence window
    address: str | None = None  # the address connected to (or tried last)
    local_port: int | None = None
    resolve_ms: float | None = None
    connect_ms: float | None = None  # the latency: SYN sent to handshake done
    errno_name: str | None = None
    attempt: int = 1

    @property
    def target(self) -> str:
        return endpoint_text(self.host, self.port) if self.port is not None else self.host

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "ok": self.ok,
            "phase": self.phase,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "errno": self.errno,
            "error": self.error,
            "category": self.category,
            "diagnosis": self.diagnosis,
            "time": self.time_iso,
            "attempt": self.attempt,
            "address": self.address,
            "local_port": self.local_port,
            "resolve_ms": None if self.resolve_ms is None else round(self.resolve_ms, 3),
            "connect_ms": None if self.connect_ms is None else round(self.connect_ms, 3),
            "errno_name": self.errno_name,
        }


def invalid_input_result(host: str, port: int | None, problem: ProbeInputError | str) -> ProbeResult:
    """The record of a test that was refused before any socket was opened."""
    message = str(problem)
    return ProbeResult(host=host, port=port, ok=False, phase="resolve", elapsed_ms=0.0, errno=None,
                       error=message, category="invalid_input",
                       diagnosis=diagnose("invalid_input", target=host, error=message))


def to_probe_failure(result: ProbeResult) -> ProbeFailure | None:
    """Evidence for the verdict when the attempt failed with an exhaustion error."""
    if result.category != "ports_exhausted":
        return None
    return ProbeFailure(monotonic=result.monotonic, target=result.target,
                        error=result.error or "no free local port")


@dataclass(frozen=True)
class LatencyStats:
    """Connect latency of the successful attempts, milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> LatencyStats | None:
        if not latencies_ms:
            return None
        values = np.asarray(latencies_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(values.max()))

    def to_json(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p90": round(self.p90, 3), "p99": round(self.p99, 3),
                "max": round(self.max, 3)}

    def text(self) -> str:
        return f"p50 {self.p50:.2f} ms, p90 {self.p90:.2f} ms, p99 {self.p99:.2f} ms, max {self.max:.2f} ms"


@dataclass(frozen=True)
class SeriesSummary:
    target: str
    requested: int
    attempts: int
    successes: int
    failures: int
    categories: Mapping[str, int]  # failures per category
    latency: LatencyStats | None
    cancelled: bool

    @classmethod
    def of(cls, target: str, requested: int, results: Sequence[ProbeResult],
           cancelled: bool) -> SeriesSummary:
        ok = [r for r in results if r.ok]
        failed = Counter(r.category for r in results if not r.ok)
        latencies = [r.connect_ms for r in ok if r.connect_ms is not None]
        return cls(target, requested, len(results), len(ok), len(results) - len(ok),
                   {c: failed[c] for c in CATEGORIES if failed[c]}, LatencyStats.of(latencies), cancelled)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "requested": self.requested, "attempts": self.attempts,
                "successes": self.successes, "failures": self.failures, "categories": dict(self.categories),
                "latency_ms": None if self.latency is None else self.latency.to_json(),
                "cancelled": self.cancelled}

    def text(self) -> str:
        done = f"{self.attempts} attempts"
        if self.cancelled:
            done = f"{self.attempts} of {self.requested} attempts"
        line = f"{done} to {self.target}: {self.successes} connected, {self.failures} failed"
        if self.categories:
            line += " (" + ", ".join(f"{name} {n}" for name, n in self.categories.items()) + ")"
        if self.latency is not None:
            line += f"; connect latency {self.latency.text()}"
        return line + ("; cancelled" if self.cancelled else "")


# -- the prober ------------------------------------------------------------------------------

def _abortive_close(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the probe's own port is free again at once
    instead of adding one more TIME_WAIT socket to a machine already short of ports."""
    try:
        linger = struct.pack("HH", 1, 0) if IS_WINDOWS else struct.pack("ii", 1, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    except OSError:
        pass  # the close below still releases the socket, just more slowly
    sock.close()


@dataclass(frozen=True)
class _Failure:
    category: Category
    errno: int | None
    error: str | None
    errno_name: str | None = None
    known: bool = True  # an error this module knows the meaning of
    timed_out: bool = False  # our own timer ran out: there is no OS error to quote
    evidence: str | None = None  # what the socket table said about an ambiguous error


# Free local ports in the busiest pool as the socket table shows them now; None: not known.
FreePorts = Callable[[], "int | None"]


class Prober:
    """Runs attempts; cancel() from any thread ends the current wait within
    CANCEL_SLICE_S and stops a series. A Prober that was cancelled stays cancelled:
    make a new one for the next run. `free_ports` judges the ambiguous WSAEADDRNOTAVAIL."""

    def __init__(self, windows: bool = IS_WINDOWS, free_ports: FreePorts | None = None) -> None:
        self._cancel = threading.Event()
        self._windows = windows
        self._free_ports = free_ports

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # one attempt -------------------------------------------------------------------------
    def probe(self, host: str, port: int, timeout_s: float = DEFAULT_TIMEOUT_S,
              resolve_timeout_s: float | None = None, attempt: int = 1) -> ProbeResult:
        """One attempt against a host and port already checked by parse_host/parse_port.
        Raises ProbeCancelled if cancelled while waiting."""
        target = endpoint_text(host, port)
        resolve_timeout_s = timeout_s if resolve_timeout_s is None else resolve_timeout_s
        started = time.perf_counter()
        wall = _now_iso()
        if self.cancelled:
            raise ProbeCancelled()
        addresses, failure = self._resolve(host, port, resolve_timeout_s)
        resolve_ms = (time.perf_counter() - started) * 1000.0
        if failure is not None:
            return ProbeResult(host=host, port=port, ok=False, phase="resolve",
                               elapsed_ms=resolve_ms, errno=failure.errno, error=failure.error,
                               category=failure.category, errno_name=failure.errno_name,
                               diagnosis=diagnose(failure.category, target=target, host=host,
                                                  error=failure.error, timeout_s=resolve_timeout_s,
                                                  timed_out=failure.timed_out, windows=self._windows),
                               time_iso=wall, resolve_ms=resolve_ms, attempt=attempt)
        # Like telnet: try the addresses in order while they fail at once (an IPv6 address
        # without a route, a refusal); exhaustion or a timeout is the answer itself.
        deadline = time.monotonic() + timeout_s
        last: tuple[str, _Failure, float] | None = None
        for family, sockaddr in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and last is not None:
                break
            address = str(sockaddr[0])
            outcome, connect_ms, local_port = self._connect(family, sockaddr, max(remaining, 0.0))
            if outcome is None:
                elapsed = (time.perf_counter() - started) * 1000.0
                return ProbeResult(host=host, port=port, ok=True, phase="connect", elapsed_ms=elapsed,
                                   errno=None, error=None, category="ok",
                                   diagnosis=diagnose("ok", target=target, latency_ms=connect_ms,
                                                      local_port=local_port, windows=self._windows),
                                   time_iso=wall, address=address, local_port=local_port,
                                   resolve_ms=resolve_ms, connect_ms=connect_ms, attempt=attempt)
            last = (address, outcome, connect_ms)
            if outcome.category not in ("refused", "unreachable"):
                break
        assert last is not None
        address, outcome, connect_ms = last
        if outcome.timed_out:  # quote the timeout asked for, not what was left of it
            outcome = replace(outcome, error=f"no answer within {timeout_s:g} s (connect timed out)")
        elapsed = (time.perf_counter() - started) * 1000.0
        return ProbeResult(host=host, port=port, ok=False, phase="connect", elapsed_ms=elapsed,
                           errno=outcome.errno, error=outcome.error, category=outcome.category,
                           diagnosis=diagnose(outcome.category, target=target, host=host, error=outcome.error,
                                              timeout_s=timeout_s, known_error=outcome.known,
                                              timed_out=outcome.timed_out, windows=self._windows,
                                              evidence=outcome.evidence),
                           time_iso=wall, address=address, resolve_ms=resolve_ms, connect_ms=connect_ms,
                           errno_name=outcome.errno_name, attempt=attempt)

    def _resolve(self, host: str, port: int,
                 timeout_s: float) -> tuple[list[tuple[int, Any]], _Failure | None]:
        if _is_ip(host):
            # AI_NUMERICHOST: no lookup at all, so no thread and no wait.
            found, failure = _getaddrinfo(host, port, socket.AI_NUMERICHOST)
            return found, failure
        box: list[tuple[list[tuple[int, Any]], _Failure | None]] = []
        done = threading.Event()

        def lookup() -> None:
            try:
                box.append(_getaddrinfo(host, port, 0))
            finally:
                done.set()

        # getaddrinfo cannot be interrupted: run it in a daemon thread and stop waiting
        # for it on timeout or cancel (the OS finishes it in the background).
        threading.Thread(target=lookup, name="portpressure-resolve", daemon=True).start()
        if not self._wait(done.wait, timeout_s):
            return [], _Failure("dns", None, f"the name lookup did not finish within {timeout_s:g} s",
                                timed_out=True)
        return box[0] if box else ([], _Failure("dns", None, "the lookup failed without an error"))

    def _wait(self, wait_slice: Callable[[float], Any], timeout_s: float) -> Any:
        """Call wait_slice(seconds) in short slices until it returns something truthy,
        the timeout passes (returns a falsy value) or cancel() is called (raises)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._cancel.is_set():
                raise ProbeCancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            got = wait_slice(min(remaining, CANCEL_SLICE_S))
            if got:
                if self._cancel.is_set():
                    raise ProbeCancelled()
                return got

    def _connect(self, family: int, sockaddr: Any,
                 timeout_s: float) -> tuple[_Failure | None, float, int | None]:
        """(failure or None, connect milliseconds, local port)."""
        started = time.perf_counter()
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            return self._os_failure(exc), (time.perf_counter() - started) * 1000.0, None
        connected = False
        try:
            sock.setblocking(False)
            started = time.perf_counter()
            try:
                code = sock.connect_ex(sockaddr)
            except OSError as exc:
                return self._os_failure(exc), (time.perf_counter() - started) * 1000.0, None
            if code in _IN_PROGRESS:
                with selectors.DefaultSelector() as selector:
                    # On Windows a failed connect is reported in select()'s "except" set;
                    # SelectSelector folds it into EVENT_WRITE.
                    selector.register(sock, selectors.EVENT_WRITE)
                    ready = self._wait(selector.select, timeout_s)
                elapsed = (time.perf_counter() - started) * 1000.0
                if not ready:
                    return _Failure("timeout", None, None, timed_out=True), elapsed, None
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            elapsed = (time.perf_counter() - started) * 1000.0
            if code != 0:
                return self._errno_failure(code), elapsed, None
            connected = True
            local_port = int(sock.getsockname()[1])
            return None, elapsed, local_port
        finally:
            if connected:
                _abortive_close(sock)
            else:
                sock.close()

    def _errno_failure(self, code: int) -> _Failure:
        known = code in (_WINDOWS_CATEGORY if self._windows else _POSIX_CATEGORY)
        failure = _Failure(classify_errno(code, self._windows), code, describe_errno(code, self._windows),
                           errno_name(code, self._windows), known)
        if self._windows and code == WSAEADDRNOTAVAIL and self._free_ports is not None:
            return self._judged_by_the_table(failure, self._free_ports())
        return failure

    @staticmethod
    def _judged_by_the_table(failure: _Failure, free: int | None) -> _Failure:
        if free is None:
            return replace(failure, evidence="The socket table could not be read to tell whether local "
                                             "ports ran out.")
        if free == 0:
            return replace(failure, category="ports_exhausted",
                           evidence="Windows named no port error, but the socket table shows every local "
                                    "port of the busiest pool held.")
        return replace(failure, evidence=f"The socket table shows {free} local ports still free.")

    def _os_failure(self, exc: OSError) -> _Failure:
        code = exc.errno if exc.errno is not None else getattr(exc, "winerror", None)
        if code is None:
            return _Failure("unreachable", None, str(exc), None, False)
        failure = self._errno_failure(int(code))
        return _Failure(failure.category, failure.errno, str(exc) or failure.error, failure.errno_name,
                        failure.known)

    # a series ----------------------------------------------------------------------------
    def series(self, host: str, port: int, *, count: int = 1, interval_s: float = DEFAULT_INTERVAL_S,
               timeout_s: float = DEFAULT_TIMEOUT_S, resolve_timeout_s: float | None = None,
               on_result: Callable[[ProbeResult], None] | None = None) -> SeriesSummary:
        """Up to `count` attempts, `interval_s` apart (pause between the end of one and the
        start of the next). Stops early on cancel(); the summary says so."""
        if not 1 <= count <= MAX_COUNT:
            raise ProbeInputError(f"count must be 1 to {MAX_COUNT}, not {count}")
        results: list[ProbeResult] = []
        cancelled = False
        for attempt in range(1, count + 1):
            try:
                result = self.probe(host, port, timeout_s, resolve_timeout_s, attempt=attempt)
            except ProbeCancelled:
                cancelled = True
                break
            results.append(result)
            if on_result is not None:
                on_result(result)
            if attempt < count and interval_s > 0 and self._cancel.wait(interval_s):
                cancelled = True
                break
        return SeriesSummary.of(endpoint_text(host, port), count, results, cancelled)


def _getaddrinfo(host: str, port: int, flags: int) -> tuple[list[tuple[int, Any]], _Failure | None]:
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                   flags)
    except socket.gaierror as exc:
        return [], _Failure("dns", exc.errno, str(exc))
    except (OSError, UnicodeError) as exc:
        return [], _Failure("dns", getattr(exc, "errno", None), str(exc) or type(exc).__name__)
    found = [(int(family), sockaddr) for family, _type, _proto, _name, sockaddr in infos]
    if not found:
        return [], _Failure("dns", None, "the name has no address")
    return found, None
