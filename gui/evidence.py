"""Evidence for a support ticket, saved from the window: the screenshot (PNG), the
report as JSON (every `watch --json` contract key at the top level, plus the
context a ticket needs) and a self-contained HTML page embedding the screenshot,
plus the history as CSV. Files are named with the host name and the time.

No Qt here: the window hands over the PNG bytes, so this is tested without a display.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core import __version__
from core.history import HistorySnapshot
from core.model import STATE_NAMES, PortConfig, Sample

LEVEL_COLOURS = {"ok": "#1b5e20", "warning": "#7a4f00", "critical": "#9b1c1c"}
TOP_ROWS = 20


@dataclass(frozen=True)
class Evidence:
    """Everything one save writes, frozen at the moment the user asked."""

    screenshot_png: bytes
    sample: Sample | None
    history: HistorySnapshot | None = None
    host: str = field(default_factory=socket.gethostname)
    saved_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    source_name: str = ""
    privileged: bool | None = None
    port_config: PortConfig | None = None
    probe_results: Sequence[Mapping[str, Any]] = ()
    notes: Sequence[str] = ()  # e.g. "reboot pending: TcpTimedWaitDelay 30"


@dataclass(frozen=True)
class SavedEvidence:
    png: Path
    json: Path
    html: Path
    csv: Path | None


def safe_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", host).strip("._") or "host"


def base_name(evidence: Evidence) -> str:
    return f"portpressure-{safe_host(evidence.host)}-{evidence.saved_at.strftime('%Y%m%d-%H%M%S')}"


def report_json(evidence: Evidence, screenshot_name: str = "") -> dict[str, Any]:
    """The contract keys of the last sample at the top level, then the ticket context."""
    report: dict[str, Any] = evidence.sample.to_json() if evidence.sample else {"time": None}
    config = evidence.port_config
    report.update({
        "host": evidence.host,
        "saved_at": evidence.saved_at.isoformat(timespec="seconds"),
        "portpressure_version": __version__,
        "source": evidence.source_name,
        "privileged": evidence.privileged,
        "limits": list(evidence.sample.limits) if evidence.sample else [],
        "pools": [{"pool": p.label, "capacity": p.capacity, "in_use": p.in_use, "time_wait": p.time_wait,
                   "pressure": round(p.pressure, 4), "reusable_time_wait": p.reusable_time_wait}
                  for p in (evidence.sample.ports.pools if evidence.sample else ())],
        "port_config": None if config is None else {
            "os": config.os_name, "dynamic_range": list(config.dynamic_range),
            "excluded": [list(r) for r in config.excluded], "capacity": config.capacity,
            "time_wait_seconds": config.time_wait_seconds, "pool_scope": config.pool_scope,
            "tw_reuse": config.tw_reuse, "notes": list(config.notes)},
        "probe_results": [dict(r) for r in evidence.probe_results],
        "notes": list(evidence.notes),
        "history_rows": 0 if evidence.history is None else len(evidence.history),
        "screenshot": screenshot_name,
    })
    return report


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1) -> str:
    if not rows:
        return "<p class='empty'>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td class='{'num' if i >= numeric_from else ''}'>{html.escape(str(v))}</td>"
                         for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(evidence: Evidence, report: Mapping[str, Any]) -> str:
    sample = evidence.sample
    level = sample.verdict.level if sample else "ok"
    title = sample.verdict.title if sample else "No sample was taken yet"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in (sample.verdict.reasons if sample else ()))
    image = base64.b64encode(evidence.screenshot_png).decode("ascii")
    sections = [f"<h1>PortPressure evidence: {html.escape(evidence.host)}</h1>",
                f"<p class='meta'>Saved {html.escape(report['saved_at'])} by PortPressure "
                f"{html.escape(__version__)}; sample taken {html.escape(str(report.get('time')))}.</p>",
                f"<div class='verdict' style='border-color:{LEVEL_COLOURS.get(level, '#333')}'>"
                f"<span class='level' style='background:{LEVEL_COLOURS.get(level, '#333')}'>"
                f"{html.escape(level.upper())}</span> <b>{html.escape(title)}</b><ul>{reasons}</ul></div>"]
    if sample:
        ports = sample.ports
        eta = sample.forecast.seconds_to_exhaustion
        sections.append("<h2>Ports</h2>" + _table(
            ["", ""],
            [["Dynamic port range", f"{ports.range[0]}-{ports.range[1]}"],
             ["Busiest pool", ports.pool],
             ["Held / capacity", f"{ports.in_use} / {ports.capacity} ({ports.pressure * 100:.0f}%)"],
             ["Steady-state TIME_WAIT at this rate", sample.forecast.steady_state_time_wait],
             ["Seconds to exhaustion", "-" if eta is None else f"{eta:.0f}"],
             ["TIME_WAIT length", f"{sample.time_wait_seconds:.0f} s"],
             ["New outbound connections/s", f"{sample.rates.active_opens_per_s:.1f}"],
             ["Failed connection attempts/s", f"{sample.rates.attempt_fails_per_s:.1f}"]], numeric_from=9))
        sections.append("<h2>Socket states</h2>" + _table(
            list(STATE_NAMES), [[sample.states.get(s, 0) for s in STATE_NAMES]], numeric_from=0))
        sections.append("<h2>Top processes</h2>" + _table(
            ["PID", "Name", "Connections", "TIME_WAIT", "exact", "inferred", "New/s"],
            [[p.pid, p.name, p.connections, p.time_wait, p.time_wait_exact, p.time_wait_inferred,
              f"{p.opens_per_s:.1f}"] for p in sample.processes[:TOP_ROWS]], numeric_from=2)
            + f"<p>TIME_WAIT not attributed to any process: {sample.time_wait_unattributed}.</p>")
        sections.append("<h2>Top remote endpoints</h2>" + _table(
            ["Address", "Port", "Connections", "TIME_WAIT"],
            [[r.address, r.port, r.connections, r.time_wait] for r in sample.remotes[:TOP_ROWS]]))
    if evidence.probe_results:
        keys = sorted({k for r in evidence.probe_results for k in r})
        sections.append("<h2>Outbound tests</h2>" + _table(
            keys, [[r.get(k, "") for k in keys] for r in evidence.probe_results], numeric_from=len(keys)))
    context = [f"Reader: {evidence.source_name or 'unknown'}",
               f"Privileged (administrator/root): {evidence.privileged}"]
    context += [f"Hidden: {limit}" for limit in report.get("limits", [])]
    context += list(evidence.notes)
    sections.append("<h2>Context</h2><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in context) + "</ul>")
    sections.append(f"<h2>Screenshot</h2><img alt='PortPressure window' src='data:image/png;base64,{image}'>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PortPressure evidence: {html.escape(evidence.host)}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 2em; color: #212121; }}
.meta {{ color: #607d8b; }}
.verdict {{ border: 2px solid; border-radius: 6px; padding: 0.5em 1em; }}
.level {{ color: white; padding: 2px 8px; border-radius: 4px; font-weight: bold; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ border: 1px solid #cfd8dc; padding: 3px 8px; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #eceff1; }}
img {{ max-width: 100%; border: 1px solid #cfd8dc; }}
</style></head><body>
{chr(10).join(sections)}
</body></html>
"""


def _write(path: Path, data: bytes) -> None:
    """Write beside, then rename: a half-written report never carries the final name."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_evidence(folder: Path, evidence: Evidence) -> SavedEvidence:
    """Write the PNG, JSON, HTML and CSV into `folder`; raises OSError with the path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / base_name(evidence)
    png = stem.with_name(stem.name + ".png")
    _write(png, evidence.screenshot_png)
    report = report_json(evidence, png.name)
    json_path = stem.with_name(stem.name + ".json")
    _write(json_path, json.dumps(report, indent=2).encode("utf-8"))
    html_path = stem.with_name(stem.name + ".html")
    _write(html_path, report_html(evidence, report).encode("utf-8"))
    csv_path = None
    if evidence.history is not None and len(evidence.history):
        csv_path = stem.with_name(stem.name + "-history.csv")
        _write(csv_path, evidence.history.to_csv_text().encode("utf-8"))
    return SavedEvidence(png, json_path, html_path, csv_path)
