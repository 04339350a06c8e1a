"""`portpressure report` run as a real command: inside a namespace under real churn it
writes a bundle naming the culprit; a bad folder is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener
from tests.test_recording import NARROW, tmpfs
from tests.test_report import assert_self_contained, parse
from tests.test_watch_cli import check_contract, portpressure


def _report_under_churn(out: str) -> subprocess.CompletedProcess:
    with Listener("127.0.0.1", 9000), \
            Churner("127.0.0.1", 9000, hold_s=0.002, name="churn-report") as churner:
        wait_until(lambda: churner.ok >= 100, 30, "churn to start")
        return portpressure("report", "--out", out, "--seconds", "1")


@requires_netns
def test_report_writes_a_bundle_that_names_the_culprit(tmp_path):
    result = run_in_netns(_report_under_churn, str(tmp_path), sysctls=NARROW)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    folder = Path(lines[0])
    assert folder.parent == tmp_path and folder.name.startswith("portpressure-")
    assert sorted(p.name for p in folder.iterdir()) == ["history.csv", "report.html", "report.json"]
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind
    report = json.loads((folder / "report.json").read_text())
    sample = report["sample"]
    check_contract(sample)
    assert sample["states"]["TIME_WAIT"] >= 100
    assert sample["rates"]["active_opens_per_s"] > 0  # at least two samples were taken
    assert sample["ports"]["range"] == [40000, 40999]
    culprit = next(p for p in sample["processes"] if p["name"] == "churn-report")
    assert culprit["time_wait"] > 0
    assert report["history"]["rows"] >= 2
    assert report["port_config"]["dynamic_range"] == [40000, 40999]
    assert len((folder / "history.csv").read_text().splitlines()) == report["history"]["rows"] + 1
    page = parse((folder / "report.html").read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert "churn-report" in page.all_text
    assert sample["verdict"]["title"] in page.all_text
    # Where the tune command exists its settings are in the report; otherwise it says why not.
    if report["settings"]:
        assert {s["name"] for s in report["settings"]} >= {"net.ipv4.ip_local_port_range"}
    else:
        assert any("settings" in n for n in report["notes"])


@pytest.mark.parametrize("make, needle", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "is not a folder"),
])
def test_bad_folder_is_one_line_and_exit_2(tmp_path, make, needle):
    target = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = portpressure("report", "--out", str(target))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "--out" in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_read_only_folder_is_one_line_and_exit_2(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        result = portpressure("report", "--out", str(folder))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot write" in lines[0]
        assert os.listdir(folder) == []


@pytest.mark.parametrize("args, needle", [
    (["report", "--seconds", "0"], "--seconds"),
    (["report", "--seconds", "soon"], "--seconds"),
    (["report", "--seconds", "1e10"], "--seconds"),
    (["report", "--out"], "--out"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    result = portpressure(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
