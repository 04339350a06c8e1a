"""The window follows what happens (the support engineer's walk): in a private network
namespace whose 20-port range a churner has exhausted, the banner is critical; an
outbound test fails; the fix (tcp_tw_reuse 0 -> 1) is applied through the OS settings
panel; a test connects. Within a sample of that success the banner leaves critical,
the status bar shows the new value, the plot holds a marker for the change, and Save
evidence's report lists the change and both tests.

Qt must not exist before the namespace is entered, so the body runs in a fresh
interpreter (`python3 tests/test_gui_follows_the_fix.py --child DIR`), as in
tests/test_gui_netns.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.gui_child import child_main, open_window, pump_until, run_child  # noqa: E402
from tests.support.netns import requires_netns  # noqa: E402

SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}
TW_REUSE = "net.ipv4.tcp_tw_reuse"


def _child(out_dir: Path) -> dict:
    from tests.support.netns import enter_new_netns, wait_until
    from tests.support.traffic import Churner, Listener

    enter_new_netns(SYSCTLS)
    os.environ["PORTPRESSURE_BACKUP_DIR"] = str(out_dir / "backups")
    listener = Listener("127.0.0.1", 9000)
    churner = Churner("127.0.0.1", 9000, hold_s=0.02, duration_s=150, name="pp-fix-churner")
    wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the 20-port range")

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    app, window = open_window(out_dir)
    shown: list = []
    window.sample_shown.connect(shown.append)


    probes = window.probe_panel
    attempts: list = []
    shown_at: list[int] = []  # how many samples were on screen when each result came
    probes.attempted.connect(lambda result: (attempts.append(result), shown_at.append(len(shown))))

    def outbound_test() -> object:
        """One attempt through the Outbound test tab, as the user clicks it."""
        before = len(attempts)
        for name, text in (("host", "127.0.0.1"), ("port", "9000"), ("count", "1")):
            probes.fields[name].setText(text)
        QTest.mouseClick(probes.run_button, Qt.MouseButton.LeftButton)
        pump_until(lambda: len(attempts) > before and not probes.is_running, 15, "the outbound test")
        return attempts[-1]

    panel = window.settings_panel
    try:
        pump_until(lambda: window.banner.level == "critical", 60, "a critical banner",
                   lambda: f"levels {[s.verdict.level for s in shown]}")
        failed = outbound_test()
        reuse_before = window.status_bar.source_label.text()

        # The fix, through the OS settings panel: select, type, Apply, confirm, OK.
        pump_until(lambda: len(panel.states) >= 2 and not panel.busy, 20, "the settings panel")
        assert panel.select(TW_REUSE)
        panel.value_edit.setText("1")
        panel.apply_dialog = None
        QTest.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
        dialog = pump_until(lambda: panel.apply_dialog is not None and panel.apply_dialog.isVisible()
                            and panel.apply_dialog, 20, "the apply dialog")
        QTest.mouseClick(dialog.confirm, Qt.MouseButton.LeftButton)
        QTest.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        reuse_file = Path("/proc/sys/net/ipv4/tcp_tw_reuse")
        pump_until(lambda: reuse_file.read_text().strip() == "1", 20, "the write")

        # The churner races the test for every freed port: test until one connects.
        deadline = time.monotonic() + 30
        while not (success := outbound_test()).ok and time.monotonic() < deadline:
            pass
        assert success.ok, success
        samples_then = shown_at[-1]
        before = shown[samples_then - 1].verdict.level  # the failed test's evidence still holds it
        # One sample may already be judged and on its way when the success arrives.
        pump_until(lambda: len(shown) >= samples_then + 2, 10, "two more samples")
        after = [s.verdict.level for s in shown[samples_then:samples_then + 2]]
        status_after = window.status_bar.source_label.text()
        markers = window.plot.markers.labels()
        bundle = window.save_evidence()
        report = json.loads((bundle / "report.json").read_text()) if bundle else {}
        return {
            "failed": failed.to_json(), "success": success.to_json(), "before": before, "after": after,
            "banner": window.banner.level, "status_before": reuse_before, "status_after": status_after,
            "markers": markers, "events": report.get("events", []),
            "report_level": report.get("sample", {}).get("verdict", {}).get("level"),
        }
    finally:
        window.close()
        app.processEvents()
        churner.stop()
        listener.close()


@requires_netns
@pytest.mark.netns
@pytest.mark.gui
@pytest.mark.slow
def test_the_window_follows_the_fix_from_critical_to_clear(tmp_path: Path) -> None:
    r = run_child(__file__, tmp_path)
    assert r["failed"]["category"] == "ports_exhausted"
    assert r["success"]["ok"] is True
    # The fix alone leaves the failed test standing; the success ends it within a sample
    # (one more may have been judged and on its way when the success came).
    assert r["before"] == "critical"
    assert r["after"][-1] != "critical", r["after"]
    assert r["banner"] != "critical" and r["report_level"] != "critical"
    assert "tcp_tw_reuse 0" in r["status_before"]
    assert "tcp_tw_reuse 1" in r["status_after"]
    assert "tcp_tw_reuse 0→1" in r["markers"]
    settings = [e for e in r["events"] if e["kind"] == "setting"]
    assert [(e["name"], e["old"], e["new"]) for e in settings] == [(TW_REUSE, 0, 1)]
    tests = [(e["target"], e["ok"], e["category"]) for e in r["events"] if e["kind"] == "probe"]
    assert ("127.0.0.1:9000", False, "ports_exhausted") in tests
    assert tests[-1] == ("127.0.0.1:9000", True, "ok")
    times = [e["time"] for e in r["events"]]
    assert times == sorted(times)  # a timeline


if __name__ == "__main__":
    child_main(_child, __file__)
