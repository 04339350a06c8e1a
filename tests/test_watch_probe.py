"""`watch --probe`: the canary's results are events and evidence, setting changes are
events, and the verdict follows both (DESIGN.md "Contract additions"), for real in a
private network namespace whose 20-port range a churner has exhausted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests import test_gui_window as window_tests
from tests.support.netns import netns_unavailable_reason, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener
from tests.test_watch_cli import ROOT, check_contract, portpressure

settings = window_tests.settings
make_window = window_tests.make_window
NARROW = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}
LAUNCH = "import sys; from gui.launcher import main; sys.exit(main())"


class Lines:
    """A running `portpressure watch --json`, its lines parsed as they come."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCH, "watch", "--json", *args], cwd=ROOT,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        stdin=subprocess.DEVNULL)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def first(self, what: str, predicate, after: int = 0, timeout: float = 30.0) -> int:
        """Index of the first line at or after `after` that satisfies predicate."""
        def found() -> int | None:
            return next((i for i in range(after, len(self.lines)) if predicate(self.lines[i])), None)
        return int(wait_until(lambda: (i := found()) is not None and i + 1, timeout, what)) - 1

    def stop(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=10)
        self._reader.join(5)
        return err


def events(line: dict, kind: str) -> list[dict]:
    return [e for e in line["events"] if e["kind"] == kind]


def _canary_body(backups: str, recording: str) -> dict:
    env = dict(os.environ, PORTPRESSURE_BACKUP_DIR=backups)
    with Listener("127.0.0.1", 9000), \
            Churner("127.0.0.1", 9000, hold_s=0.02, duration_s=90, name="churner") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the 20-port range")
        watch = Lines("--interval", "0.3", "--probe", "127.0.0.1:9000", "--probe-every", "0.3",
                      "--duration", "80", "--record", recording, env=env)
        try:
            failed = watch.first("critical with a failed test", lambda o: o["verdict"]["level"] == "critical"
                                 and any(e["category"] == "ports_exhausted" for e in events(o, "probe")))
            fix = subprocess.run([sys.executable, "-c", LAUNCH, "tune", "set", "net.ipv4.tcp_tw_reuse", "1",
                                  "--yes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
            assert fix.returncode == 0, fix.stderr
            setting = watch.first("the setting event", lambda o: any(
                e["name"] == "net.ipv4.tcp_tw_reuse" for e in events(o, "setting")), after=failed + 1)
            success = watch.first("a successful test after the fix",
                                  lambda o: any(e["ok"] for e in events(o, "probe")), after=setting)
            recovered = watch.first("the verdict to leave critical",
                                    lambda o: o["verdict"]["level"] != "critical", after=setting)
            # Changed outside PortPressure, by the OS's own tool: an event all the same.
            widen = subprocess.run(["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40199"],
                                   capture_output=True, text=True, timeout=10)
            assert widen.returncode == 0, widen.stderr
            widened = watch.first("the sysctl -w event", lambda o: any(
                e["name"] == "net.ipv4.ip_local_port_range" for e in events(o, "setting")), after=recovered)
            watch.first("five more samples", lambda o: True, after=widened + 5)
        finally:
            stderr = watch.stop()
    return {"lines": watch.lines, "failed": failed, "setting": setting, "success": success,
            "recovered": recovered, "widened": widened, "stderr": stderr}


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory) -> dict:
    """One run of the story for the tests below: its lines and its recording."""
    if (reason := netns_unavailable_reason()) is not None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("canary")
    r = run_in_netns(_canary_body, str(folder / "backups"), str(folder / "canary.jsonl.gz"), sysctls=NARROW,
                     timeout=150)
    return {**r, "recording": folder / "canary.jsonl.gz"}


@pytest.mark.netns
def test_watch_probe_follows_the_fix_and_records_every_change(canary_run: dict) -> None:
    r = canary_run
    lines = r["lines"]
    for obj in lines:
        check_contract(obj)
    failed = lines[r["failed"]]
    probe = next(e for e in events(failed, "probe") if not e["ok"])
    assert probe["target"] == "127.0.0.1:9000" and probe["category"] == "ports_exhausted"
    reasons = failed["verdict"]["reasons"]
    assert any("outbound test to 127.0.0.1:9000 failed" in reason.lower() for reason in reasons), reasons
    # After the fix: the change, then successful tests, then a verdict that is not critical.
    assert r["failed"] < r["setting"] <= r["success"]
    assert r["setting"] <= r["recovered"]
    change = next(e for e in events(lines[r["setting"]], "setting") if e["name"] == "net.ipv4.tcp_tw_reuse")
    assert (change["old"], change["new"]) == (0, 1) and "0 -> 1" in change["text"]
    # Each change is one event, however many samples follow it.
    every = [e for obj in lines for e in events(obj, "setting")]
    assert [(e["name"], e["old"], e["new"]) for e in every] == [
        ("net.ipv4.tcp_tw_reuse", 0, 1), ("net.ipv4.ip_local_port_range", [40000, 40019], [40000, 40199])]
    # A setting event comes with the first sample that reflects it, not later.
    for before, obj in zip(lines, lines[1:], strict=False):
        for e in events(obj, "setting"):
            assert before["time"] <= e["time"] <= obj["time"], (e, before["time"], obj["time"])
    assert "Traceback" not in r["stderr"]


@pytest.mark.parametrize("value, needle", [("nohost", "HOST:PORT"), ("127.0.0.1:0", "port"),
                                           ("127.0.0.1:99999", "out of range"), ("[::1]:", "port")])
def test_bad_probe_targets_are_one_line_and_exit_2(value: str, needle: str) -> None:
    result = portpressure("watch", "--count", "1", "--probe", value)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--probe" in lines[0] and needle in lines[0], lines


def test_probe_every_must_be_positive() -> None:
    result = portpressure("watch", "--count", "1", "--probe", "127.0.0.1:9", "--probe-every", "0")
    assert result.returncode == 2 and "--probe-every" in result.stderr


@pytest.mark.netns
@pytest.mark.gui
def test_the_replay_shows_the_changes_and_the_settings_of_each_moment(qtbot, make_window, canary_run) -> None:
    """The recording keeps every event: replayed, the plot marks the changes and the tests'
    turns, and the status bar gives the settings in effect at the moment under the cursor."""
    window = make_window(start=False)
    with qtbot.waitSignal(window.loading_finished, timeout=20_000) as loaded:
        assert window.open_recording(canary_run["recording"])
    assert loaded.args == [True]
    recording = window.session.recording
    kinds = {e.kind for e in recording.events}
    assert kinds == {"setting", "probe"}
    labels = window.plot.markers.labels()
    assert "tcp_tw_reuse 0→1" in labels and "ip_local_port_range 40000-40019→40000-40199" in labels
    assert "test failed" in labels and "test connected" in labels
    slider = window.replay_bar.slider
    slider.setValue(0)
    assert "tcp_tw_reuse 0" in window.status_bar.source_label.text()
    assert "ports 40000-40019" in window.status_bar.source_label.text()
    slider.setValue(slider.maximum())
    assert "tcp_tw_reuse 1" in window.status_bar.source_label.text()
    assert "ports 40000-40199" in window.status_bar.source_label.text()
