"""The window's evidence adapter (gui/evidence.py, no Qt): what the window knows goes
into core.report's bundle; panels that fail or a missing sample never crash it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from core.history import History
from core.report import ReportError
from core.sampler import Sampler
from gui.evidence import NothingToSave, build_evidence, panel_rows, save_evidence

PNG = b"\x89PNG\r\n\x1a\n stands for the window's grab"


@pytest.fixture(scope="module")
def sample():
    sampler = Sampler()
    try:
        return sampler.sample()
    finally:
        sampler.close()


def test_bundle_holds_the_window_and_the_panels(sample, tmp_path: Path) -> None:
    history = History(10)
    history.append(sample)
    evidence = build_evidence(
        sample=sample, history=history.snapshot(), window_png=PNG, source="netlink sock_diag",
        privileged=True, probe_results=panel_rows(lambda: [{"host": "127.0.0.1", "ok": False}], "probe"),
        notes=["Reboot pending: TcpTimedWaitDelay 30"])
    bundle = save_evidence(tmp_path / "new" / "folder", evidence)
    assert bundle.parent == tmp_path / "new" / "folder"
    assert (bundle / "window.png").read_bytes() == PNG
    report = json.loads((bundle / "report.json").read_text())
    assert report["sample"]["time"] == sample.time_iso
    assert report["probe_results"] == [{"host": "127.0.0.1", "ok": False}]
    assert report["notes"] == ["Reboot pending: TcpTimedWaitDelay 30"]
    assert base64.b64encode(PNG).decode() in (bundle / "report.html").read_text()


def test_a_failing_panel_costs_only_its_own_rows() -> None:
    def broken() -> list[dict]:
        raise RuntimeError("panel bug")

    assert panel_rows(broken, "the outbound tests") == ()
    assert panel_rows(None, "absent panel") == ()


def test_nothing_to_save_before_the_first_sample() -> None:
    with pytest.raises(NothingToSave, match="first sample"):
        build_evidence(sample=None, history=None, window_png=PNG)


def test_unwritable_folder_is_a_one_line_report_error(sample, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError) as info:
        save_evidence(blocker / "sub", build_evidence(sample=sample, history=None, window_png=PNG))
    assert "\n" not in str(info.value) and str(blocker) in str(info.value)
