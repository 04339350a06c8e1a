"""PortPressure's Windows code on Windows itself (a Windows runner, or the lane's Windows Python
under Wine): GetExtendedTcpTable against a real churning child process, the live view's process
rows, and the probe's Winsock errors. Off Windows these skip; tests/test_windows_lane.py drives
the same code from Linux, in network namespaces."""

from __future__ import annotations

import json
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
