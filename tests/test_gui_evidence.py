"""The evidence files (gui/evidence.py, no Qt): names, JSON keys, HTML escaping and
embedding, and a save into a folder that cannot be written."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.history import History
from core.model import STATE_NAMES, ProcessRow
from core.sampler import Sampler
from gui.evidence import Evidence, base_name, report_json, safe_host, save_evidence

PNG = b"\x89PNG\r\n\x1a\n fake bytes are fine: the page embeds whatever the window grabbed"


@pytest.fixture(scope="module")
def sample():
    sampler = Sampler()
    try:
        real = sampler.sample()
    finally:
        sampler.close()
    hostile = ProcessRow(pid=4242, name="<script>alert(1)</script>", connections=2, time_wait=7,
                         time_wait_exact=5, time_wait_inferred=2, opens_per_s=3.0,
                         states={"ESTABLISHED": 2, "TIME_WAIT": 7})
    return dataclasses.replace(real, processes=(hostile,) + real.processes)


def evidence(sample, **kwargs) -> Evidence:
    history = History(10)
    history.append(sample)
    kwargs.setdefault("host", "srv 01/prod")
    kwargs.setdefault("saved_at", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return Evidence(screenshot_png=PNG, sample=sample, history=history.snapshot(), **kwargs)


def test_names_carry_host_and_time(sample) -> None:
    assert base_name(evidence(sample)) == "portpressure-srv_01_prod-20260102-030405"
    assert safe_host("..") == "host" and safe_host("web-01.example") == "web-01.example"


def test_json_has_every_contract_key_and_the_context(sample) -> None:
    report = report_json(evidence(sample, source_name="netlink sock_diag", privileged=True,
                                  probe_results=[{"host": "127.0.0.1", "ok": False}]), "x.png")
    contract = sample.to_json()
    for key in ("time", "states", "ports", "rates", "forecast", "processes", "remotes", "verdict",
                "sample_ms"):
        assert report[key] == contract[key], key
    assert set(report["states"]) == set(STATE_NAMES)
    assert report["host"] == "srv 01/prod" and report["screenshot"] == "x.png"
    assert report["privileged"] is True and report["probe_results"] == [{"host": "127.0.0.1", "ok": False}]
    assert report["history_rows"] == 1


def test_saved_files_are_complete_and_the_page_is_self_contained(sample, tmp_path: Path) -> None:
    saved = save_evidence(tmp_path / "new-folder", evidence(sample))
    assert saved.png.read_bytes() == PNG
    assert json.loads(saved.json.read_text())["processes"][0]["pid"] == 4242
    page = saved.html.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in page
    assert "src='http" not in page and 'href="http' not in page  # nothing fetched from outside
    assert sample.verdict.title in page
    assert saved.csv is not None and saved.csv.read_text().startswith("time,")
    assert not list(tmp_path.rglob("*.partial"))


def test_unwritable_folder_raises_oserror(sample, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        save_evidence(blocker / "sub", evidence(sample))


def test_no_sample_yet_still_saves(tmp_path: Path) -> None:
    saved = save_evidence(tmp_path, Evidence(screenshot_png=PNG, sample=None))
    assert json.loads(saved.json.read_text())["time"] is None
    assert "No sample was taken yet" in saved.html.read_text() and saved.csv is None
