"""core.eventlog: the Windows System log summary of Tcpip 4227/4231.

wevtutil cannot run here. The parser is tested on recorded output written in the form
`wevtutil qe System /q:... /f:xml /rd:true /c:N /e:Events` prints (one <Event> per line,
CRLF, single-quoted attributes, 7-digit SystemTime fractions, classic-provider
Qualifiers); the runner's logic (command line, exit status, timeout, decoding) is tested
with an in-memory stand-in for subprocess.run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from core import eventlog
from core.eventlog import (
    EventLogError,
    parse_events,
    parse_summary,
    parse_system_time,
    query_summary,
    wevtutil_command,
)

NS = "http://schemas.microsoft.com/win/2004/08/events/event"


def event(event_id: int, system_time: str, record: int, provider: str = "Tcpip", data: str = "") -> str:
    return (f"<Event xmlns='{NS}'><System><Provider Name='{provider}'/>"
            f"<EventID Qualifiers='32768'>{event_id}</EventID><Version>0</Version><Level>3</Level>"
            f"<Task>0</Task><Opcode>0</Opcode><Keywords>0x80000000000000</Keywords>"
            f"<TimeCreated SystemTime='{system_time}'/><EventRecordID>{record}</EventRecordID>"
            f"<Correlation/><Execution ProcessID='4' ThreadID='{7300 + record % 50}'/>"
            f"<Channel>System</Channel>"
            f"<Computer>APP01.corp.example.com</Computer><Security/></System>"
            f"<EventData>{data}</EventData></Event>")


# Newest first (/rd:true), as the query asks.
SEVERAL = "<Events>\r\n" + "\r\n".join([
    event(4231, "2026-11-25T02:02:11.4817730Z", 981244),
    event(4231, "2026-11-25T02:01:58.0012946Z", 981240),
    event(4227, "2026-11-25T01:59:40.9925313Z", 981231,
          data="<Data>0.0.0.0:50112</Data><Data>10.20.30.40:1433</Data>"),
    event(4231, "2026-11-24T23:45:03.5000000Z", 980967),
    event(4227, "2026-11-24T21:10:00.1000000Z", 980512,
          data="<Data>0.0.0.0:49733</Data><Data>10.20.30.40:1433</Data>"),
]) + "\r\n</Events>\r\n"
EMPTY_WITH_ROOT = "<Events>\r\n</Events>\r\n"


def test_several_events_are_counted_with_the_last_time_of_each() -> None:
    summary = parse_summary(SEVERAL)
    assert (summary.count_4227, summary.count_4231, summary.total) == (2, 3, 5)
    assert summary.last_4231 == datetime(2026, 11, 25, 2, 2, 11, 481773, tzinfo=UTC)
    assert summary.last_4227 == datetime(2026, 11, 25, 1, 59, 40, 992531, tzinfo=UTC)
    assert summary.last == summary.last_4231
    assert [e.event_id for e in summary.recent] == [4231, 4231, 4227, 4231, 4227]
    assert summary.recent[0].record_id == 981244
    assert summary.truncated is False


def test_order_of_the_output_does_not_matter() -> None:
    lines = SEVERAL.splitlines()
    shuffled = "\r\n".join([lines[0], *reversed(lines[1:-1]), lines[-1]])
    assert parse_summary(shuffled) == parse_summary(SEVERAL)


@pytest.mark.parametrize("output", [EMPTY_WITH_ROOT, "<Events/>", "\ufeff<Events></Events>"])
def test_zero_events(output: str) -> None:
    summary = parse_summary(output)
    assert (summary.count_4227, summary.count_4231, summary.last, summary.recent) == (0, 0, None, ())
    assert "no Tcpip 4227 or 4231 events" in summary.text()


def test_output_without_the_root_element_is_read_too() -> None:
    bare = event(4227, "2026-11-25T01:59:40.9925313Z", 1) + event(4231, "2026-11-25T02:00:00.0000000Z", 2)
    assert [e.event_id for e in parse_events(bare)] == [4227, 4231]


def test_other_providers_and_ids_are_not_counted() -> None:
    mixed = "<Events>" + event(4227, "2026-11-25T01:00:00.0Z", 1) + event(
        4227, "2026-11-25T01:00:00.0Z", 2, provider="Microsoft-Windows-Kernel-General") + event(
        4266, "2026-11-25T01:00:00.0Z", 3) + "</Events>"
    assert [e.record_id for e in parse_events(mixed)] == [1]


@pytest.mark.parametrize(("output", "says"), [
    (SEVERAL[: len(SEVERAL) // 2], "not well-formed XML"),
    ("Failed to query events. The specified query is invalid.", "unexpected text"),
    ("<Events>" + event(4231, "2026-11-25T01:00:00.0Z", 1) + "Warning: truncated</Events>",
     "unexpected text"),
    ("<Events><Event xmlns='x'><System><Provider Name='Tcpip'/><EventID>4231</EventID></System></Event>"
     "</Events>",
     "without a time"),
    ("<Events><Event><System><Provider Name='Tcpip'/><EventID>x</EventID></System></Event></Events>",
     "numeric <EventID>"),
    ("<Events><Event/></Events>", "without a <System>"),
    ("<Events><Record/></Events>", "unexpected element <Record>"),
    ("<!DOCTYPE x [<!ENTITY a 'b'>]><Events/>", "document type"),
    ("<Events>" + event(4231, "yesterday", 1) + "</Events>", "unexpected event time"),
    ("<Events>" + event(4231, "2026-13-45T99:00:00.0Z", 1) + "</Events>", "unexpected event time"),
])
def test_malformed_output_is_one_clear_error(output: str, says: str) -> None:
    with pytest.raises(EventLogError) as caught:
        parse_summary(output)
    assert says in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_system_time_with_nine_fraction_digits_or_none() -> None:
    assert parse_system_time("2026-11-25T02:02:11.481773012Z").microsecond == 481773
    assert parse_system_time("2026-11-25T02:02:11Z") == datetime(2026, 11, 25, 2, 2, 11, tzinfo=UTC)


def test_json_is_the_report_event_log_section() -> None:
    obj = parse_summary(SEVERAL).to_json()
    assert obj["source"] == "System log, Tcpip" and obj["window_hours"] == 24
    assert (obj["events_4227"], obj["events_4231"]) == (2, 3)
    assert obj["last_4231"] == "2026-11-25T02:02:11+00:00"
    assert obj["recent"][0] == {"id": 4231, "time": "2026-11-25T02:02:11+00:00",
                                "message": eventlog.MESSAGES[4231]}
    text = parse_summary(SEVERAL).text()
    assert "3 x event 4231" in text and "2 x event 4227" in text and "last 24 h" in text


# -- the runner, with a stand-in for subprocess.run ---------------------------------------------

class FakeRun:
    def __init__(self, stdout: bytes = b"", stderr: bytes = b"", returncode: int = 0,
                 raises: BaseException | None = None) -> None:
        self.result = subprocess.CompletedProcess([], returncode, stdout, stderr)
        self.raises = raises
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
        self.commands.append(list(command))
        if self.raises is not None:
            raise self.raises
        return self.result


def test_the_command_line_is_the_documented_query() -> None:
    command = wevtutil_command(5000)
    assert command[0].lower().endswith("\\system32\\wevtutil.exe")
    assert command[1:3] == ["qe", "System"]
    assert command[3] == ("/q:*[System[Provider[@Name='Tcpip'] and (EventID=4227 or EventID=4231) and "
                          "TimeCreated[timediff(@SystemTime) <= 86400000]]]")
    assert command[4:] == ["/f:xml", "/rd:true", "/c:5000", "/e:Events"]


def test_query_summary_parses_what_wevtutil_printed() -> None:
    run = FakeRun(stdout=SEVERAL.encode())
    summary = query_summary(run)
    assert summary.count_4231 == 3 and run.commands == [wevtutil_command()]


def test_a_capped_query_says_the_counts_are_lower_bounds() -> None:
    summary = query_summary(FakeRun(stdout=SEVERAL.encode()), limit=5)
    assert summary.truncated and "at least 3 x event 4231" in summary.text()


def test_utf16_output_is_decoded() -> None:
    summary = query_summary(FakeRun(stdout=SEVERAL.encode("utf-16")))
    assert summary.total == 5


@pytest.mark.parametrize(("run", "says"), [
    (FakeRun(returncode=15007,
             stderr=b"Failed to query events. The specified channel could not be found.\r\n"),
     "wevtutil exited with status 15007: Failed to query events. The specified channel could not be found."),
    (FakeRun(returncode=5, stdout=b"Access is denied.\r\n"), "status 5: Access is denied."),
    (FakeRun(returncode=1), "wevtutil exited with status 1"),
    (FakeRun(raises=subprocess.TimeoutExpired("wevtutil", 20)), "did not answer within 20 s"),
    (FakeRun(raises=FileNotFoundError(2, "The system cannot find the file specified")),
     "could not be run: The system cannot find the file specified"),
    (FakeRun(stdout=b"<Events><Event"), "not well-formed"),
    # Exit 0 and not a byte (Wine's wevtutil stub): the log was not read, which is not "no events".
    (FakeRun(stdout=b""), "wevtutil printed nothing, not even the <Events> element"),
    (FakeRun(stdout=b"\xff\xfe\r\x00\n\x00"), "the System log was not read"),
])
def test_runner_failures_are_one_line(run: FakeRun, says: str) -> None:
    with pytest.raises(EventLogError) as caught:
        query_summary(run)
    assert str(caught.value).startswith(says) or says in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows answer")
def test_not_available_off_windows() -> None:
    assert eventlog.read_tcpip_summary() is None
    assert eventlog.summary() is None
