"""The evidence bundle: a self-contained HTML page that holds the figures of the real
sample it was made from, the same data as JSON, the history as CSV, and no half-written
folder when the target is bad."""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import json
import os
import random
import struct
import zlib
from datetime import datetime
from html.parser import HTMLParser

import numpy as np
import pytest

from core.history import SERIES_NAMES, History
from core.model import STATE_NAMES, PortConfig, ProcessRow, Sample
from core.report import PLOT_POINTS, Evidence, ReportError, history_svg, write_bundle
from tests.support.netns import netns_unavailable_reason
from tests.test_recording import real_samples, tmpfs
from tests.test_watch_cli import check_contract

PROBES = ({"host": "127.0.0.1", "port": 9000, "ok": False, "phase": "connect", "elapsed_ms": 0.1, "errno": 99,
           "error": "[Errno 99] Cannot assign requested address", "category": "ports_exhausted",
           "diagnosis": "No local port was free for this destination."},)
SETTINGS = ({"name": "net.ipv4.ip_local_port_range", "value": "40000 40999", "effective": "40000 40999",
             "default": "32768 60999", "unit": "ports", "range": None, "needs_reboot": False,
             "writable": True, "why_not": None},)
EVENT_LOG = {"source": "System log, Tcpip", "events_4227": 3, "events_4231": 12,
             "recent": [{"id": 4231, "time": "2026-11-25T03:02:11+01:00",
                         "message": "A request to allocate an ephemeral port number from the global TCP port "
                                    "space has failed due to all such ports being in use."}]}


def png(width: int = 2, height: int = 2, noise: int = 0) -> bytes:
    """A valid PNG (optionally with `noise` incompressible bytes in a private chunk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    extra = chunk(b"tEXt", b"noise\x00" + random.Random(1).randbytes(noise).hex().encode()) if noise else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    if (reason := netns_unavailable_reason()) is not None:
        pytest.skip(reason)
    return real_samples()


@pytest.fixture
def evidence(samples) -> Evidence:
    history = History(len(samples))
    for s in samples:
        history.append(s)
    return Evidence(sample=samples[-1], history=history.snapshot(), probe_results=PROBES, settings=SETTINGS,
                    event_log=EVENT_LOG, plot_png=png(3, 3), window_png=png(4, 2), host="srv-01.example",
                    port_config=PortConfig("Linux", (40000, 40999), tw_reuse=0), source="netlink sock_diag",
                    privileged=True, notes=("made in a test",))


class Page(HTMLParser):
    """Everything a browser would look at: tags with their attributes, visible text,
    table rows, style sheets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.styles: list[str] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data):
        if self._stack and self._stack[-1] == "style":
            self.styles.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def row(self, first: str) -> list[str]:
        return next(r for r in self.rows if r and r[0] == first)


def parse(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    page.close()
    return page


def assert_self_contained(page: Page) -> None:
    """No attribute of any tag points outside the page: only data: URIs and #fragments."""
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base", "meta") or \
            (tag == "meta" and set(attrs) == {"charset"}), tag
        for name, value in attrs.items():
            value = (value or "").strip().lower()
            if name in ("src", "href", "srcset", "action", "data", "poster", "xlink:href", "background",
                        "formaction", "xmlns", "cite", "manifest"):
                assert value.startswith(("data:", "#")), (tag, name, value[:80])
            assert "url(" not in value and "//" not in value, (tag, name, value[:80])
    for css in page.styles:
        assert "url(" not in css and "@import" not in css


def test_html_holds_the_figures_of_its_sample_and_nothing_outside_itself(evidence, tmp_path):
    folder = write_bundle(tmp_path, evidence)
    page = parse((folder / "report.html").read_text(encoding="utf-8"))
    assert_self_contained(page)
    s = evidence.sample
    text = page.all_text
    for needle in (evidence.host, evidence.version, evidence.created, s.time_iso, s.verdict.title,
                   *s.verdict.reasons, evidence.os_name, "netlink sock_diag", "made in a test"):
        assert " ".join(needle.split()) in text, needle
    for name in STATE_NAMES:
        assert page.row(name)[1] == f"{s.states[name]:,}"
    assert s.processes and s.remotes and s.states["TIME_WAIT"] > 0
    for p in s.processes[:20]:
        row = page.row(str(p.pid))
        assert row[1:4] == [p.name, f"{p.connections:,}",
                            f"{p.time_wait:,} ({p.time_wait_exact:,} + {p.time_wait_inferred:,})"]
    for r in s.remotes[:20]:
        assert [r.address, str(r.port), f"{r.connections:,}", f"{r.time_wait:,}"] in page.rows
    assert page.row("Dynamic port range")[1] == f"{s.ports.range[0]}-{s.ports.range[1]}"
    assert page.row("Capacity (usable ports per pool)")[1] == f"{s.ports.capacity:,}"
    assert page.row("Ports held in it")[1] == f"{s.ports.in_use:,}"
    assert page.row("Busiest pool")[1] == s.ports.pool
    assert page.row("TIME_WAIT lasts (seconds)")[1] == f"{s.time_wait_seconds:g}"
    assert page.row("net.ipv4.ip_local_port_range")[1:3] == ["40000 40999 ports", "32768 60999"]
    probe_row = page.row("127.0.0.1:9000")
    assert probe_row == ["127.0.0.1:9000", "failed at connect", "0.1", PROBES[0]["error"], "ports exhausted",
                         PROBES[0]["diagnosis"]]
    assert page.row("Events 4231")[1] == "12"
    assert EVENT_LOG["recent"][0]["message"] in text
    # Both images embedded, byte for byte; the history drawn inline.
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert sorted(base64.b64decode(src.split(",", 1)[1]) for src in images) == \
        sorted([evidence.plot_png, evidence.window_png])
    assert [t for t, _ in page.tags].count("polyline") >= 1
    assert (folder / "window.png").read_bytes() == evidence.window_png


def test_everything_is_escaped(evidence, tmp_path):
    hostile = "<script>alert('x')</script>&\"<img src=http://evil/>"
    sample = evidence.sample
    process = ProcessRow(4242, hostile, 1, 5, 5, 0, 1.0, {"TIME_WAIT": 5})
    evil = dataclasses.replace(evidence, host=hostile, notes=(hostile,), sample=dataclasses.replace(
        sample, processes=(process,) + tuple(sample.processes),
        verdict=dataclasses.replace(sample.verdict, title=hostile, reasons=(hostile,))))
    folder = write_bundle(tmp_path, evil)
    page = parse((folder / "report.html").read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert not any(tag == "script" for tag, _ in page.tags)
    assert page.row("4242")[1] == hostile
    assert hostile in page.text
    assert folder.name.startswith("portpressure-script_alert_x_")  # safe folder name


def test_json_carries_the_contract_and_the_csv_the_series(evidence, samples, tmp_path):
    folder = write_bundle(tmp_path, evidence)
    report = json.loads((folder / "report.json").read_text())
    check_contract(report["sample"])
    assert {k: report["sample"][k] for k in evidence.sample.to_json()} == \
        json.loads(json.dumps(evidence.sample.to_json()))
    assert report["host"] == evidence.host and report["version"] == evidence.version
    assert report["settings"] == list(SETTINGS) and report["probe_results"] == list(PROBES)
    assert report["event_log"] == EVENT_LOG
    assert report["port_config"]["dynamic_range"] == [40000, 40999]
    assert report["history"]["rows"] == len(samples)
    with open(folder / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", "unix_time", *SERIES_NAMES]
    assert len(rows) == len(samples) + 1
    for row, sample in zip(rows[1:], samples, strict=True):
        assert datetime.fromisoformat(row[0]).timestamp() == pytest.approx(sample.timestamp, abs=0.001)
        assert datetime.fromisoformat(row[0]).utcoffset() is not None
        assert float(row[1]) == pytest.approx(sample.timestamp, abs=0.001)
        assert int(row[2 + SERIES_NAMES.index("TIME_WAIT")]) == sample.states["TIME_WAIT"]
    assert sorted(p.name for p in folder.iterdir()) == \
        ["history.csv", "plot.png", "report.html", "report.json", "window.png"]


def test_without_history_or_images_the_bundle_is_still_complete(samples, tmp_path):
    evidence = Evidence(sample=samples[0], host="bare")
    folder = write_bundle(tmp_path, evidence)
    assert sorted(p.name for p in folder.iterdir()) == ["history.csv", "report.html", "report.json"]
    assert len((folder / "history.csv").read_text().splitlines()) == 2
    page = parse((folder / "report.html").read_text())
    assert_self_contained(page)
    assert not any(tag == "img" for tag, _ in page.tags)
    # Two reports in the same second do not collide.
    second = write_bundle(tmp_path, evidence)
    assert second != folder and second.name == folder.name + "-2"


def test_the_chart_keeps_a_one_second_spike_in_a_day(samples):
    history = History()
    base = samples[-1]
    values = np.zeros(len(SERIES_NAMES))
    tw, est = SERIES_NAMES.index("TIME_WAIT"), SERIES_NAMES.index("ESTABLISHED")
    spike_at = 52_345
    for i in range(history.capacity):
        values[tw] = 20_000 if i == spike_at else 100 + i % 7
        values[est] = 50
        history.append_row(base.timestamp + i, values)
    svg = parse(history_svg(history.snapshot()))
    curves = {}
    for tag, attrs in svg.tags:
        if tag == "polyline":
            curves[len(curves)] = [tuple(map(float, p.split(","))) for p in (attrs["points"] or "").split()]
    assert "TIME_WAIT" in svg.all_text and "ESTABLISHED" in svg.all_text
    tw_points = curves[0]
    assert len(tw_points) <= PLOT_POINTS + 1
    ys = [y for _, y in tw_points]
    assert min(ys) < 40  # the spike reaches the top of the chart
    assert sorted(ys)[len(ys) // 2] > 250  # the rest sits near the bottom


# -- bad folders: a clear error, never a half-written bundle -----------------------------------------

def test_missing_folder_and_a_file_are_one_line_errors(evidence, tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        write_bundle(tmp_path / "missing", evidence)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(ReportError, match="is not a folder"):
        write_bundle(afile, evidence)


@pytest.fixture
def mounts(tmp_path):
    with contextlib.ExitStack() as stack:
        yield lambda name, options: stack.enter_context(tmpfs(tmp_path / name, options))


def test_read_only_folder_is_an_error_and_nothing_is_left(evidence, mounts):
    # Root ignores permission bits, so the folder is made unwritable for real: read-only.
    folder = mounts("ro", "ro,size=64k")
    with pytest.raises(ReportError, match="cannot write") as info:
        write_bundle(folder, evidence)
    assert "\n" not in str(info.value)
    assert os.listdir(folder) == []


def test_disk_full_mid_bundle_leaves_no_partial_folder(evidence, mounts):
    folder = mounts("small", "size=64k")
    big = dataclasses.replace(evidence, window_png=png(noise=100_000))
    with pytest.raises(ReportError, match="disk|space|cannot write") as info:
        write_bundle(folder, big)
    assert "\n" not in str(info.value)
    assert os.listdir(folder) == []
    # With room, the same folder takes a bundle.
    assert write_bundle(folder, evidence).is_dir()
