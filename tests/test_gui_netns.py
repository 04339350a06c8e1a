"""The window against the real failure: inside a private network namespace with a
50-port range and tcp_tw_reuse=0, a Churner child churns connections to a Listener.
Its pid must reach the top of the process table within a few samples, the banner
must go critical once the range is exhausted, the details dialog must name it, and
Ctrl+S must save that evidence.

Qt must not exist before the namespace is entered (nor be inherited through a fork),
so the body runs in a fresh interpreter: `python3 tests/test_gui_netns.py --child DIR`
enters the namespace first, starts the traffic, then creates the QApplication.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.gui_child import child_main, open_window, pump_until, run_child  # noqa: E402
from tests.support.netns import requires_netns  # noqa: E402

SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40049", "net.ipv4.tcp_tw_reuse": "0"}
CHURNER_NAME = "pp-gui-churner"
FEW_SAMPLES = 5


def _child(out_dir: Path) -> dict:
    from tests.support.netns import enter_new_netns, wait_until
    from tests.support.traffic import Churner, Listener

    enter_new_netns(SYSCTLS)
    listener = Listener("127.0.0.1", 0, mode="client_closes")
    # The trouble begins before the tool is opened, as it does on a real server. Each
    # connection is held 0.3 s, so the 50 ports run out ~15 s later.
    churner = Churner("127.0.0.1", listener.port, hold_s=0.3, duration_s=120, name=CHURNER_NAME)
    wait_until(lambda: churner.ok > 0, 10, "the churner's first connection")

    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from gui.table_models import KEY_ROLE

    app, window = open_window(out_dir)
    levels: list[str] = []
    samples = []
    window.sample_shown.connect(lambda s: (levels.append(s.verdict.level), samples.append(s)))


    def top_pid() -> int | None:
        proxy = window.processes.process_proxy
        return proxy.data(proxy.index(0, 0), KEY_ROLE) if proxy.rowCount() else None

    try:
        pump_until(lambda: top_pid() == churner.pid, 30, "the churner at the top of the table")
        samples_until_top = len(levels)
        top_name = window.processes.process_proxy.index(0, 1).data()
        pump_until(lambda: window.banner.level == "critical", 60, "a critical banner",
                   lambda: f"levels {levels}")
        samples_until_critical = len(levels)
        # Read the banner as it went critical (a later sample may already be on screen).
        banner_title = window.banner.title_label.text()
        reasons = window.banner.reasons_text()
        addr_not_avail = pump_until(lambda: churner.addr_not_avail, 30, "EADDRNOTAVAIL in the churner")
        gauge = window.banner.gauge.value()
        still_top = top_pid() == churner.pid

        # Double-click the top row: the details dialog names the process.
        view = window.processes.process_view
        rect = view.visualRect(window.processes.process_proxy.index(0, 1))
        # Qt 6's QTest double click needs the press of a first click to pick the index.
        QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         rect.center())
        QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                          rect.center())
        dialogs = window.processes.dialogs
        dialog = pump_until(lambda: dialogs[-1] if dialogs else None, 5, "the dialog")
        pump_until(lambda: dialog.details is not None, 30, "the process details")
        details = dialog.details

        # Ctrl+S with the dialog still open (the evidence shortcuts are application-wide).
        QTest.keyClick(dialog, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        report_path = pump_until(lambda: next((out_dir / "evidence").glob("*/report.json"), None), 10,
                                 "the report")
        dialog.close()
        report = json.loads(report_path.read_text())
        return {
            "churner_pid": churner.pid, "samples_until_top": samples_until_top, "top_name": top_name,
            "samples_until_critical": samples_until_critical, "levels": levels,
            "addr_not_avail": addr_not_avail, "banner_title": banner_title, "reasons": reasons,
            "gauge": gauge, "still_top": still_top,
            "details": {"status": details.status, "name": details.name, "cmdline": details.cmdline,
                        "exe": details.exe},
            "report": {"level": report["sample"]["verdict"]["level"],
                       "top_pid": report["sample"]["processes"][0]["pid"],
                       "pressure": report["sample"]["ports"]["pressure"],
                       "range": report["sample"]["ports"]["range"]},
            "limits": list(window.session.latest.limits) if window.session.latest else [],
            "not_critical_after_critical": [
                (i, s.verdict.level, s.verdict.title, s.ports.pool, s.ports.in_use, s.ports.capacity)
                for i, s in enumerate(samples)
                if i >= samples_until_critical and s.verdict.level != "critical"],
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
def test_churner_tops_the_table_and_the_banner_goes_critical(tmp_path: Path) -> None:
    result = run_child(__file__, tmp_path)
    assert result["samples_until_top"] <= FEW_SAMPLES, result
    assert result["top_name"] == CHURNER_NAME
    assert result["levels"][-1] == "critical" and result["still_top"], result
    assert result["addr_not_avail"] > 0  # the range really was exhausted
    # Any of the critical titles (core.analysis._critical_title): exhausted, failing, about to run out.
    assert any(word in result["banner_title"] for word in ("exhausted", "failing", "run out"))
    assert f"{CHURNER_NAME} (pid {result['churner_pid']})" in result["reasons"]
    assert result["gauge"] >= 900  # pressure gauge at 90% or more
    assert result["details"]["status"] == "running" and result["details"]["name"] == CHURNER_NAME
    assert result["report"] == {"level": "critical", "top_pid": result["churner_pid"],
                                "pressure": pytest.approx(1.0, abs=0.1), "range": [40000, 40049]}


if __name__ == "__main__":
    child_main(_child, __file__)
