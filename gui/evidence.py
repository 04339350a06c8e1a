"""Save evidence from the window: what the window knows, frozen into a
core.report.Evidence and written by core.report.write_bundle (the same bundle as
`portpressure report`): a folder named with the host and the time holding
window.png, plot.png, report.json (every `watch --json` key under "sample"),
a self-contained report.html embedding the screenshots, and history.csv.

No Qt here: the window hands over PNG bytes, so this is tested without a display.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.history import HistorySnapshot
from core.model import PortConfig, Sample
from core.report import Evidence, ReportError, write_bundle

log = logging.getLogger(__name__)


class NothingToSave(ReportError):
    """Asked to save before the first sample arrived."""


def panel_rows(read: Callable[[], Any] | None, what: str) -> tuple[Mapping[str, Any], ...]:
    """Rows from an optional panel (probe results, OS settings); a panel's failure
    must not cost the user the rest of the evidence."""
    if read is None:
        return ()
    try:
        return tuple(dict(row) for row in read())
    except Exception as exc:
        log.warning("%s could not be read for the evidence: %s", what, exc)
        return ()


def build_evidence(*, sample: Sample | None, history: HistorySnapshot | None, window_png: bytes,
                   plot_png: bytes | None = None, port_config: PortConfig | None = None,
                   source: str = "", privileged: bool | None = None,
                   probe_results: Sequence[Mapping[str, Any]] = (),
                   settings: Sequence[Mapping[str, Any]] = (), event_log: Mapping[str, Any] | None = None,
                   notes: Sequence[str] = ()) -> Evidence:
    if sample is None:
        raise NothingToSave("nothing to save yet: the first sample has not arrived")
    return Evidence(sample=sample, history=history, window_png=window_png, plot_png=plot_png,
                    port_config=port_config, source=source, privileged=privileged,
                    probe_results=tuple(probe_results), settings=tuple(settings), event_log=event_log,
                    notes=tuple(notes))


def save_evidence(folder: Path, evidence: Evidence) -> Path:
    """The bundle folder written inside `folder` (created if missing); ReportError
    carries a one-line reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {folder}: {exc.strerror or exc}") from None
    return write_bundle(folder, evidence)
