"""`portpressure watch` against the contract in DESIGN.md, run as a real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.model import STATE_NAMES
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"time", "states", "ports", "rates", "forecast", "processes", "remotes", "verdict",
                 "sample_ms"}


def portpressure(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def check_contract(obj: dict) -> None:
    assert set(obj) >= CONTRACT_KEYS
    assert set(obj["states"]) == set(STATE_NAMES)
    assert set(obj["ports"]) >= {"range", "capacity", "in_use", "pressure", "pool"}
    assert 0.0 <= obj["ports"]["pressure"] <= 1.0
    assert set(obj["rates"]) >= {"active_opens_per_s", "passive_opens_per_s", "attempt_fails_per_s"}
    assert set(obj["forecast"]) >= {"steady_state_time_wait", "seconds_to_exhaustion"}
    for p in obj["processes"]:
        assert set(p) >= {"pid", "name", "connections", "time_wait", "time_wait_exact", "opens_per_s",
                          "states"}
    for r in obj["remotes"]:
        assert set(r) >= {"address", "port", "connections", "time_wait"}
    assert obj["verdict"]["level"] in ("ok", "warning", "critical")
    assert isinstance(obj["verdict"]["reasons"], list)
    assert obj["time"][-6] in "+-"  # ISO-8601 with offset


def _watch_json_under_churn() -> list[dict]:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.002) as churner:
        wait_until(lambda: churner.ok >= 50, 30, "50 churned connections")
        result = portpressure("watch", "--count", "3", "--interval", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@requires_netns
def test_watch_json_lines_follow_the_contract():
    lines = run_in_netns(_watch_json_under_churn)
    assert len(lines) == 3
    for obj in lines:
        check_contract(obj)
    assert lines[-1]["states"]["TIME_WAIT"] >= 50
    assert lines[-1]["remotes"][0]["port"] == 9000
    assert lines[-1]["rates"]["active_opens_per_s"] > 0


@pytest.mark.parametrize("args, needle", [
    (["watch", "--count", "0"], "--count"),
    (["watch", "--interval", "abc"], "--interval"),
    (["watch", "--interval", "-1"], "--interval"),
    (["watch", "--count", "2", "--duration", "3"], "not allowed with"),
    (["watch", "--bogus"], "unrecognized arguments"),
    (["nonsense"], "invalid choice"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    result = portpressure(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_version():
    from core import __version__

    result = portpressure("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"PortPressure {__version__}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux can lack a display (DISPLAY)")
def test_no_display_falls_back_to_the_terminal_view():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PORTPRESSURE_WATCH_COUNT"] = "1"
    result = portpressure(env=env)
    assert "no display found" in result.stderr
    assert result.returncode == 0
    assert "ports " in result.stdout  # the one-line-per-sample view
