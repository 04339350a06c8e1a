"""Verdict content on small readable rows: the culprit sentence follows the verdict's
pool, a group of short-lived processes is named by program and parent, and grouping
keeps every count."""

from __future__ import annotations

from dataclasses import replace

from core import analysis
from core.model import Forecast, ParentProcess, PoolUsage, PortConfig, PortsSummary, ProcessRow
from core.process_groups import group_short_lived

LINUX = PortConfig("Linux", (40000, 40199), (), 60.0, "per_destination", tw_reuse=0)


def _proc(pid, name, toward, **kw):
    tw = sum(toward.values())
    return ProcessRow(pid=pid, name=name, connections=kw.pop("connections", 0), time_wait=tw,
                      time_wait_exact=tw, time_wait_inferred=0, opens_per_s=kw.pop("rate", 0.0),
                      states={"TIME_WAIT": tw} if tw else {}, time_wait_toward=toward, **kw)


def _ports(*pools):
    top = pools[0]
    return PortsSummary((40000, 40199), top.capacity, top.in_use, top.pressure, top.label, pools)


def test_the_culprit_sentence_names_the_process_behind_the_verdicts_pool():
    ports = _ports(PoolUsage("127.0.0.1 -> 127.0.0.1:9000", 200, 190, 190, False),
                   PoolUsage("127.0.0.1 -> 127.0.0.1:9001", 200, 150, 150, False))
    # X has the most TIME_WAIT overall, but all toward :9001.
    x = _proc(10, "xproc", {"127.0.0.1:9001": 150}, rate=40.0)
    y = _proc(11, "yproc", {"127.0.0.1:9000": 120})
    verdict = analysis.judge(ports, Forecast(), LINUX, [replace(x, time_wait=400), y], [])
    text = " ".join(verdict.reasons)
    assert "Most of it comes from yproc (pid 11)" in text and "toward 127.0.0.1:9000" in text
    assert "xproc" not in text


def test_no_culprit_named_when_nobody_is_credited_toward_that_pool():
    ports = _ports(PoolUsage("127.0.0.1 -> 127.0.0.1:9000", 200, 190, 190, False))
    x = _proc(10, "xproc", {"127.0.0.1:9001": 150}, rate=40.0)
    verdict = analysis.judge(ports, Forecast(), LINUX, [x], [], unattributed=190, time_wait=340)
    text = " ".join(verdict.reasons)
    assert "Most of it comes from" not in text
    assert "190 TIME_WAIT sockets are not attributed" in text


def test_limits_are_said_in_the_reasons():
    ports = _ports(PoolUsage("127.0.0.1 -> 127.0.0.1:9000", 200, 10, 10, False))
    verdict = analysis.judge(ports, Forecast(), LINUX, [], [], limits=("not root: owners hidden",))
    assert verdict.reasons[-1] == "This run cannot see everything: not root: owners hidden."


def test_ended_short_lived_processes_of_one_parent_become_one_row():
    moneng = ParentProcess(812, "moneng")
    seen_alive = _proc(1001, "check_tcp", {"127.0.0.1:9000": 1}, parent=moneng, connections=1)
    ended = [_proc(1002 + i, "check_tcp", {"127.0.0.1:9000": 2}, exited=True) for i in range(5)]
    other = _proc(2000, "curl", {"127.0.0.1:9000": 4}, exited=True)
    server = _proc(812, "moneng", {}, connections=3)
    rows = group_short_lived([seen_alive, *ended, other, server])
    group = next(r for r in rows if r.name == "check_tcp")
    assert (group.instances, group.parent, group.time_wait, group.connections) == (6, moneng, 11, 1)
    assert group.pid == 1001 and not group.exited
    assert group.time_wait_toward == {"127.0.0.1:9000": 11}
    assert {r.name for r in rows} == {"check_tcp", "curl", "moneng"}
    assert sum(r.time_wait for r in rows) == 15
    assert analysis.process_text(group) == "check_tcp ×6 (short-lived processes started by moneng, pid 812)"


def test_advice_follows_tcp_tw_reuse_and_loopback():
    ports = _ports(PoolUsage("10.0.0.1 -> 10.0.0.9:443", 200, 195, 195, False))

    def advice(tw_reuse, holds):
        config = replace(LINUX, tw_reuse=tw_reuse)
        return " ".join(analysis.judge(ports, Forecast(0, None, holds), config, [], []).reasons)

    assert "tcp_tw_reuse is 0" in advice(0, True) and "setting it to 1" in advice(0, True)
    # The kernel default, off loopback: the one setting that would help here is named.
    assert "tcp_tw_reuse is 2" in advice(2, True) and "Setting it to 1" in advice(2, True)
    # Reuse already in effect (1, or 2 on loopback): the range and the application are left.
    for tw_reuse, holds in ((1, False), (2, False)):
        text = advice(tw_reuse, holds)
        assert "already lets connect() reuse" in text and "Setting it to 1" not in text


def test_windows_advice_follows_time_wait_delay():
    windows = PortConfig("Windows", (49152, 65535), (), 120.0, "per_local_address")
    ports = _ports(PoolUsage("0.0.0.0 (all destinations)", 16384, 16000, 15000, False))
    text = " ".join(analysis.judge(ports, Forecast(), windows, [], []).reasons)
    assert "lowering TcpTimedWaitDelay" in text
    shortest = replace(windows, time_wait_seconds=30.0)
    text = " ".join(analysis.judge(ports, Forecast(), shortest, [], []).reasons)
    assert "already 30 s" in text and "49152-65535" in text
