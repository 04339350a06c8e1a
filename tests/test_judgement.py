"""One judgement downstream of the sampler: evidence per pool, events handed to the
next sample, setting changes seen once whoever made them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core import analysis
from core.judgement import Judgement
from core.model import UNJUDGED, Forecast, PortConfig, PortsSummary, Rates, Sample
from core.probe import ProbeResult
from core.settings_watch import SettingsWatch
from core.tuning.linux import PORT_RANGE, TW_REUSE, LinuxSysctlBackend

LINUX = PortConfig("Linux", (40000, 40019), (), 60.0, "per_destination", tw_reuse=0)
WINDOWS = PortConfig("Windows", (49152, 65535), (), 120.0, "per_local_address")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quiet_sample(iso: str = "2026-01-01T00:00:10.000+00:00") -> Sample:
    ports = PortsSummary((40000, 40019), 20, 2, 0.1, "127.0.0.1 -> 127.0.0.1:9000")
    return Sample(iso, 0.0, {}, ports, Rates(), Forecast(), (), (), UNJUDGED, 1.0)


def result(ok: bool, at: float, port: int = 9000, iso: str = "2026-01-01T00:00:05.000+00:00") -> ProbeResult:
    return ProbeResult(host="127.0.0.1", port=port, ok=ok, phase="connect", elapsed_ms=1.0,
                       errno=None if ok else 99,
                       error=None if ok else "[Errno 99] Cannot assign requested address",
                       category="ok" if ok else "ports_exhausted", diagnosis="", time_iso=iso,
                       monotonic=at, address="127.0.0.1", local_port=40001 if ok else None,
                       connect_ms=0.2 if ok else None)


def test_a_failed_test_makes_the_sample_critical_and_is_its_event() -> None:
    clock = Clock()
    judgement = Judgement(clock)
    assert judgement.judge(quiet_sample(), LINUX).verdict.level == "ok"
    judgement.note_probe(result(False, clock.now))
    judged = judgement.judge(quiet_sample(), LINUX)
    assert judged.verdict.level == "critical"
    assert judged.verdict.title == "Outbound connections are failing: no free local port"
    [event] = judged.events
    assert event.to_json() | {"time": "-"} == {
        "time": "-", "kind": "probe", "target": "127.0.0.1:9000", "ok": False, "category": "ports_exhausted",
        "error": "[Errno 99] Cannot assign requested address", "elapsed_ms": 1.0,
        "text": "Outbound test to 127.0.0.1:9000 failed (ports_exhausted): "
                "[Errno 99] Cannot assign requested address."}
    # The event is handed to one sample only; the evidence stays.
    again = judgement.judge(quiet_sample(), LINUX)
    assert again.events == () and again.verdict.level == "critical"


def test_a_success_through_the_same_pool_ends_the_failure_evidence_at_once() -> None:
    clock = Clock()
    judgement = Judgement(clock)
    judgement.note_probe(result(False, clock.now))
    judgement.note_probe(result(True, clock.now + 1, port=9001))  # another pool on Linux
    assert judgement.judge(quiet_sample(), LINUX).verdict.level == "critical"
    judgement.note_probe(result(True, clock.now + 2))
    judged = judgement.judge(quiet_sample(), LINUX)
    assert judged.verdict.level == "ok"
    assert [e.details["ok"] for e in judged.events] == [True]
    # A new failure after the success counts again.
    judgement.note_probe(result(False, clock.now + 3))
    assert judgement.judge(quiet_sample(), LINUX).verdict.level == "critical"


def test_on_windows_any_success_ends_the_failure_evidence() -> None:
    clock = Clock()
    judgement = Judgement(clock)
    judgement.note_probe(result(False, clock.now))
    assert judgement.judge(quiet_sample(), WINDOWS).verdict.level == "critical"
    judgement.note_probe(result(True, clock.now + 1, port=443))
    assert judgement.judge(quiet_sample(), WINDOWS).verdict.level == "ok"


def test_failures_age_out() -> None:
    clock = Clock()
    judgement = Judgement(clock)
    judgement.note_probe(result(False, clock.now))
    clock.now += analysis.PROBE_EVIDENCE_SECONDS - 1
    assert judgement.judge(quiet_sample(), LINUX).verdict.level == "critical"
    clock.now += 2
    assert judgement.judge(quiet_sample(), LINUX).verdict.level == "ok"


def test_a_refused_input_is_neither_evidence_nor_event() -> None:
    judgement = Judgement(Clock())
    bad = replace(result(False, 0.0), category="invalid_input", error="port is empty")
    judgement.note_probe(bad)
    assert judgement.judge(quiet_sample(), LINUX).events == ()


def _proc_sys(root: Path, port_range: str, reuse: str) -> None:
    ipv4 = root / "net" / "ipv4"
    ipv4.mkdir(parents=True, exist_ok=True)
    (ipv4 / "ip_local_port_range").write_text(port_range + "\n")
    (ipv4 / "tcp_tw_reuse").write_text(reuse + "\n")
    (ipv4 / "tcp_fin_timeout").write_text("60\n")


def test_a_setting_change_is_one_event_whoever_made_it(tmp_path: Path) -> None:
    _proc_sys(tmp_path, "40000\t40019", "0")
    watch = SettingsWatch(LinuxSysctlBackend(proc_sys=tmp_path, backup_dir=tmp_path / "b"),
                          now_iso=lambda: "2026-01-01T00:00:01.000+00:00")
    assert watch.poll() == ()  # the first poll learns the values
    assert watch.value(TW_REUSE) == 0
    _proc_sys(tmp_path, "40000\t40019", "1")  # as `sysctl -w` would
    [event] = watch.poll()
    assert event.to_json() == {"time": "2026-01-01T00:00:01.000+00:00", "kind": "setting",
                               "text": "net.ipv4.tcp_tw_reuse changed: 0 -> 1.",
                               "name": TW_REUSE, "old": 0, "new": 1}
    assert watch.poll() == ()  # once
    (tmp_path / "net" / "ipv4" / "ip_local_port_range").unlink()  # unreadable: skipped, not a change
    assert watch.poll() == ()
    _proc_sys(tmp_path, "40000\t40999", "1")
    [widened] = watch.poll()
    assert (widened.details["old"], widened.details["new"]) == ([40000, 40019], [40000, 40999])
    assert widened.text == f"{PORT_RANGE} changed: 40000-40019 -> 40000-40999."


def test_while_exhausted_at_this_rate_is_the_attempts_the_process_table_shows() -> None:
    from core.model import ProcessRow

    churner = ProcessRow(pid=7, name="churner", connections=0, time_wait=20, time_wait_exact=20,
                         time_wait_inferred=0, opens_per_s=250.0, states={"TIME_WAIT": 20})
    full = PortsSummary((40000, 40019), 20, 20, 1.0, "127.0.0.1 -> 127.0.0.1:9000")
    # Every connect fails, so almost no new connection is seen into the pool.
    seen = Forecast(steady_state_time_wait=60, seconds_to_exhaustion=0.0, open_rate_per_s=1.0)
    sample = replace(quiet_sample(), ports=full, forecast=seen, processes=(churner,))
    judged = Judgement(Clock()).judge(sample, LINUX)
    assert judged.forecast.open_rate_per_s == 250.0
    assert judged.forecast.steady_state_time_wait == 250 * 60
    assert any("15000 sockets in TIME_WAIT" in r for r in judged.verdict.reasons), judged.verdict.reasons
    # With free ports the measured rate into the pool stands.
    roomy = replace(sample, ports=replace(full, in_use=5, pressure=0.25))
    assert Judgement(Clock()).judge(roomy, LINUX).forecast == seen


def test_the_gauge_caption_says_the_rate_it_projects(qtbot) -> None:
    from core.model import ProcessRow
    from gui.verdict_banner import VerdictBanner

    churner = ProcessRow(pid=7, name="churner", connections=0, time_wait=20, time_wait_exact=20,
                         time_wait_inferred=0, opens_per_s=250.0, states={"TIME_WAIT": 20})
    full = PortsSummary((40000, 40019), 20, 20, 1.0, "127.0.0.1 -> 127.0.0.1:9000")
    sample = replace(quiet_sample(), ports=full, processes=(churner,))
    banner = VerdictBanner()
    qtbot.addWidget(banner)
    banner.show_sample(Judgement(Clock()).judge(sample, LINUX))
    assert "At 250/s: 15,000 in TIME_WAIT" in banner.gauge_caption.text()


def test_a_registry_change_made_with_regedit_is_one_event_on_windows(tmp_path: Path) -> None:
    """The Windows readers over the in-memory registry and recorded netsh the tuning tests
    use; the watch re-reads at most every WINDOWS_EVERY_S there (netsh runs processes)."""
    from core.settings_watch import WINDOWS_EVERY_S
    from core.tuning.windows import TIMED_WAIT_DELAY
    from tests.test_tuning_windows import KEY, backend

    registry_backend = backend(tmp_path)
    clock = Clock()
    watch = SettingsWatch(registry_backend, clock=clock, now_iso=lambda: "2026-01-01T00:00:01.000+00:00")
    assert watch.poll() == ()
    registry_backend.registry.write_dword(KEY, TIMED_WAIT_DELAY, 30)  # as regedit would
    assert watch.poll() == ()  # not re-read yet
    clock.now += WINDOWS_EVERY_S
    [event] = watch.poll()
    assert (event.details["name"], event.details["old"], event.details["new"]) == (TIMED_WAIT_DELAY, None, 30)
    assert "(not set) -> 30 s" in event.text and "after a reboot" in event.text
    clock.now += WINDOWS_EVERY_S
    assert watch.poll() == ()
