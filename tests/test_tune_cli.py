"""`portpressure tune show|set|revert` for real, in private network namespaces: the
contract's JSON keys, one-line errors with exit 2, refusal without --yes and without a
terminal, the terminal question itself (a pty), and the end-to-end fix: a namespace whose
port range a churning child has exhausted recovers after `tune set net.ipv4.tcp_tw_reuse 1`."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import multiprocessing
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import cli
from core.tuning.base import JSON_KEYS
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener

pytestmark = [requires_netns, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[1]
NARROW = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}
TW_REUSE_FILE = "/proc/sys/net/ipv4/tcp_tw_reuse"
RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def _read(path: str) -> str:
    with open(path) as f:
        return " ".join(f.read().split())


def _cli(argv: list[str], backup_dir: str | None = None) -> dict:
    """core.cli.main in this process, with stdin that is not a terminal."""
    if backup_dir is not None:
        os.environ["PORTPRESSURE_BACKUP_DIR"] = backup_dir
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO("y\n")  # would say yes, but is no terminal: must not be asked
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        sys.stdin = saved_stdin
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


def _backups(folder: str) -> list[Path]:
    return sorted(Path(folder).glob("*.json")) if Path(folder).exists() else []


# -- show -------------------------------------------------------------------------------------
def _show_body() -> dict:
    return {"json": _cli(["tune", "show", "--json"]), "text": _cli(["tune", "show"])}


def test_show_json_is_the_contract() -> None:
    r = run_in_netns(_show_body, sysctls=NARROW)
    assert r["json"]["code"] == 0 and r["json"]["err"] == ""
    rows = json.loads(r["json"]["out"])
    assert [row["name"] for row in rows] == ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse",
                                             "net.ipv4.tcp_fin_timeout"]
    for row in rows:
        assert tuple(row) == JSON_KEYS
    assert rows[0]["value"] == [40000, 40019] and rows[1]["value"] == 0
    assert rows[1]["writable"] is True and rows[2]["writable"] is False
    text = r["text"]["out"]
    assert r["text"]["code"] == 0
    assert "does NOT shorten TIME_WAIT" in text and "40000-40019" in text


# -- set and revert ---------------------------------------------------------------------------
def _set_revert_body(folder: str) -> dict:
    done = _cli(["tune", "set", "net.ipv4.ip_local_port_range", "40000", "40999", "--yes"], folder)
    widened = _read(RANGE_FILE)
    backup = done["out"].strip().splitlines()[-1].removeprefix("Backup: ")
    undone = _cli(["tune", "revert", backup, "--yes"], folder)
    return {"set": done, "widened": widened, "backup": backup, "revert": undone,
            "restored": _read(RANGE_FILE), "backups": [str(p) for p in _backups(folder)]}


def test_set_prints_the_plan_and_the_backup_and_revert_restores(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_set_revert_body, folder, sysctls=NARROW)
    assert r["set"]["code"] == 0, r["set"]["err"]
    assert "Change net.ipv4.ip_local_port_range: 40000-40019 -> 40000-40999" in r["set"]["out"]
    assert f"Backup first, into: {folder}" in r["set"]["out"]
    assert r["widened"] == "40000 40999"
    backup = Path(r["backup"])
    assert backup.parent == Path(folder) and backup.is_file()
    record = json.loads(backup.read_text())
    assert (record["old_value"], record["new_value"]) == ([40000, 40019], [40000, 40999])
    assert r["revert"]["code"] == 0, r["revert"]["err"]
    assert "Undo net.ipv4.ip_local_port_range: 40000-40999 -> 40000-40019" in r["revert"]["out"]
    assert r["restored"] == "40000 40019"
    assert len(r["backups"]) == 2


# -- bad input: one line, exit 2, nothing written ---------------------------------------------
BAD = [
    ["tune", "set", "net.ipv4.tcp_tw_reuse", "3", "--yes"],
    ["tune", "set", "net.ipv4.tcp_tw_reuse", "maybe", "--yes"],
    ["tune", "set", "net.ipv4.ip_local_port_range", "50000 40000", "--yes"],
    ["tune", "set", "net.ipv4.ip_local_port_range", "40000", "40100", "--yes"],
    ["tune", "set", "net.ipv4.ip_local_port_range", "x y", "--yes"],
    ["tune", "set", "net.ipv4.tcp_fin_timeout", "30", "--yes"],
    ["tune", "set", "no.such.setting", "1", "--yes"],
    ["tune", "set", "net.ipv4.tcp_tw_reuse", "--yes"],
    ["tune", "revert", "/nonexistent/backup.json", "--yes"],
    ["tune"],
    ["tune", "frobnicate"],
]


def _bad_body(folder: str) -> dict:
    results = [_cli(argv, folder) for argv in BAD]
    return {"results": results, "range": _read(RANGE_FILE), "reuse": _read(TW_REUSE_FILE),
            "folder_exists": Path(folder).exists()}


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_bad_body, folder, sysctls=NARROW)
    for argv, result in zip(BAD, r["results"], strict=True):
        assert result["code"] == 2, (argv, result)
        assert result["err"].count("\n") == 1 and result["err"].startswith("portpressure"), (argv, result)
    unknown = r["results"][6]["err"]
    assert "net.ipv4.ip_local_port_range" in unknown and "net.ipv4.tcp_tw_reuse" in unknown
    assert (r["range"], r["reuse"]) == ("40000 40019", "0")
    assert not r["folder_exists"]


# -- confirmation --------------------------------------------------------------------------------
def _no_terminal_body(folder: str) -> dict:
    env = dict(os.environ, PORTPRESSURE_BACKUP_DIR=folder, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "gui.launcher", "tune", "set", "net.ipv4.tcp_tw_reuse", "1"]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=60)
    in_process = _cli(["tune", "set", "net.ipv4.tcp_tw_reuse", "1"], folder)
    revert_refused = _cli(["tune", "revert", str(Path(folder) / "whatever.json")], folder)
    return {"code": done.returncode, "out": done.stdout, "err": done.stderr, "in_process": in_process,
            "revert": revert_refused, "reuse": _read(TW_REUSE_FILE), "folder_exists": Path(folder).exists()}


def test_without_yes_and_without_a_terminal_it_refuses_with_exit_2(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_no_terminal_body, folder, sysctls=NARROW)
    assert r["code"] == 2
    assert r["err"].count("\n") == 1 and "stdin is not a terminal" in r["err"] and "--yes" in r["err"]
    assert "Change net.ipv4.tcp_tw_reuse: 0 -> 1" in r["out"]  # the plan, as a dry run
    assert r["in_process"]["code"] == 2 and "stdin is not a terminal" in r["in_process"]["err"]
    assert r["revert"]["code"] == 2  # no such backup: refused before any question
    assert r["reuse"] == "0" and not r["folder_exists"]


def _answer_on_a_terminal(folder: str, answer: bytes) -> dict:
    env = dict(os.environ, PORTPRESSURE_BACKUP_DIR=folder, PYTHONPATH=str(ROOT))
    import pty  # Unix only (termios): imported here so the module loads on Windows

    master, slave = pty.openpty()
    command = [sys.executable, "-m", "gui.launcher", "tune", "set", "net.ipv4.tcp_tw_reuse", "1"]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(ROOT))
    os.close(slave)
    seen = b""

    def prompt_shown() -> bool:
        nonlocal seen
        if select.select([master], [], [], 0.05)[0]:
            seen += os.read(master, 4096)
        return b"[y/N]" in seen

    wait_until(prompt_shown, 30, "the y/N question on the terminal")
    os.write(master, answer + b"\n")
    code = proc.wait(30)
    with contextlib.suppress(OSError):
        while select.select([master], [], [], 0.1)[0]:
            seen += os.read(master, 4096)
    os.close(master)
    return {"code": code, "output": seen.decode(errors="replace"), "reuse": _read(TW_REUSE_FILE),
            "backups": len(_backups(folder))}


def _terminal_body(folder: str) -> dict:
    return {"no": _answer_on_a_terminal(folder, b"n"), "yes": _answer_on_a_terminal(folder, b"y")}


def test_on_a_terminal_it_asks_and_only_yes_applies(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_terminal_body, folder, sysctls=NARROW)
    assert r["no"]["code"] == 1 and "nothing was changed" in r["no"]["output"]
    assert r["no"]["reuse"] == "0" and r["no"]["backups"] == 0
    assert r["yes"]["code"] == 0 and "Backup: " in r["yes"]["output"]
    assert r["yes"]["reuse"] == "1" and r["yes"]["backups"] == 1


def _as_nobody(folder: str, conn) -> None:
    try:
        os.setgid(65534)
        os.setuid(65534)
        conn.send(_cli(["tune", "set", "net.ipv4.tcp_tw_reuse", "1", "--yes"], folder))
    except BaseException as exc:
        conn.send({"code": None, "out": "", "err": f"{type(exc).__name__}: {exc}"})


def _non_root_body(folder: str) -> dict:
    # Import every command now: uid 65534 may not read this Python's site-packages.
    cli.build_parser()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_as_nobody, args=(folder, child))
    proc.start()
    result = parent.recv()
    proc.join(10)
    return {"cli": result, "reuse": _read(TW_REUSE_FILE), "folder_exists": Path(folder).exists()}


def test_not_root_prints_the_sysctl_command_and_changes_nothing(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_non_root_body, folder, sysctls=NARROW)
    cli_result = r["cli"]
    assert cli_result["code"] == 1 and cli_result["err"].count("\n") == 1
    assert "needs root" in cli_result["err"] and "sudo sysctl -w net.ipv4.tcp_tw_reuse=1" in cli_result["err"]
    assert "Change net.ipv4.tcp_tw_reuse: 0 -> 1" in cli_result["out"]
    assert r["reuse"] == "0" and not r["folder_exists"]


def _other_host_body(folder: str) -> dict:
    done = _cli(["tune", "set", "net.ipv4.tcp_tw_reuse", "1", "--yes"], folder)
    backup = Path(done["out"].strip().splitlines()[-1].removeprefix("Backup: "))
    record = json.loads(backup.read_text())
    foreign = backup.with_name("foreign.json")
    foreign.write_text(json.dumps({**record, "host": "another-server"}))
    refused = _cli(["tune", "revert", str(foreign), "--yes"], folder)
    return {"refused": refused, "reuse": _read(TW_REUSE_FILE)}


def test_revert_refuses_a_backup_from_another_host(tmp_path: Path) -> None:
    r = run_in_netns(_other_host_body, str(tmp_path), sysctls=NARROW)
    assert r["refused"]["code"] == 2
    assert "another-server" in r["refused"]["err"] and r["refused"]["err"].count("\n") == 1
    assert r["reuse"] == "1"


# -- end to end: the fix fixes the real failure -------------------------------------------------
def _fix_body(folder: str) -> dict:
    from core.judgement import JudgedSampler
    from core.probe import Prober
    from core.sampler import Sampler

    prober = Prober()

    def probe(port: int):
        return prober.probe("127.0.0.1", port, timeout_s=2.0)

    with Listener("127.0.0.1", 9000) as listener, \
            Churner("127.0.0.1", 9000, hold_s=0.02, duration_s=90, name="churner") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the 20-port range")
        before = probe(listener.port)
        sampler = JudgedSampler(Sampler())
        try:
            critical = sampler.sample()
            for _ in range(20):
                if critical.verdict.level == "critical":
                    break
                critical = sampler.sample()
            fix = _cli(["tune", "set", "net.ipv4.tcp_tw_reuse", "1", "--yes"], folder)
            fixed_at = time.monotonic()
            attempts = []

            def connects() -> bool:
                attempts.append(probe(listener.port))
                return attempts[-1].ok

            # The churner still runs and races us for every port that frees up: poll.
            wait_until(connects, 20, "an outbound connect to succeed after the fix", poll=0.01)
            connected_after_s = time.monotonic() - fixed_at
            failures_then = churner.addr_not_avail
            last = {}

            def left_critical() -> bool:
                last["sample"] = sampler.sample()
                return last["sample"].verdict.level != "critical"

            wait_until(left_critical, 20, "the verdict to leave critical", poll=0.3)
            left_after_s = time.monotonic() - fixed_at
            ok_then = churner.ok
            wait_until(lambda: churner.ok >= ok_then + 50, 20, "the churner to connect again")
        finally:
            sampler.close()
        return {"before": before, "attempts": attempts, "connected_after_s": connected_after_s,
                "fix": fix, "critical": critical.verdict,
                "recovered": last["sample"].verdict, "reuse": _read(TW_REUSE_FILE),
                "left_after_s": left_after_s, "new_failures": churner.addr_not_avail - failures_then}


@pytest.mark.slow
def test_tune_set_tw_reuse_fixes_an_exhausted_range(tmp_path: Path) -> None:
    folder = str(tmp_path / "backups")
    r = run_in_netns(_fix_body, folder, sysctls=NARROW, timeout=180)
    before = r["before"]
    assert (before.ok, before.category, before.errno) == (False, "ports_exhausted", errno.EADDRNOTAVAIL), \
        "the range must really be exhausted first"
    assert r["critical"].level == "critical"
    assert r["fix"]["code"] == 0, r["fix"]["err"]
    assert r["fix"]["out"].strip().splitlines()[-1].startswith(f"Backup: {folder}/")
    assert r["reuse"] == "1"
    assert r["attempts"][-1].ok and r["attempts"][-1].category == "ok"
    assert {a.category for a in r["attempts"][:-1]} <= {"ports_exhausted"}
    assert r["recovered"].level != "critical"
    print(f"connected {r['connected_after_s']:.2f} s after the fix (attempt {len(r['attempts'])}); "
          f"verdict left critical {r['left_after_s']:.1f} s after it; "
          f"{r['new_failures']} churner failures after it")
