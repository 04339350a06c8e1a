"""PortPressure's Windows code on Windows itself (a Windows runner, or the lane's Windows Python
under Wine): GetExtendedTcpTable against a real churning child process, the live view's process
rows, and the probe's Winsock errors. Off Windows these skip; tests/test_windows_lane.py drives
the same code from Linux, in network namespaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.model import STATE_CODE
from core.probe import WSAECONNREFUSED, Prober
from tests.support.netns import wait_until
from tests.support.traffic import CHURNER_SCRIPT, Listener

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="runs Windows' own calls")

ROOT = Path(__file__).resolve().parents[1]
CHURNED = 50
HELD = 3


@pytest.fixture
def churner() -> Any:
    """A child Python holding HELD connections to one listener and leaving CHURNED TIME_WAIT
    sockets toward another; yields (pid, churn port, held port)."""
    with Listener("127.0.0.1", 0) as churned, Listener("127.0.0.1", 0, mode="never_close") as holder:
        child = subprocess.Popen(
            [sys.executable, "-c", CHURNER_SCRIPT, "127.0.0.1", str(churned.port), str(CHURNED),
             str(holder.port), str(HELD)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            ready = child.stdout.readline()
            assert ready.startswith("ready pid="), ready
            yield child.pid, churned.port, holder.port
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(30)


def test_the_table_names_the_churner_and_never_pid_0(churner: tuple[int, int, int]) -> None:
    from core.sources.windows import WindowsSource

    pid, churn_port, held_port = churner
    source = WindowsSource()
    try:
        def toward(port: int, state: str) -> Any:
            table = source.read().table
            return table[(table["rport"] == port) & (table["state"] == STATE_CODE[state])]

        def all_time_wait() -> Any:
            rows = toward(churn_port, "TIME_WAIT")
            return [rows] if len(rows) >= CHURNED else None

        # The client closed first: its TIME_WAIT rows (nobody's) toward the churned port.
        [time_wait] = wait_until(all_time_wait, 30, "the churner's TIME_WAIT")
        assert len(time_wait) == CHURNED and (time_wait["pid"] == -1).all()
        held = toward(held_port, "ESTABLISHED")
        assert len(held) == HELD and (held["pid"] == pid).all()
        assert not (source.read().table["pid"] == 0).any(), "PID 0 is nobody's"
    finally:
        source.close()


def test_the_live_view_names_the_churner(churner: tuple[int, int, int]) -> None:
    pid = churner[0]
    watched = subprocess.run([sys.executable, "-m", "gui.launcher", "watch", "--count", "2", "--interval",
                              "0.5", "--json", "--top", "200"], cwd=ROOT, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=120)
    assert watched.returncode == 0, watched.stderr
    sample = json.loads(watched.stdout.splitlines()[-1])
    rows = {row["pid"]: row for row in sample["processes"]}
    assert 0 not in rows, "PID 0 is nobody's: never a process row"
    assert rows[pid]["name"].lower() == Path(sys.executable).name.lower()
    assert rows[pid]["states"].get("ESTABLISHED") == HELD
    assert sample["states"]["TIME_WAIT"] >= CHURNED


def test_probe_connects_and_is_refused_with_winsocks_own_error() -> None:
    with Listener("127.0.0.1", 0) as listener:
        ok = Prober().probe("127.0.0.1", listener.port, timeout_s=5.0)
    closed = listener.port  # nothing listens there any more
    refused = Prober().probe("127.0.0.1", closed, timeout_s=5.0)
    assert ok.ok and ok.local_port is not None
    assert (refused.category, refused.errno, refused.errno_name) == ("refused", WSAECONNREFUSED,
                                                                     "WSAECONNREFUSED")
    assert re.match(r"\[WinError 10061\] \S", refused.error or ""), refused.error


# -- what only a real Windows has: netsh, wevtutil, and a registry we may write -------------------
real_windows = pytest.mark.skipif(
    os.environ.get("PORTPRESSURE_REAL_WINDOWS") != "1",
    reason="needs a real, disposable Windows (netsh, wevtutil, registry writes): the Windows "
           "workflow sets PORTPRESSURE_REAL_WINDOWS=1; under Wine the lane tests these its own way")


def portpressure(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gui.launcher", *args], cwd=ROOT, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120, env={**os.environ, **env})


@real_windows
def test_netsh_and_the_event_log_are_read() -> None:
    from core import eventlog
    from core.sources.windows import WindowsPortConfig

    config = WindowsPortConfig.for_this_machine().read()
    assert not [note for note in config.notes if "not read" in note], config.notes
    assert eventlog.read_tcpip_summary() is not None  # wevtutil answered, events or none


@real_windows
def test_tune_time_wait_delay_with_the_reboot_pending_view(tmp_path: Path) -> None:
    env = {"PORTPRESSURE_BACKUP_DIR": str(tmp_path / "backups")}
    shown = portpressure("tune", "show", "--json", env=env)
    before = next(s for s in json.loads(shown.stdout) if s["name"] == "TcpTimedWaitDelay")
    target = 30 if before["value"] != 30 else 40
    done = portpressure("tune", "set", "TcpTimedWaitDelay", str(target), "--yes", env=env)
    assert done.returncode == 0, done.stderr
    backup = re.search(r"^Backup: (.+)$", done.stdout, flags=re.MULTILINE)
    assert backup is not None, done.stdout
    try:
        shown = portpressure("tune", "show", "--json", env=env)
        pending = next(s for s in json.loads(shown.stdout) if s["name"] == "TcpTimedWaitDelay")
        assert (pending["value"], pending["effective"]) == (target, before["effective"])
        sample = json.loads(portpressure("watch", "--count", "1", "--json", env=env).stdout.splitlines()[-1])
        assert sample["time_wait_seconds"] == before["effective"]  # in effect until the reboot
    finally:
        reverted = portpressure("tune", "revert", backup[1].strip(), "--yes", env=env)
    assert reverted.returncode == 0, reverted.stderr
