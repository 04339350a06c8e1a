"""The Windows lane, end to end: PortPressure's Windows code (GetExtendedTcpTable, the registry,
Winsock errors, the window) run by the Windows Python under Wine (tools/windows_lane/setup.sh),
against real sockets in private network namespaces.

Under Wine the socket table is the Linux kernel's: sockets of Wine processes carry their Windows
PIDs, those of Linux processes PID 0. So a Windows churner and a Linux churner in one namespace
give a real attribution test, and the kernel's own counts are the reference.

Run by tools/windows_lane/check.sh (and so by ./test.sh), which sets PORTPRESSURE_WINDOWS_LANE=1
and runs these one at a time: every Wine program of a namespace must share that namespace's
wineserver, so none may be left over from elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import netns_unavailable_reason, run_in_netns, sockstat_tw, wait_until
from tests.support.traffic import CHURNER_SCRIPT, Listener
from tests.support.windows_lane import (
    Lane,
    LaneProcess,
    LaneResult,
    lane_cache,
    lane_unavailable_reason,
    windows_path,
)


def _skip_reason() -> str | None:
    if os.environ.get("PORTPRESSURE_WINDOWS_LANE") != "1":
        return "the Windows lane runs these (tools/windows_lane/check.sh sets PORTPRESSURE_WINDOWS_LANE=1)"
    return lane_unavailable_reason() or netns_unavailable_reason()


pytestmark = [pytest.mark.windows_lane, pytest.mark.skipif((reason := _skip_reason()) is not None,
                                                           reason=reason or "")]

CLI_TIMEOUT_S = 120.0  # a CLI start costs ~4 s under Wine; far more means it hangs
NARROW = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}
MIB_STATE = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
             7: "BOUND", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}  # /proc/net/tcp "st"

@pytest.fixture(autouse=True)
def no_wineserver_left() -> Any:
    """Each test starts and ends without a wineserver for the lane's prefix."""
    lane = Lane()
    lane.stop_server()
    yield
    lane.stop_server()


def portpressure(lane: Lane, *args: str, env: dict[str, str] | None = None) -> LaneResult:
    return lane.run(["-m", "gui.launcher", *args], CLI_TIMEOUT_S, env=env)


def json_lines(result: LaneResult) -> list[dict[str, Any]]:
    assert result.returncode in (0, 1), result.describe()
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def kernel_states() -> Counter[str]:
    """Socket states as this namespace's kernel lists them (/proc/net/tcp and tcp6)."""
    counts: Counter[str] = Counter()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                counts[MIB_STATE.get(int(line.split()[3], 16), "BOUND")] += 1
    return counts


TRANSIENT = ("SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK", "CLOSING")


def settled() -> bool:
    """The churned connections have all closed: no socket between states, (nearly) all of the 500
    in TIME_WAIT (about one run in five, one of Wine's connections ends without one)."""
    states = kernel_states()
    return states["TIME_WAIT"] >= 495 and not any(states[s] for s in TRANSIENT)


def churn_linux(port: int, count: int) -> None:
    for _ in range(count):
        socket.create_connection(("127.0.0.1", port)).close()


# -- (b) the socket table through the Windows source ----------------------------------------------
def _two_churners() -> dict[str, Any]:
    lane = Lane()
    with Listener("127.0.0.1", 0) as listener, Listener("127.0.0.1", 0, mode="never_close") as holder:
        churner = lane.start(["-c", CHURNER_SCRIPT, "127.0.0.1", str(listener.port), "300", str(holder.port),
                              "5"])
        try:
            ready = wait_until(lambda: re.search(r"ready pid=(\d+)", churner.output_so_far()), 60,
                               "the Windows churner")
            churn_linux(listener.port, 200)
            try:
                wait_until(settled, 60, "the 500 connections to settle in TIME_WAIT")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; the kernel lists {dict(kernel_states())}") from None
            before = kernel_states()
            watched = portpressure(lane, "watch", "--count", "2", "--interval", "0.5", "--json",
                                   "--top", "50")
            after = kernel_states()
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                kernel_range = [int(v) for v in f.read().split()]
        finally:
            _stop(churner)
    return {"windows_pid": int(ready[1]), "before": before, "after": after, "samples": json_lines(watched),
            "stderr": watched.stderr, "range": kernel_range}


def _stop(process: LaneProcess) -> None:
    if process.popen.stdin is not None and not process.popen.stdin.closed:
        process.popen.stdin.write(b"\n")
        process.popen.stdin.flush()
    process.wait(30)


def test_windows_source_reads_the_kernels_table_and_names_the_windows_churner() -> None:
    got = run_in_netns(_two_churners, timeout=300)
    assert got["before"] == got["after"], "the namespace changed while it was read"
    kernel = got["after"]
    sample = got["samples"][-1]
    assert sample["os"] == "Windows", got["stderr"]
    # Every state count is the kernel's: 300 + 200 TIME_WAIT, 5 + 5 ESTABLISHED, two listeners.
    assert 495 <= kernel["TIME_WAIT"] <= 500 and kernel["ESTABLISHED"] == 10 and kernel["LISTEN"] == 2
    assert {s: n for s, n in sample["states"].items() if n} == {s: n for s, n in kernel.items() if n}
    rows = {row["pid"]: row for row in sample["processes"]}
    assert 0 not in rows, "PID 0 is nobody's: never a process row"
    churner = rows[got["windows_pid"]]
    assert churner["name"] == "python.exe"
    assert churner["states"].get("ESTABLISHED") == 5 and churner["connections"] == 5
    # The Linux side (its PID 0 sockets) and the Windows watcher itself own nothing here.
    assert set(rows) == {got["windows_pid"]}, rows
    # The lane's netsh answers with the kernel's range (Wine's own netsh prints nothing).
    assert sample["ports"]["range"] == got["range"]


# -- (c) TcpTimedWaitDelay against Wine's registry -------------------------------------------------
def _delay_state(lane: Lane, env: dict[str, str]) -> dict[str, Any]:
    shown = portpressure(lane, "tune", "show", "--json", env=env)
    assert shown.returncode == 0, shown.describe()
    return next(s for s in json.loads(shown.stdout) if s["name"] == "TcpTimedWaitDelay")


def _registry_file_value(name: str) -> str | None:
    """The value as Wine stored it on disk (system.reg), read without Windows."""
    text = (lane_cache() / "prefix" / "system.reg").read_text(encoding="utf-8", errors="replace")
    section = re.search(r"^\[System\\\\CurrentControlSet\\\\Services\\\\Tcpip\\\\Parameters\].*?(?=^\[|\Z)",
                        text, flags=re.MULTILINE | re.DOTALL | re.IGNORECASE)
    found = re.search(rf'^"{name}"=(\S+)$', section[0] if section else "", flags=re.MULTILINE)
    return found[1] if found else None


def test_tune_time_wait_delay_in_wines_registry_with_the_reboot_pending_view(tmp_path: Path) -> None:
    lane = Lane()
    env = {"PORTPRESSURE_BACKUP_DIR": windows_path(tmp_path / "backups")}
    tidy = {"PORTPRESSURE_BACKUP_DIR": windows_path(tmp_path / "tidy")}
    if _delay_state(lane, env)["value"] is not None:  # left by an earlier, interrupted run
        tidied = portpressure(lane, "tune", "set", "TcpTimedWaitDelay", "default", "--yes", env=tidy)
        assert tidied.returncode == 0, tidied.describe()
    before = _delay_state(lane, env)
    assert (before["value"], before["effective"], before["default"]) == (None, 120, 120)
    assert before["writable"], before["why_not"]

    done = portpressure(lane, "tune", "set", "TcpTimedWaitDelay", "30", "--yes", env=env)
    assert done.returncode == 0, done.describe()
    assert "Done: TcpTimedWaitDelay is now 30 s (read back and verified)." in done.stdout
    assert "Reboot pending: TcpTimedWaitDelay is set to 30 s, but 120 s stays in effect" in done.stdout
    backup = re.search(r"^Backup: (.+)$", done.stdout, flags=re.MULTILINE)
    assert backup is not None, done.stdout
    pending = _delay_state(lane, env)
    assert (pending["value"], pending["effective"]) == (30, 120)
    # The live view forecasts with the 120 s in effect, and says why (bug: it used 30).
    watched = json_lines(portpressure(lane, "watch", "--count", "1", "--json", env=env))[-1]
    assert watched["time_wait_seconds"] == 120.0
    lane.stop_server()  # Wine writes its registry to disk when its server ends
    assert _registry_file_value("TcpTimedWaitDelay") == "dword:0000001e"  # 30

    reverted = portpressure(lane, "tune", "revert", backup[1].strip(), "--yes", env=env)
    assert reverted.returncode == 0, reverted.describe()
    after = _delay_state(lane, env)
    assert (after["value"], after["effective"]) == (None, 120)
    lane.stop_server()
    assert _registry_file_value("TcpTimedWaitDelay") is None


# -- (d) probe: connected, refused, and out of ports (WSAEADDRNOTAVAIL judged with the table) ------
def _probes() -> dict[str, Any]:
    lane = Lane()
    with Listener("127.0.0.1", 9000):
        ok = json_lines(portpressure(lane, "probe", "127.0.0.1", "9000", "--json"))
        refused = portpressure(lane, "probe", "127.0.0.1", "9001")  # text: with the event log line
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # fill the 20-port range with TIME_WAIT
            try:
                churn_linux(9000, 1)
            except OSError:
                break
        exhausted = json_lines(portpressure(lane, "probe", "127.0.0.1", "9000", "--json"))
        time_wait = sockstat_tw()
    return {"ok": ok, "refused": refused, "exhausted": exhausted, "time_wait": time_wait}


def test_probe_connects_is_refused_and_runs_out_of_ports() -> None:
    got = run_in_netns(_probes, sysctls=NARROW, timeout=300)
    [ok] = got["ok"]
    assert ok["ok"] and ok["category"] == "ok" and 40000 <= ok["local_port"] <= 40019
    refused: LaneResult = got["refused"]
    assert refused.returncode == 1, refused.describe()
    assert "FAILED refused (connect): [WinError 10061]" in refused.stdout
    assert "NOT port exhaustion" in refused.stdout
    # Wine's wevtutil prints nothing: that is "not read", never "no events" (bug 5).
    assert "Windows System log not read: wevtutil printed nothing" in refused.stdout
    assert got["time_wait"] >= 20
    [exhausted] = got["exhausted"]
    assert (exhausted["errno"], exhausted["errno_name"]) == (10049, "WSAEADDRNOTAVAIL")
    assert exhausted["category"] == "ports_exhausted", exhausted["diagnosis"]
    assert "every local port of the busiest pool held" in exhausted["diagnosis"]


# -- (e) the window, offscreen -------------------------------------------------------------------
PNG_END = b"IEND\xaeB`\x82"


def test_gui_screenshot_offscreen(tmp_path: Path) -> None:
    lane = Lane()
    png = tmp_path / "window.png"
    window = lane.start(["-m", "gui.launcher", "gui", "--screenshot", windows_path(png), "--after", "3"],
                        env={"QT_QPA_PLATFORM": "offscreen"})
    try:
        wait_until(lambda: png.is_file() and png.read_bytes().endswith(PNG_END), 120, "the screenshot",
                   poll=0.2)
    finally:
        # Under Wine offscreen, QApplication.quit() spins after the screenshot: the harness ends it.
        with contextlib.suppress(TimeoutError):
            window.wait(10)
    shown = lane_cache() / "out" / "gui-screenshot.png"  # kept for people to look at
    shown.parent.mkdir(exist_ok=True)
    shown.write_bytes(png.read_bytes())
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    assert not image.isNull() and image.width() >= 800 and image.height() >= 500
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20, "a blank or one-colour window"


def test_the_runner_gives_a_windows_pythons_status_and_output() -> None:
    # The lane's runner itself: a Windows Python, its exit status and its output, on pipes.
    result = Lane().python("import sys; print(sys.platform, sys.version_info[:2]); sys.exit(3)", 60)
    assert (result.returncode, result.stdout.split()) == (3, ["win32", "(3,", "11)"])
