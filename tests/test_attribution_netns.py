"""Attribution on the shapes real servers have, with real sockets in a private namespace
(DESIGN.md "Attribution rules (second round)"): PortPressure started after the trouble
began, a bystander holding long-lived connections to the same service, a culprit that
has exited, a leaker, and a parent starting one short-lived child per connection."""

from __future__ import annotations

import pytest

from tests.support.netns import requires_netns, run_in_netns, sample_until, sockstat_tw, wait_until
from tests.support.traffic import Churner, ForkPerConnection, Holder, Listener

pytestmark = [requires_netns, pytest.mark.netns]

SYSCTLS = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}


def _row(sample, pid):
    return next((p for p in sample.processes if p.pid == pid), None)


def _late_start_body():
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Holder("127.0.0.1", 9000, 20, name="appserver") as app, \
            Churner("127.0.0.1", 9000, hold_s=0.01, name="batchjob") as batch:
        wait_until(lambda: app.opened == 20 and sockstat_tw() >= 150, 30,
                   "20 held connections, 150 TIME_WAIT")
        sampler = JudgedSampler(Sampler())
        try:
            first = sampler.sample()
            named = sample_until(sampler,
                                  lambda s: (r := _row(s, batch.pid)) is not None and r.time_wait > 0,
                                  15, "the batch job credited with TIME_WAIT")
        finally:
            sampler.close()
        return {"first": first, "named": named, "app": app.pid, "batch": batch.pid}


@pytest.fixture(scope="module")
def late_start():
    return run_in_netns(_late_start_body, sysctls=SYSCTLS)


def test_late_start_first_sample_credits_nobody_who_only_holds_connections(late_start):
    first = late_start["first"]
    app = _row(first, late_start["app"])
    assert app is not None and app.connections == 20
    assert app.time_wait == 0
    # Kernel events (root) may already show the batch job closing connections in the
    # first read; whatever it was not seen doing stays unattributed, never the app's.
    batch = _row(first, late_start["batch"])
    credited = batch.time_wait if batch is not None else 0
    assert credited + first.time_wait_unattributed == first.states["TIME_WAIT"] >= 150


def test_late_start_names_the_culprit_once_seen_and_never_the_bystander(late_start):
    named = late_start["named"]
    assert _row(named, late_start["app"]).time_wait == 0
    batch = _row(named, late_start["batch"])
    assert batch.name == "batchjob" and batch.time_wait_toward.get("127.0.0.1:9000", 0) > 0


def _exited_body(watch_first: bool):
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Holder("127.0.0.1", 9000, 20, name="appserver") as app:
        batch = Churner("127.0.0.1", 9000, hold_s=0.01, name="batchjob")
        sampler = JudgedSampler(Sampler()) if watch_first else None
        try:
            if sampler is not None:
                sample_until(sampler, lambda s: (r := _row(s, batch.pid)) is not None and r.time_wait >= 100,
                              20, "the batch job credited with 100 TIME_WAIT")
            else:
                wait_until(lambda: sockstat_tw() >= 150, 30, "150 TIME_WAIT")
            wait_until(lambda: app.opened == 20, 10, "20 held connections")
            batch.stop()  # the culprit ends; its TIME_WAIT lives on for 60 s
            sampler = sampler or JudgedSampler(Sampler())
            samples = [sampler.sample() for _ in range(2)]
        finally:
            batch.stop()
            if sampler is not None:
                sampler.close()
        return {"samples": samples, "app": app.pid, "batch": batch.pid}


def test_exited_culprit_after_a_late_start_leaves_time_wait_unattributed_not_on_the_bystander():
    result = run_in_netns(_exited_body, False, sysctls=SYSCTLS)
    for sample in result["samples"]:
        assert _row(sample, result["app"]).time_wait == 0
        assert sample.time_wait_unattributed >= 0.9 * sample.states["TIME_WAIT"] >= 100
        assert "not attributed" in " ".join(sample.verdict.reasons)


def test_exited_culprit_seen_while_watching_keeps_its_row_marked_exited():
    result = run_in_netns(_exited_body, True, sysctls=SYSCTLS)
    last = result["samples"][-1]
    gone = _row(last, result["batch"])
    assert gone is not None and gone.exited and gone.name == "batchjob"
    assert gone.time_wait >= 100 and gone.connections == 0
    assert _row(last, result["app"]).time_wait == 0
    assert gone.to_json()["exited"] is True


def _leaker_body():
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Holder("127.0.0.1", 9000, 185, every_s=0.02, name="leaker") as leak, \
            Churner("127.0.0.1", 9000, hold_s=0.01, name="client") as client:
        sampler = JudgedSampler(Sampler())
        try:
            sample = sample_until(sampler, lambda s: leak.opened >= 185 and sockstat_tw() >= 100
                                   and (r := _row(s, client.pid)) is not None and r.time_wait >= 100,
                                   30, "185 leaked connections and the client credited with 100 TIME_WAIT")
        finally:
            sampler.close()
        return {"sample": sample, "leaker": leak.pid, "client": client.pid}


def test_a_leaker_is_shown_with_its_connections_and_never_the_client_time_wait():
    result = run_in_netns(_leaker_body, sysctls=SYSCTLS)
    sample = result["sample"]
    leaker = _row(sample, result["leaker"])
    assert leaker.connections >= 150 and leaker.time_wait == 0
    client = _row(sample, result["client"])
    assert client.time_wait >= 0.9 * sample.states["TIME_WAIT"]


def _fork_body():
    from core.judgement import JudgedSampler
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), ForkPerConnection("127.0.0.1", 9000, hold_s=0.1) as engine:
        sampler = JudgedSampler(Sampler())
        try:
            sample = sample_until(
                sampler, lambda s: any(p.name == "check_tcp" and p.instances >= 10 and p.parent is not None
                                       and p.time_wait >= 0.8 * s.states["TIME_WAIT"] for p in s.processes),
                30, "check_tcp grouped with its parent, credited with most TIME_WAIT")
        finally:
            sampler.close()
        return {"sample": sample, "engine": engine.pid}


def test_fork_per_connection_is_one_row_naming_program_and_parent():
    result = run_in_netns(_fork_body, sysctls=SYSCTLS)
    sample = result["sample"]
    rows = [p for p in sample.processes if p.name == "check_tcp"]
    assert len(rows) == 1
    group = rows[0]
    assert group.parent.pid == result["engine"] and group.parent.name == "moneng"
    assert group.time_wait >= 0.8 * sample.states["TIME_WAIT"]
    assert group.to_json()["instances"] == group.instances
    assert group.to_json()["parent"] == {"pid": result["engine"], "name": "moneng"}
