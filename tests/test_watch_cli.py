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
                 "sample_ms", "limits"}


def portpressure(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def check_contract(obj: dict) -> None:
    assert set(obj) >= CONTRACT_KEYS
    assert set(obj["states"]) == set(STATE_NAMES)
    assert set(obj["ports"]) >= {"range", "capacity", "in_use", "pressure", "pool", "range_in_use",
                                 "range_pressure"}
    assert 0.0 <= obj["ports"]["pressure"] <= 1.0
    assert 0.0 <= obj["ports"]["range_pressure"] <= 1.0
    assert isinstance(obj["limits"], list)
    assert set(obj["rates"]) >= {"active_opens_per_s", "passive_opens_per_s", "attempt_fails_per_s"}
    assert set(obj["forecast"]) >= {"steady_state_time_wait", "seconds_to_exhaustion"}
    for p in obj["processes"]:
        assert set(p) >= {"pid", "name", "connections", "time_wait", "time_wait_exact", "opens_per_s",
                          "states", "exited", "instances", "parent"}
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
    (["watch", "--interval", "1e10"], "--interval"),
    (["watch", "--duration", "1e10"], "--duration"),
    (["watch", "--top", "5000"], "--top"),
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


def _top_is_honoured() -> list[dict]:
    import socket

    listeners = [Listener("127.0.0.1", 9100 + i) for i in range(70)]
    held = []
    try:
        for listener in listeners:
            held.append(socket.create_connection(("127.0.0.1", listener.port)))
        result = portpressure("watch", "--count", "1", "--json", "--top", "400")
    finally:
        for conn in held:
            conn.close()
        for listener in listeners:
            listener.close()
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@requires_netns
def test_top_above_the_default_is_honoured():
    (obj,) = run_in_netns(_top_is_honoured)
    assert len(obj["remotes"]) == 70


def _signal_ends_like_ctrl_c(signame: str, folder: str) -> dict:
    import signal
    import time

    record = os.path.join(folder, "watch.jsonl")
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "watch", "--json", "--interval", "0.2", "--record",
                             record], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    printed = []
    try:
        deadline = time.monotonic() + 30
        while len(printed) < 3 and time.monotonic() < deadline:
            printed.append(proc.stdout.readline())
        proc.send_signal(getattr(signal, signame))
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed += [line for line in rest.splitlines(keepends=True) if line.strip()]
    from core.recording import load_recording

    loaded = load_recording(record)
    instances = [name for name in os.listdir("/sys/kernel/tracing/instances")
                 if name.startswith(f"portpressure-{proc.pid}")] if os.path.isdir(
        "/sys/kernel/tracing/instances") else []
    times = [json.loads(line)["time"] for line in printed if line.strip()]
    return {"code": proc.returncode, "printed": times,
            "recorded": [sample.time_iso for sample in loaded.samples], "truncated": loaded.truncated_lines,
            "instances": instances,
            "stderr": err}


@requires_netns
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_end_like_ctrl_c(signame, tmp_path):
    import signal

    result = run_in_netns(_signal_ends_like_ctrl_c, signame, str(tmp_path))
    assert result["code"] == 128 + getattr(signal, signame), result["stderr"]
    assert len(result["printed"]) >= 3
    # Every sample printed is in the file (written first, then printed), and the file is whole.
    assert set(result["printed"]) <= set(result["recorded"])
    assert result["truncated"] == 0
    assert result["instances"] == []


def _unprivileged_watch() -> dict:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.005, name="rootclient") as churner:
        wait_until(lambda: churner.ok >= 100, 30, "100 churned connections")
        code = "import sys; from gui.launcher import main; sys.exit(main())"
        unprivileged = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                        sys.executable, "-c", code, "watch", "--interval", "0.3"]
        result, text = (subprocess.run([*unprivileged, *extra], capture_output=True, text=True, cwd=ROOT,
                                       timeout=60, stdin=subprocess.DEVNULL)
                        for extra in (["--count", "3", "--json"], ["--count", "1"]))
    return {"code": result.returncode, "stderr": result.stderr, "text": text.stdout,
            "lines": [json.loads(line) for line in result.stdout.splitlines()], "churner": churner.pid}


@requires_netns
def test_not_root_says_what_is_hidden_and_blames_nobody():
    result = run_in_netns(_unprivileged_watch)
    assert result["code"] == 0, result["stderr"]
    for obj in result["lines"]:
        check_contract(obj)
        assert any("not root" in limit for limit in obj["limits"])
        reasons = " ".join(obj["verdict"]["reasons"])
        assert "This run cannot see everything: not root" in reasons
        # Root's sockets show no owner: counts are right, but nobody is credited.
        assert obj["states"]["TIME_WAIT"] >= 50
        assert all(p["pid"] != result["churner"] for p in obj["processes"])
        assert obj["time_wait_unattributed"] == obj["states"]["TIME_WAIT"]
    assert "Run PortPressure as root" in " ".join(result["lines"][-1]["verdict"]["reasons"])
    # The text view says it too, once, before the samples.
    assert result["text"].splitlines()[0].startswith("cannot see: not root")
