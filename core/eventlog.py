"""Windows System log: how many Tcpip events 4227 and 4231 the last 24 hours hold.

4227: "TCP/IP failed to establish an outgoing connection because the selected local
endpoint was recently used to connect to the same remote endpoint" (a port still in
TIME_WAIT toward that destination; the application sees WSAEADDRINUSE 10048).
4231: "A request to allocate an ephemeral port number from the global TCP port space
has failed due to all such ports being in use" (WSAENOBUFS 10055).
Either one in the log is the OS's own word that ports ran out, with a time stamp.

Reading is one `wevtutil qe` (no admin needed for the System log), run only on
Windows; everything else here is a pure parser of its XML, tested with recorded output.
"""

from __future__ import annotations

import ntpath
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PROVIDER = "Tcpip"
EVENT_IDS = (4227, 4231)
WINDOW_HOURS = 24
MAX_EVENTS = 5000  # a flood is summarised as "at least 5000"; reading more costs seconds
RECENT = 5
WEVTUTIL_TIMEOUT_S = 20.0
# wevtutil wraps the events in this element (/e:), so the output is one XML document.
ROOT_ELEMENT = "Events"
QUERY = (f"*[System[Provider[@Name='{PROVIDER}'] and (EventID=4227 or EventID=4231) and "
         f"TimeCreated[timediff(@SystemTime) <= {WINDOW_HOURS * 3600 * 1000}]]]")

MESSAGES: Mapping[int, str] = {
    4227: ("TCP/IP failed to establish an outgoing connection because the selected local endpoint was "
           "recently used to connect to the same remote endpoint."),
    4231: ("A request to allocate an ephemeral port number from the global TCP port space has failed "
           "due to all such ports being in use."),
}


class EventLogError(Exception):
    """The log could not be read or its output not understood (one line)."""


@dataclass(frozen=True)
class TcpipEvent:
    event_id: int
    time: datetime  # UTC, aware
    record_id: int | None = None


@dataclass(frozen=True)
class EventLogSummary:
    """Counts and last times of Tcpip 4227/4231 over the window."""

    count_4227: int
    count_4231: int
    last_4227: datetime | None
    last_4231: datetime | None
    recent: tuple[TcpipEvent, ...]  # newest first, a few
    truncated: bool = False  # MAX_EVENTS reached: the counts are lower bounds
    window_hours: int = WINDOW_HOURS

    @property
    def total(self) -> int:
        return self.count_4227 + self.count_4231

    @property
    def last(self) -> datetime | None:
        times = [t for t in (self.last_4227, self.last_4231) if t is not None]
        return max(times) if times else None

    def to_json(self) -> dict[str, Any]:
        """The report's event_log section (core.report renders any such mapping)."""
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat(timespec="seconds")

        return {
            "source": f"System log, {PROVIDER}",
            "window_hours": self.window_hours,
            "events_4227": self.count_4227,
            "events_4231": self.count_4231,
            "last_4227": iso(self.last_4227),
            "last_4231": iso(self.last_4231),
            "truncated": self.truncated,
            "recent": [{"id": e.event_id, "time": iso(e.time), "message": MESSAGES.get(e.event_id, "")}
                       for e in self.recent],
        }

    def text(self) -> str:
        """One line for the window and the terminal (times in local time)."""
        at_least = "at least " if self.truncated else ""
        head = f"Windows System log, last {self.window_hours} h: "
        if self.total == 0:
            return head + "no Tcpip 4227 or 4231 events (the OS logged no port exhaustion)."
        parts = []
        for event_id, count, last in ((4231, self.count_4231, self.last_4231),
                                      (4227, self.count_4227, self.last_4227)):
            if count:
                when = last.astimezone().strftime("%Y-%m-%d %H:%M:%S") if last else "?"
                parts.append(f"{at_least}{count} x event {event_id}, last at {when}")
        return head + "; ".join(parts) + " (the OS itself logged port exhaustion)."


def parse_system_time(text: str) -> datetime:
    """TimeCreated/@SystemTime, e.g. 2026-11-24T22:14:03.1825567Z (7 or 9 fraction digits,
    more than datetime takes) -> aware UTC datetime."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?", text.strip())
    if not match:
        raise EventLogError(f"unexpected event time {text!r}")
    try:
        stamp = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise EventLogError(f"unexpected event time {text!r}") from None
    fraction = (match[2] or "")[:6].ljust(6, "0")
    return stamp.replace(microsecond=int(fraction))


def parse_events(xml_text: str) -> list[TcpipEvent]:
    """The Tcpip 4227/4231 events in `wevtutil qe /f:xml` output, with or without the
    /e: root element, in the order given. Other providers or IDs are ignored. No output at
    all is an error, not "no events": asked for /e:Events, wevtutil prints that element even
    when nothing matches, so silence means the log was not read (a stub, a crash)."""
    text = xml_text.lstrip("\ufeff").strip()
    if not text:
        raise EventLogError(f"wevtutil printed nothing, not even the <{ROOT_ELEMENT}> element it was "
                            f"asked for: the System log was not read")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise EventLogError("unexpected wevtutil output: a document type declaration")
    if not text.startswith(f"<{ROOT_ELEMENT}"):
        text = f"<{ROOT_ELEMENT}>{text}</{ROOT_ELEMENT}>"
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise EventLogError(f"wevtutil output is not well-formed XML ({exc})") from None
    texts = [root.text or "", *((child.tail or "") for child in root)]
    stray = next((t.strip() for t in texts if t.strip()), "")
    if stray:
        raise EventLogError(f"unexpected text in wevtutil output: {stray.splitlines()[0][:80]!r}")
    events = []
    for element in root:
        if _local(element.tag) != "Event":
            raise EventLogError(f"unexpected element <{_local(element.tag)}> in wevtutil output")
        event = _event(element)
        if event is not None:
            events.append(event)
    return events


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    """The first child with this local name, whatever its namespace."""
    return next((child for child in parent if _local(child.tag) == name), None)


def _event(element: ET.Element) -> TcpipEvent | None:
    system = _child(element, "System")
    if system is None:
        raise EventLogError("an event without a <System> element in wevtutil output")
    provider = _child(system, "Provider")
    if provider is None or provider.get("Name", "").lower() != PROVIDER.lower():
        return None
    id_element = _child(system, "EventID")
    try:
        event_id = int((id_element.text or "") if id_element is not None else "")
    except ValueError:
        raise EventLogError("an event without a numeric <EventID> in wevtutil output") from None
    if event_id not in EVENT_IDS:
        return None
    created = _child(system, "TimeCreated")
    if created is None or not created.get("SystemTime"):
        raise EventLogError(f"event {event_id} without a time in wevtutil output")
    record = _child(system, "EventRecordID")
    record_text = record.text if record is not None and record.text else ""
    record_id = int(record_text) if record_text.isascii() and record_text.isdigit() else None
    return TcpipEvent(event_id, parse_system_time(created.get("SystemTime", "")), record_id)


def summarise(events: Iterable[TcpipEvent], truncated: bool = False) -> EventLogSummary:
    ordered = sorted(events, key=lambda e: e.time, reverse=True)
    by_id = {event_id: [e for e in ordered if e.event_id == event_id] for event_id in EVENT_IDS}
    return EventLogSummary(
        count_4227=len(by_id[4227]), count_4231=len(by_id[4231]),
        last_4227=by_id[4227][0].time if by_id[4227] else None,
        last_4231=by_id[4231][0].time if by_id[4231] else None,
        recent=tuple(ordered[:RECENT]), truncated=truncated)


def parse_summary(xml_text: str, limit: int = MAX_EVENTS) -> EventLogSummary:
    events = parse_events(xml_text)
    return summarise(events, truncated=len(events) >= limit)


# -- the Windows-only runner -------------------------------------------------------------------

def wevtutil_command(limit: int = MAX_EVENTS) -> list[str]:
    # The full path: never pick up a wevtutil.exe from the current directory.
    exe = ntpath.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32", "wevtutil.exe")
    # /rd:true: newest first, so when the count is capped the newest events are the ones kept.
    return [exe, "qe", "System", f"/q:{QUERY}", "/f:xml", "/rd:true", f"/c:{limit}", f"/e:{ROOT_ELEMENT}"]


def decode_output(raw: bytes) -> str:
    """wevtutil's bytes as text: UTF-16 if it says so, else UTF-8 (the XML's numbers and
    times are ASCII in any code page; a replaced character elsewhere does not matter)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    return raw.decode("utf-8", errors="replace")


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


def _run_wevtutil(command: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    if sys.platform != "win32":
        raise EventLogError("wevtutil exists only on Windows")
    # A PyInstaller build passes its DLL folder to child processes: undo that first.
    from core.sources.windows import _forget_bundled_dll_directory

    _forget_bundled_dll_directory()
    return subprocess.run(list(command), capture_output=True, stdin=subprocess.DEVNULL, check=False,
                          timeout=WEVTUTIL_TIMEOUT_S, creationflags=subprocess.CREATE_NO_WINDOW)


def query_summary(run: Runner = _run_wevtutil, limit: int = MAX_EVENTS) -> EventLogSummary:
    """Run the query through `run` and summarise; EventLogError (one line) on failure."""
    try:
        done = run(wevtutil_command(limit))
    except subprocess.TimeoutExpired:
        raise EventLogError(f"wevtutil did not answer within {WEVTUTIL_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise EventLogError(f"wevtutil could not be run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = (decode_output(done.stderr or b"").strip() or decode_output(done.stdout or b"").strip())
        first = said.splitlines()[0].strip() if said else ""
        raise EventLogError(f"wevtutil exited with status {done.returncode}"
                            + (f": {first}" if first else ""))
    return parse_summary(decode_output(done.stdout or b""), limit)


def read_tcpip_summary() -> EventLogSummary | None:
    """The summary on Windows; None elsewhere (there is no such log)."""
    if sys.platform != "win32":
        return None
    return query_summary()


def summary() -> dict[str, Any] | None:
    """For `portpressure report`: the summary as JSON, None where not available."""
    found = read_tcpip_summary()
    return None if found is None else found.to_json()
