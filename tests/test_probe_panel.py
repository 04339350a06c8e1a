"""gui.probe_panel.ProbePanel with pytest-qt (QT_QPA_PLATFORM=offscreen).

The series-and-cancel and event-log tests run in the test process against a Listener on
127.0.0.1 (loopback only): Qt must not be carried into a forked namespace child. The
exhaustion test needs the narrow port range, so it runs the panel in a fresh interpreter
that enters its own namespace before Qt starts (as tests/test_gui_netns.py does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.eventlog import parse_summary  # noqa: E402
from tests.support.netns import requires_netns  # noqa: E402
from tests.support.traffic import Listener  # noqa: E402
from tests.test_eventlog import SEVERAL  # noqa: E402
from tests.test_probe import NARROW, check_contract  # noqa: E402

pytestmark = pytest.mark.gui


def make_panel(qtbot, **kwargs):
    from gui.probe_panel import ProbePanel

    panel = ProbePanel(event_log_reader=kwargs.pop("event_log_reader", None), **kwargs)
    qtbot.addWidget(panel)
    panel.show()
    return panel


def fill(panel, **values: str) -> None:
    from PySide6.QtTest import QTest

    for name, text in values.items():
        edit = panel.fields[name]
        edit.selectAll()
        edit.del_()
        QTest.keyClicks(edit, text)  # typed, as a user would: marks the field as touched


def test_invalid_input_is_marked_on_the_field_and_run_is_disabled(qtbot) -> None:
    panel = make_panel(qtbot)
    # At first: nothing typed, Run disabled, but no field shouted at yet.
    assert not panel.run_button.isEnabled()
    assert panel.fields["host"].styleSheet() == "" and not panel.input_error.isVisible()

    fill(panel, host="db01.example.com:1433", port="1433")
    host = panel.fields["host"]
    message = panel.field_error("host")
    assert message and "includes a port" in message
    assert "border" in host.styleSheet() and host.toolTip() == message and host.property("invalid")
    assert message in panel.input_error.text() and panel.input_error.isVisible()
    assert not panel.run_button.isEnabled()
    assert panel.start() is False and panel.results() == [] and not panel.is_running

    fill(panel, host="127.0.0.1")
    assert panel.field_error("host") is None and host.styleSheet() == "" and host.toolTip() == ""
    assert panel.run_button.isEnabled()

    for name, bad, says in (("port", "70000", "out of range"), ("timeout", "-1", "more than 0 seconds"),
                            ("count", "abc", "whole number"), ("count", "0", "out of range"),
                            ("interval", "x", "number of seconds")):
        good = panel.fields[name].text()
        fill(panel, **{name: bad})
        assert says in (panel.field_error(name) or ""), name
        assert "border" in panel.fields[name].styleSheet() and not panel.run_button.isEnabled()
        fill(panel, **{name: good})
        assert panel.field_error(name) is None and panel.run_button.isEnabled()


def test_a_series_runs_off_the_gui_thread_and_cancel_stops_it_midway(qtbot) -> None:
    from PySide6.QtCore import Qt

    requested = 200
    with Listener("127.0.0.1", 0) as listener:
        panel = make_panel(qtbot)
        fill(panel, host="127.0.0.1", port=str(listener.port), count=str(requested), interval="0.05")
        changes: list[int] = []
        panel.results_changed.connect(lambda: changes.append(len(panel.results())))
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
        assert panel.is_running and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
        assert panel.progress.maximum() == requested
        qtbot.waitUntil(lambda: len(panel.results()) >= 3, timeout=10_000)

        clicked = time.monotonic()
        panel.cancel_button.click()
        qtbot.waitUntil(lambda: not panel.is_running, timeout=2_000)
        stopped_after = time.monotonic() - clicked

        results = panel.results()
        assert 3 <= len(results) < requested
        assert stopped_after < 0.5
        assert changes == list(range(1, len(results) + 1))
        for obj in results:
            check_contract(obj)
            assert obj["ok"] is True and obj["port"] == listener.port
        # Back to idle: Run again possible, Cancel off, fields editable, the summary says so.
        assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
        assert not panel.fields["host"].isReadOnly()
        assert panel.progress.value() == len(results) < panel.progress.maximum()
        assert panel.status.text().startswith(f"{len(results)} of {requested} attempts to 127.0.0.1:")
        assert panel.status.text().endswith("cancelled") and "p50" in panel.status.text()
        assert panel.table.rowCount() == len(results)
        assert panel.table.item(0, 2).text() == "connected"
        # Every result above connected to this listener (ok, its port). Its thread accepts behind
        # the kernel, which drops a connection the prober has already reset from the queue (often
        # under Wine, where the thread is slow): it saw no more than the results plus the attempt
        # cancelled mid-connect, and maybe none.
        assert listener.accepted <= len(results) + 1


def test_deleting_the_panel_mid_run_stops_its_worker(qtbot) -> None:
    import shiboken6

    from gui.probe_panel import ProbePanel

    with Listener("127.0.0.1", 0) as listener:
        panel = ProbePanel(event_log_reader=None)
        fill(panel, host="127.0.0.1", port=str(listener.port), count="1000", interval="0.05")
        assert panel.start()
        qtbot.waitUntil(lambda: len(panel.results()) >= 2, timeout=10_000)
        run = panel._run  # plain Python: still reachable once the widget is gone
        panel.deleteLater()
        qtbot.waitUntil(lambda: not shiboken6.isValid(panel), timeout=2_000)
        qtbot.waitUntil(lambda: run.thread is not None and not run.thread.is_alive(), timeout=2_000)
        assert run.prober is not None and run.prober.cancelled


def test_failures_are_listed_and_the_event_log_summary_is_shown(qtbot) -> None:
    recorded = parse_summary(SEVERAL)
    with Listener("127.0.0.1", 0) as listener:
        closed = listener.port  # nothing listens there once the listener is closed
    panel = make_panel(qtbot, event_log_reader=lambda: recorded)
    fill(panel, host="127.0.0.1", port=str(closed), count="2", interval="0")
    attempts: list = []
    panel.attempted.connect(attempts.append)
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.is_running, timeout=10_000)
    assert [r["category"] for r in panel.results()] == ["refused", "refused"]
    # Every attempt is told to the verdict, which knows refused is not exhaustion.
    assert [r.category for r in attempts] == ["refused", "refused"]
    refused = "WSAECONNREFUSED" if sys.platform == "win32" else "ECONNREFUSED"  # the OS's own name
    assert panel.table.item(1, 2).text() == f"refused ({refused})"
    assert "NOT port exhaustion" in panel.diagnosis.text()
    assert panel.event_log_label.isVisible()
    assert "3 x event 4231" in panel.event_log_label.text()
    assert panel.event_log() == recorded.to_json()


def test_no_event_log_line_where_there_is_no_event_log(qtbot) -> None:
    panel = make_panel(qtbot, event_log_reader=lambda: None)
    with Listener("127.0.0.1", 0) as listener:
        fill(panel, host="127.0.0.1", port=str(listener.port))
        assert panel.start()
        qtbot.waitUntil(lambda: not panel.is_running, timeout=10_000)
    assert panel.results()[0]["ok"] is True
    assert not panel.event_log_label.isVisible() and panel.event_log() is None


# -- the real failure, in a namespace ------------------------------------------------------------

def _child() -> dict:
    from tests.support.netns import enter_new_netns, wait_until
    from tests.support.traffic import Churner

    enter_new_netns(NARROW)
    listener = Listener("127.0.0.1", 9000)
    churner = Churner("127.0.0.1", 9000, hold_s=0.0, duration_s=60, name="pp-panel-churn")
    try:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to exhaust the range")
        from PySide6.QtTest import QTest
        from PySide6.QtWidgets import QApplication

        from gui.probe_panel import ProbePanel

        app = QApplication([sys.argv[0]])
        panel = ProbePanel(event_log_reader=None)
        panel.show()
        failures: list = []
        panel.attempted.connect(failures.append)
        for name, text in (("host", "127.0.0.1"), ("port", "9000"), ("count", "1")):
            panel.fields[name].setText(text)
        started = panel.start()
        deadline = time.monotonic() + 10
        while panel.is_running and time.monotonic() < deadline:
            QTest.qWait(20)
        row = [panel.table.item(0, c).text() for c in range(panel.table.columnCount())]
        exhausted = [(r.target, r.error) for r in failures if r.category == "ports_exhausted"]
        out = {"started": started, "failures": exhausted,
               "results": panel.results(), "row": row}
        panel.close()
        app.processEvents()
        return out
    finally:
        churner.stop()
        listener.close()


@requires_netns
@pytest.mark.netns
def test_an_exhaustion_failure_is_signalled_for_the_verdict() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, str(Path(__file__)), "--child"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["started"] is True
    [obj] = got["results"]
    check_contract(obj)
    assert obj["category"] == "ports_exhausted" and obj["errno"] == 99
    assert got["failures"] == [["127.0.0.1:9000", "[Errno 99] Cannot assign requested address"]]
    assert got["row"][1:3] == ["127.0.0.1:9000", "ports_exhausted (EADDRNOTAVAIL)"]
    assert got["row"][4].startswith("No free local port was left")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(_child()))
        sys.exit(0)
    print("usage: test_probe_panel.py --child", file=sys.stderr)
    sys.exit(2)


def test_repeat_until_cancel_tests_again_and_again_like_the_canary(qtbot) -> None:
    with Listener("127.0.0.1", 0) as listener:
        panel = make_panel(qtbot)
        attempts: list = []
        panel.attempted.connect(attempts.append)
        fill(panel, host="127.0.0.1", port=str(listener.port), interval="0.05")
        panel.repeat_box.setChecked(True)
        assert not panel.fields["count"].isEnabled()  # no count: it runs until Cancel
        assert panel.start()
        qtbot.waitUntil(lambda: len(attempts) >= 3, timeout=10_000)
        assert panel.is_running
        panel.cancel()
        qtbot.waitUntil(lambda: not panel.is_running, timeout=5_000)
        done = len(attempts)
        assert all(r.ok for r in attempts) and done == len(panel.results())
        assert panel.last_summary is not None and panel.last_summary.attempts == done
        assert panel.last_summary.successes == done and panel.last_summary.cancelled
        # Nothing more arrives once cancelled, and a plain run still works afterwards.
        panel.repeat_box.setChecked(False)
        fill(panel, count="1")
        assert panel.start()
        qtbot.waitUntil(lambda: not panel.is_running, timeout=10_000)
        assert len(attempts) == done + 1
