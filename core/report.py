"""The evidence bundle for a support ticket, shared by `portpressure report` and the
window's Save evidence: one folder named after the host and the time, holding

  report.html   self-contained: opens offline in any browser, images embedded as data:
                URIs, the history drawn as inline SVG, nothing fetched from anywhere; fits
                a 1024 px window and prints on a few A4 pages; headings in words, port
                ranges as 40000-40199, the events of the session as a timeline
  report.json   the same data; "sample" carries every `watch --json` contract key
  history.csv   the recent series: time (ISO-8601), unix_time, then core.history's columns
  window.png / plot.png   the window's images, when the window supplied them

The folder is written under a temporary name beside the target and renamed when
complete, so a failure never leaves a half-written bundle behind.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import platform
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__
from core.history import History, HistorySnapshot
from core.model import STATE_NAMES, PortConfig, Sample
from core.recording import port_config_json, record_json

REPORT_FORMAT = 1
TOP_ROWS = 20
PLOT_POINTS = 800  # per curve in the SVG; peaks survive the thinning (bucket maxima)
LEVEL_COLOURS = {"ok": ("#e3f4e1", "#1b5e20"), "warning": ("#fff3cd", "#7a4f00"),
                 "critical": ("#fde0dc", "#9b1c1c")}
# The window's curve colours (gui/style.py), so the report reads like the screen.
PLOT_CURVES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("TIME_WAIT", ("TIME_WAIT",), "#d62728"),
    ("ESTABLISHED", ("ESTABLISHED",), "#1f77b4"),
    ("CLOSE_WAIT", ("CLOSE_WAIT",), "#ff7f0e"),
    ("SYN_SENT", ("SYN_SENT",), "#9467bd"),
    ("FIN_WAIT 1+2", ("FIN_WAIT1", "FIN_WAIT2"), "#8c564b"),
    ("ports held (busiest pool)", ("in_use",), "#2ca02c"),
)
CAPACITY_COLOUR = "#b71c1c"
SHOW_CAPACITY_SHARE = 0.25  # draw the limit once usage is a visible share of it
SHORT_CELL_CHARS = 26  # an ISO time with its offset fits
LEGEND_CHAR_PX = 6.5  # an 11 px sans-serif character, generously
LEGEND_LINE_PX = 16


class ReportError(Exception):
    """The bundle could not be written; the message is one line for the user."""


@dataclass(frozen=True)
class Evidence:
    """Everything one bundle shows, frozen at the moment it was asked for."""

    sample: Sample
    history: HistorySnapshot | None = None
    probe_results: tuple[Mapping[str, Any], ...] = ()  # `probe --json` objects
    settings: tuple[Mapping[str, Any], ...] = ()  # `tune show --json` objects
    event_log: Mapping[str, Any] | None = None  # Windows Tcpip 4227/4231 summary
    plot_png: bytes | None = None
    window_png: bytes | None = None
    host: str = field(default_factory=socket.gethostname)
    os_name: str = field(default_factory=platform.platform)
    version: str = __version__
    created: str = field(default_factory=lambda: datetime.now().astimezone().isoformat(timespec="seconds"))
    port_config: PortConfig | None = None
    source: str = ""  # which reader took the sample
    privileged: bool | None = None
    notes: tuple[str, ...] = ()  # e.g. "replayed from recording X", "reboot pending"
    # The session's timeline (`events` objects of the samples, DESIGN's contract); the
    # sample's own events are added when the report is made.
    events: tuple[Mapping[str, Any], ...] = ()


def safe_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", host).strip("._") or "host"


def bundle_name(evidence: Evidence) -> str:
    try:
        moment = datetime.fromisoformat(evidence.created)
    except ValueError:
        moment = datetime.now()
    return f"portpressure-{safe_host(evidence.host)}-{moment.strftime('%Y%m%d-%H%M%S')}"


def history_of(evidence: Evidence) -> HistorySnapshot:
    """The evidence's history, or a one-row history of its sample."""
    if evidence.history is not None and len(evidence.history):
        return evidence.history
    single = History(1)
    single.append(evidence.sample)
    return single.snapshot()


# -- report.json ----------------------------------------------------------------------

def report_json(evidence: Evidence) -> dict[str, Any]:
    history = history_of(evidence)
    return {
        "portpressure_report": REPORT_FORMAT,
        "version": evidence.version,
        "host": evidence.host,
        "os": evidence.os_name,
        "created": evidence.created,
        "source": evidence.source,
        "privileged": evidence.privileged,
        "sample": record_json(evidence.sample, top=None),
        "port_config": None if evidence.port_config is None else port_config_json(evidence.port_config),
        "settings": [dict(s) for s in evidence.settings],
        "probe_results": [dict(r) for r in evidence.probe_results],
        "event_log": None if evidence.event_log is None else dict(evidence.event_log),
        "history": {"rows": len(history), "file": "history.csv",
                    "start": _iso(float(history.times[0])), "end": _iso(float(history.times[-1]))},
        "notes": list(evidence.notes),
        "events": [dict(e) for e in timeline(evidence)],
        "images": [name for name, data in _images(evidence) if data],
    }


def _images(evidence: Evidence) -> tuple[tuple[str, bytes | None], ...]:
    return (("window.png", evidence.window_png), ("plot.png", evidence.plot_png))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


# -- the chart --------------------------------------------------------------------------

def _thin(times: np.ndarray, columns: list[np.ndarray], points: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """At most `points` per curve, each the maximum of its bucket (a spike stays visible)."""
    n = len(times)
    if n <= points:
        return times, columns
    size = math.ceil(n / points)
    pad = size * math.ceil(n / size) - n
    thinned = []
    for col in columns:
        padded = np.concatenate([col, np.full(pad, col[-1])]) if pad else col
        thinned.append(padded.reshape(-1, size).max(axis=1))
    return times[::size], thinned


def _series(snapshot: HistorySnapshot, names: tuple[str, ...]) -> np.ndarray:
    total = np.zeros(len(snapshot), dtype=np.float64)
    for name in names:
        total += snapshot.series(name)
    return total


def history_svg(snapshot: HistorySnapshot, width: int = 900, height: int = 320) -> str:
    """The state curves over time as inline SVG (no script, no external reference)."""
    left, right, top, bottom = 70, 20, 15, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    curves = [(label, colour, _series(snapshot, names)) for label, names, colour in PLOT_CURVES]
    curves = [c for c in curves if np.any(c[2] > 0)]
    capacity = float(np.max(snapshot.series("capacity"))) if len(snapshot) else 0.0
    peak = max([float(np.max(c[2])) for c in curves], default=0.0)
    show_capacity = capacity > 0 and peak >= SHOW_CAPACITY_SHARE * capacity
    y_max = max(peak, capacity if show_capacity else 0.0, 1.0) * 1.05
    times, thinned = _thin(snapshot.times, [c[2] for c in curves], PLOT_POINTS)
    t0, t1 = float(times[0]), float(times[-1])
    span = t1 - t0

    def x(t: float) -> float:
        return left + (plot_w * (t - t0) / span if span > 0 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    # No xmlns: inline in HTML the parser puts <svg> in its namespace, and the page
    # then holds no URL at all.
    parts = [f'<svg width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Socket states over time">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#90a4ae"/>']
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = y_max / 1.05 * fraction
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     'stroke="#eceff1"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11">'
                     f'{value:,.0f}</text>')
    fmt = "%H:%M:%S" if span < 86_400 else "%m-%d %H:%M"
    for t, anchor in ((t0, "start"), (t1, "end")):
        label = datetime.fromtimestamp(t).astimezone().strftime(fmt)
        parts.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" font-size="11">'
                     f'{html.escape(label)}</text>')
    if show_capacity:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(capacity):.1f}" y2="{y(capacity):.1f}" '
                     f'stroke="{CAPACITY_COLOUR}" stroke-dasharray="6 4"/>')
    for (label, colour, _), values in zip(curves, thinned, strict=True):
        points = " ".join(f"{x(t):.1f},{y(v):.1f}"
                          for t, v in zip(times.tolist(), values.tolist(), strict=True))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                     f'<title>{html.escape(label)}</title></polyline>')
    legend = [(label, colour) for label, colour, _ in curves]
    if capacity > 0:
        legend.append((f"capacity of the busiest pool: {capacity:,.0f}"
                       + ("" if show_capacity else " (off the chart)"), CAPACITY_COLOUR))
    # Entries flow left to right and wrap: none is cut at the chart's edge.
    lx, ly = float(left), height - 9
    for label, colour in legend:
        entry = 24 + LEGEND_CHAR_PX * len(label)
        if lx + entry > width and lx > left:
            lx, ly = float(left), ly + LEGEND_LINE_PX
        parts.append(f'<rect x="{lx:.0f}" y="{ly - 5}" width="12" height="4" fill="{colour}"/>'
                     f'<text x="{lx + 16:.0f}" y="{ly}" font-size="11">{html.escape(label)}</text>')
        lx += entry
    total_height = ly + 6
    parts[0] = (f'<svg width="{width}" height="{total_height}" viewBox="0 0 {width} {total_height}" '
                'role="img" aria-label="Socket states over time">')
    parts.append("</svg>")
    return "".join(parts)


# -- report.html ------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _td(value: Any) -> str:
    """A cell; a short one (a number, a pid, a time) never breaks, a long one (a pool, an
    error, a command line) may break anywhere rather than widen the page."""
    text = _cell(value)
    css = "num" if _numeric(value) else "short" if len(text) <= SHORT_CELL_CHARS else ""
    return f"<td class='{css}'>{html.escape(text)}</td>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    if not rows:
        return "<p class='empty'>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_cell(v))}</td></tr>" for k, v in rows)
    return f"<table class='pairs'><tbody>{body}</tbody></table>"


# Column headings for the keys of `probe --json`, `tune show --json` and the event log:
# words for a ticket reader, not the JSON's keys.
HEADINGS = {
    "host": "Host", "port": "Port", "target": "Target", "ok": "Connected", "phase": "Failed at",
    "elapsed_ms": "Took (ms)", "errno": "Error number", "error": "Error", "category": "Kind of problem",
    "diagnosis": "What it means",
    "name": "Setting", "value": "Configured", "effective": "In effect", "default": "Default",
    "unit": "Unit", "range": "Allowed values", "needs_reboot": "Needs a reboot",
    "writable": "Can be changed here", "why_not": "Why not",
    "id": "Event", "time": "Time", "message": "Message", "source": "Source",
}


def heading(key: str) -> str:
    """ "elapsed_ms" -> "Took (ms)"; an unknown key "events_4231" -> "Events 4231"."""
    known = HEADINGS.get(key)
    if known:
        return known
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def port_range(value: Any) -> Any:
    """[40000, 40199] -> "40000-40199" (a range is two port numbers, not a list of amounts)."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(_numeric(v) for v in value):
        return f"{value[0]}-{value[1]}"
    return value


def _records(records: Sequence[Mapping[str, Any]]) -> str:
    """A table of dicts whose keys are not known here (the event log's recent events)."""
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    # Whole numbers here are ports, pids, errnos and ids: no thousands separators.
    return _table([heading(k) for k in keys], [[_plain(port_range(record.get(k))) for k in keys]
                                               for record in records])


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _words(value: Any) -> str:
    """ "ports_exhausted" -> "ports exhausted"."""
    return "-" if value in (None, "") else str(value).replace("_", " ")


PROBE_KEYS = ("host", "port", "ok", "phase", "elapsed_ms", "errno", "error", "category", "diagnosis")


def probe_table(results: Sequence[Mapping[str, Any]]) -> str:
    """`probe --json` objects as a table of five columns (target and error folded)."""
    rows = []
    for r in results:
        target = f"{r.get('host', '?')}:{r.get('port', '?')}"
        connected = r.get("ok")
        outcome = "connected" if connected else f"failed at {_words(r.get('phase'))}"
        error = str(r.get("error") or "")
        errno = r.get("errno")
        if errno is not None and str(errno) not in error:
            error = f"{error} (error {errno})".strip()
        extra = "; ".join(f"{heading(k)}: {_cell(v)}" for k, v in r.items() if k not in PROBE_KEYS)
        took = r.get("elapsed_ms")
        diagnosis = str(r.get("diagnosis") or "") + (f" ({extra})" if extra else "")
        rows.append([target, outcome, "-" if took is None else f"{float(took):,.1f}", error or "-",
                     _words(r.get("category")), diagnosis])
    return _table(["Target", "Result", "Took (ms)", "Error", "Kind of problem", "What it means"], rows,
                  "probes")


def settings_table(settings: Sequence[Mapping[str, Any]]) -> str:
    """`tune show --json` objects: what is in effect, what is configured (when it differs:
    a reboot pending), the default and the allowed values, in five columns."""
    rows = []
    for item in settings:
        effective, value = port_range(item.get("effective")), port_range(item.get("value"))
        unit = f" {item['unit']}" if item.get("unit") else ""
        now = f"{_cell(_plain(effective))}{unit}"
        if value != effective:
            now += f" (configured: {_cell(_plain(value))}"
            now += ", after a reboot)" if item.get("needs_reboot") else ")"
        notes = []
        if item.get("needs_reboot"):
            notes.append("a change needs a reboot")
        if item.get("writable") is False:
            notes.append(f"cannot be changed here: {item.get('why_not') or 'not writable'}")
        rows.append([str(item.get("name", "?")), now, _cell(_plain(port_range(item.get("default")))),
                     _cell(_plain(port_range(item.get("range")))), "; ".join(notes) or "-"])
    return _table(["Setting", "In effect", "Default", "Allowed values", "Notes"], rows, "settings")


def sample_events(sample: Sample) -> tuple[Mapping[str, Any], ...]:
    """The sample's `events` (DESIGN's contract addition) as JSON objects."""
    return tuple(event.to_json() for event in sample.events)


def timeline(evidence: Evidence) -> list[Mapping[str, Any]]:
    """The evidence's events and its sample's own, once each, oldest first."""
    seen: set[str] = set()
    merged = []
    for event in (*evidence.events, *sample_events(evidence.sample)):
        key = json.dumps(event, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            merged.append(event)
    return sorted(merged, key=lambda e: str(e.get("time", "")))


EVENT_KINDS = {"setting": "Setting changed", "probe": "Outbound test", "note": "Note"}


def _event_details(event: Mapping[str, Any]) -> str:
    kind = event.get("kind")
    if kind == "setting" and "name" in event:
        old, new = (_cell(port_range(event.get(k))) for k in ("old", "new"))
        return f"{event['name']}: {old} -> {new}"
    if kind == "probe" and "target" in event:
        result = "connected" if event.get("ok") else f"failed ({_words(event.get('category'))})"
        return f"{event['target']}: {result}"
    return ""


def events_table(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return "<p class='empty'>No settings changed, outbound tests or notes during this session.</p>"
    rows = [[str(e.get("time", "?")), EVENT_KINDS.get(str(e.get("kind")), _words(e.get("kind"))),
             str(e.get("text", "")), _event_details(e) or "-"] for e in events]
    return _table(["Time", "What", "What happened", "Details"], rows, "events")


def _event_log_html(event_log: Mapping[str, Any]) -> str:
    scalars = [(heading(str(k)), v) for k, v in event_log.items() if not isinstance(v, list | tuple)]
    parts = [_pairs(scalars)] if scalars else []
    for key, value in event_log.items():
        if isinstance(value, list | tuple) and value:
            parts.append(f"<h3>{html.escape(heading(str(key)))}</h3>")
            if all(isinstance(v, Mapping) for v in value):
                parts.append(_records(value))
            else:
                parts.append("<ul>" + "".join(f"<li>{html.escape(_cell(v))}</li>" for v in value) + "</ul>")
    return "".join(parts) or "<p class='empty'>No events.</p>"


def _image(title: str, png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f"<section class='picture'><h2>{html.escape(title)}</h2>"
            f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></section>")


STATE_MEANINGS = {
    "ESTABLISHED": "open connections",
    "SYN_SENT": "this host is connecting (waiting for the peer's answer)",
    "SYN_RECV": "a peer is connecting to this host",
    "FIN_WAIT1": "this host closed first; waiting for the peer",
    "FIN_WAIT2": "this host closed first; the peer has not closed yet",
    "TIME_WAIT": "closed by this host first; the local port stays held until TIME_WAIT ends",
    "CLOSE_WAIT": "the peer closed; the application here has not (many: a socket leak)",
    "CLOSING": "both sides closed at once",
    "LAST_ACK": "the peer closed, then this host; waiting for the last acknowledgement",
    "LISTEN": "waiting for incoming connections (never uses a dynamic port)",
    "BOUND": "bound to a port, not yet connected or listening",
}

# Fits a 1024 px window and an A4 page: long words (pool names, command lines) wrap
# inside their cell instead of widening the page; the chart and pictures scale down.
STYLE = """
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 1.5em auto; padding: 0 1em;
       max-width: 70em; color: #212121; line-height: 1.35; }
h1 { margin-bottom: 0.2em; font-size: 1.6em; } h2 { margin-top: 1.4em; border-bottom: 1px solid #cfd8dc; }
.meta { color: #546e7a; }
.verdict { border: 2px solid; border-radius: 6px; padding: 0.5em 1em; }
.level { color: #fff; border-radius: 4px; padding: 2px 8px; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0; max-width: 100%; }
th, td { border: 1px solid #cfd8dc; padding: 3px 8px; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; } td.num, td.short { white-space: nowrap; }
thead th { background: #eceff1; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.pairs th { background: #f5f7f8; font-weight: normal; }
svg { max-width: 100%; height: auto; display: block; }
img { max-width: 100%; height: auto; border: 1px solid #cfd8dc; } .empty { color: #78909c; }
@page { size: A4; margin: 12mm 10mm; }
@media print {
  body { margin: 0; padding: 0; max-width: none; font-size: 9.5pt; }
  h2 { break-after: avoid; } tr, .verdict, svg { break-inside: avoid; }
  section.picture { break-before: page; } section.picture img { max-height: 240mm; width: auto; }
}
"""


def report_html(evidence: Evidence) -> str:
    s = evidence.sample
    background, text = LEVEL_COLOURS.get(s.verdict.level, ("#eceff1", "#37474f"))
    esc = html.escape
    history = history_of(evidence)
    ports = s.ports
    eta = s.forecast.seconds_to_exhaustion
    config = evidence.port_config
    no_pool = not ports.pools and ports.in_use == 0
    sections = [
        f"<h1>PortPressure evidence: {esc(evidence.host)}</h1>",
        f"<p class='meta'>Host {esc(evidence.host)} &middot; {esc(evidence.os_name)} &middot; report made "
        f"{esc(evidence.created)} by PortPressure {esc(evidence.version)} &middot; sample taken "
        f"{esc(s.time_iso)}</p>",
        f"<div class='verdict' style='border-color:{text};background:{background}'>"
        f"<span class='level' style='background:{text}'>{esc(s.verdict.level.upper())}</span> "
        f"<b>{esc(s.verdict.title)}</b><ul>"
        + "".join(f"<li>{esc(r)}</li>" for r in s.verdict.reasons) + "</ul></div>",
        f"<h2>Socket states over time</h2><p class='meta'>{len(history):,} samples, "
        f"{esc(_iso(float(history.times[0])))} to {esc(_iso(float(history.times[-1])))}</p>"
        + history_svg(history),
        "<h2>Ports</h2>" + _pairs([
            ("Dynamic port range", port_range(ports.range)),
            ("Capacity (usable ports per pool)", ports.capacity),
            ("Busiest pool", "none: no outbound connections" if no_pool else ports.pool),
            ("Ports held in it", ports.in_use),
            ("Pressure", f"{ports.pressure:.1%}"),
            ("New outbound connections per second", s.rates.active_opens_per_s),
            ("Accepted connections per second", s.rates.passive_opens_per_s),
            ("Failed connection attempts per second", s.rates.attempt_fails_per_s),
            ("TIME_WAIT expected at this rate", s.forecast.steady_state_time_wait),
            ("Seconds until the pool runs out", "-" if eta is None else f"{eta:.0f}"),
        ]) + (_table(["Pool (local address -> destination)", "Capacity", "Held", "TIME_WAIT", "Pressure",
                      "TIME_WAIT reusable"],
                     [[p.label, p.capacity, p.in_use, p.time_wait, f"{p.pressure:.1%}", p.reusable_time_wait]
                      for p in ports.pools]) if ports.pools else ""),
        "<h2>Events during the session</h2>" + events_table(timeline(evidence)),
        "<h2>Outbound connection tests</h2>"
        + (probe_table(evidence.probe_results) if evidence.probe_results
           else "<p class='empty'>None run.</p>"),
        "<h2>Top processes</h2>" + _table(
            ["PID", "Name", "Connections", "TIME_WAIT (exact + inferred)", "New per s", "States"],
            [[str(p.pid), p.name, p.connections,
              f"{p.time_wait:,} ({p.time_wait_exact:,} + {p.time_wait_inferred:,})",
              p.opens_per_s, dict(p.states)] for p in s.processes[:TOP_ROWS]])
        + f"<p>TIME_WAIT sockets not attributed to any process: {s.time_wait_unattributed:,}. "
          "\"exact\" TIME_WAIT was matched to the process by its connection; \"inferred\" from the "
          "endpoints the process talks to.</p>",
        "<h2>Top remote endpoints</h2>" + _table(
            ["Address", "Port", "Connections", "TIME_WAIT"],
            [[r.address, str(r.port), r.connections, r.time_wait] for r in s.remotes[:TOP_ROWS]]),
        "<h2>Socket states now</h2>" + _table(
            ["State", "Sockets", "Meaning"],
            [[n, s.states.get(n, 0), STATE_MEANINGS.get(n, "")] for n in STATE_NAMES], "states"),
        "<h2>Settings in effect</h2>" + _pairs(
            [("TIME_WAIT lasts (seconds)", s.time_wait_seconds)]
            + ([("Dynamic port range", port_range(config.dynamic_range)),
                ("Excluded port ranges", [port_range(r) for r in config.excluded] or "none"),
                ("Pool scope", config.pool_scope.replace("_", " ")),
                ("tcp_tw_reuse", config.tw_reuse)] + [("Note", n) for n in config.notes]
               if config is not None else []))
        + (settings_table(evidence.settings) if evidence.settings
           else "<p class='empty'>The OS settings were not read.</p>"),
    ]
    if evidence.event_log is not None:
        sections.append("<h2>Windows event log (Tcpip 4227, 4231)</h2>" + _event_log_html(evidence.event_log))
    context = [("Reader", evidence.source or s.extra.get("source", "")), ("Privileged", evidence.privileged)]
    context += [("Could not see", limit) for limit in s.limits] + [("Note", n) for n in evidence.notes]
    sections.append("<h2>Context</h2>" + _pairs(context))
    sections.append(_image("Plot from the window", evidence.plot_png, "PortPressure plot"))
    sections.append(_image("The window", evidence.window_png, "PortPressure window"))
    title = esc(f"PortPressure evidence: {evidence.host} {evidence.created}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")


# -- the bundle ---------------------------------------------------------------------------

def write_bundle(out_dir: str | os.PathLike[str], evidence: Evidence) -> Path:
    """Write the bundle into a new folder inside `out_dir`; returns that folder."""
    out = Path(out_dir)
    if not out.exists():
        raise ReportError(f"folder {out} does not exist")
    if not out.is_dir():
        raise ReportError(f"{out} is not a folder")
    try:
        staging = Path(tempfile.mkdtemp(prefix=".portpressure-partial-", dir=out))
    except OSError as exc:
        raise ReportError(f"cannot write to {out}: {exc.strerror or exc}") from None
    try:
        (staging / "report.html").write_text(report_html(evidence), encoding="utf-8")
        (staging / "report.json").write_text(json.dumps(report_json(evidence), indent=1, default=str) + "\n",
                                             encoding="utf-8")
        with open(staging / "history.csv", "w", newline="", encoding="utf-8") as csv_file:
            history_of(evidence).write_csv(csv_file)
        for name, data in _images(evidence):
            if data:
                (staging / name).write_bytes(data)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the bundle is meant to be shared
        return _publish(staging, out / bundle_name(evidence))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ReportError(f"cannot write the report in {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, target: Path) -> Path:
    """Rename the finished folder into place; a second bundle in the same second gets -2."""
    for n in range(1, 100):
        final = target if n == 1 else target.with_name(f"{target.name}-{n}")
        # Checked first: renaming onto an existing empty folder would succeed on Linux.
        if not final.exists():
            os.rename(staging, final)
            return final
    raise OSError(f"too many bundles named {target.name}")
