"""`portpressure probe` against the contract (DESIGN.md): real commands inside private
network namespaces, loopback only. Exit 0 when every attempt connected, 1 when any
failed, 2 on bad input (one line on stderr, and no connection attempted)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener
from tests.test_probe import NARROW, check_contract

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.netns


def probe_command(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "probe", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


def outcome(done: subprocess.CompletedProcess) -> dict:
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}


def in_process(*args: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["probe", *args])
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}


def active_opens() -> int:
    """Tcp ActiveOpens of this namespace: every connect() that sent a SYN."""
    with open("/proc/net/snmp") as f:
        names, values = [line.split() for line in f if line.startswith("Tcp:")][:2]
    return int(values[names.index("ActiveOpens")])


def _connects_and_fails() -> dict:
    with Listener("127.0.0.1", 0) as listener:
        ok = probe_command("127.0.0.1", str(listener.port), "--count", "3", "--interval", "0.01")
        ok_json = probe_command("127.0.0.1", str(listener.port), "--count", "2", "--interval", "0", "--json")
        wait_until(lambda: listener.accepted == 5, 5, "five accepted connections")
        closed = listener.port + 1 if listener.port < 65535 else listener.port - 1
    refused = probe_command("127.0.0.1", str(closed))
    refused_json = probe_command("::1", str(closed), "--json", "--timeout", "2")
    return {"ok": outcome(ok), "ok_json": outcome(ok_json), "refused": outcome(refused),
            "refused_json": outcome(refused_json), "port": listener.port}


@requires_netns
def test_exit_0_when_all_connect_and_1_when_any_fails() -> None:
    got = run_in_netns(_connects_and_fails)
    ok = got["ok"]
    assert ok["rc"] == 0, ok["err"]
    lines = ok["out"].splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["#1", "#2", "#3"]
    assert all(f"127.0.0.1:{got['port']}" in line and "connected in" in line for line in lines[:3])
    summary = f"3 attempts to 127.0.0.1:{got['port']}: 3 connected, 0 failed; connect latency p50"
    assert lines[3].startswith(summary)
    assert "p90" in lines[3] and "p99" in lines[3] and "max" in lines[3]
    assert lines[4].startswith("ok: Connected to")

    objs = [json.loads(line) for line in got["ok_json"]["out"].splitlines()]
    assert got["ok_json"]["rc"] == 0 and len(objs) == 2
    for obj in objs:
        check_contract(obj)
        assert obj["ok"] is True and obj["port"] == got["port"]
    assert [o["attempt"] for o in objs] == [1, 2]

    refused = got["refused"]
    assert refused["rc"] == 1
    assert "FAILED refused (connect): [Errno 111] Connection refused" in refused["out"]
    assert "refused: " in refused["out"] and "NOT port exhaustion" in refused["out"]
    [obj] = [json.loads(line) for line in got["refused_json"]["out"].splitlines()]
    check_contract(obj)
    assert got["refused_json"]["rc"] == 1 and obj["category"] == "refused" and obj["host"] == "::1"


def _exhausted() -> dict:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.0, name="pp-cli-churn") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the range")
        text = probe_command("127.0.0.1", "9000")
        as_json = probe_command("127.0.0.1", "9000", "--json", "--count", "2", "--interval", "0")
    return {"text": outcome(text), "json": outcome(as_json)}


@requires_netns
def test_exhaustion_is_reported_as_such_with_exit_1() -> None:
    got = run_in_netns(_exhausted, sysctls=NARROW)
    text = got["text"]
    assert text["rc"] == 1
    assert "FAILED ports_exhausted (connect): [Errno 99] Cannot assign requested address" in text["out"]
    assert "ports_exhausted: No free local port was left" in text["out"]
    objs = [json.loads(line) for line in got["json"]["out"].splitlines()]
    assert got["json"]["rc"] == 1 and len(objs) == 2
    for obj in objs:
        check_contract(obj)
        assert (obj["category"], obj["errno"], obj["errno_name"]) == ("ports_exhausted", 99, "EADDRNOTAVAIL")


BAD_INPUT = [
    (["", "{port}"], "host is empty"),
    (["example.com:80", "{port}"], "includes a port"),
    (["http://127.0.0.1/", "{port}"], "looks like a URL"),
    (["exa mple", "{port}"], "contains a space"),
    (["127.0.0.1", "0"], "port '0' is out of range"),
    (["127.0.0.1", "65536"], "out of range"),
    (["127.0.0.1", "http"], "whole number from 1 to 65535"),
    (["127.0.0.1", "{port}", "--timeout", "-1"], "timeout must be more than 0 seconds"),
    (["127.0.0.1", "{port}", "--timeout", "abc"], "timeout must be a number of seconds"),
    (["127.0.0.1", "{port}", "--timeout", "nan"], "timeout must be a number of seconds"),
    (["127.0.0.1", "{port}", "--timeout", "1000"], "at most 300 seconds"),
    (["127.0.0.1", "{port}", "--count", "0"], "count '0' is out of range: use 1 to 1000"),
    (["127.0.0.1", "{port}", "--count", "-2"], "count must be a whole number"),
    (["127.0.0.1", "{port}", "--count", "1001"], "out of range"),
    (["127.0.0.1", "{port}", "--interval", "-1"], "interval must be at least 0 seconds"),
    (["127.0.0.1"], "required: PORT"),
    (["127.0.0.1", "{port}", "--count"], "expected one argument"),
]


def _bad_input() -> dict:
    with Listener("127.0.0.1", 0) as listener:
        before = active_opens()
        results = []
        for args, _says in BAD_INPUT:
            filled = [a.replace("{port}", str(listener.port)) for a in args]
            results.append(in_process(*filled))
            results.append(in_process(*filled, "--json"))
        real = outcome(probe_command("127.0.0.1", "0", "--json"))
        after = active_opens()
        return {"results": results, "real": real, "opens": after - before, "accepted": listener.accepted}


@requires_netns
def test_exit_2_on_bad_input_with_one_line_and_no_connection() -> None:
    got = run_in_netns(_bad_input)
    assert got["opens"] == 0 and got["accepted"] == 0  # not one SYN left this namespace's stack
    for (args, says), text, as_json in zip(BAD_INPUT, got["results"][::2], got["results"][1::2], strict=True):
        for run in (text, as_json):
            assert run["rc"] == 2, (args, run)
            err = run["err"].splitlines()
            assert len(err) == 1 and err[0].startswith("portpressure probe: ") and says in err[0], (args, err)
        assert text["out"] == ""
        if as_json["out"]:  # argparse's own errors (missing arguments) come before any value is read
            [obj] = [json.loads(line) for line in as_json["out"].splitlines()]
            check_contract(obj)
            assert obj["category"] == "invalid_input" and says in obj["error"]
    real = got["real"]
    assert real["rc"] == 2 and real["err"] == "portpressure probe: port '0' is out of range: use 1 to 65535\n"
    assert json.loads(real["out"])["category"] == "invalid_input"
