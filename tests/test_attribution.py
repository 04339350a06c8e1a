"""The three attribution tiers, driven through the real Sampler with fixed tables.

The source is an in-memory stand-in returning the tables a kernel would: this is
where the tiers' logic is pinned down; the namespace scenarios prove it for real.
"""

from __future__ import annotations

import numpy as np

from core.attribution import count_pairs
from core.judgement import JudgedSampler
from core.model import FIN_WAIT1, SYN_SENT, KernelCounters, PortConfig, TableRead, TraceEvent, pack_address
from core.sampler import Sampler
from tests.tables import churn, table

CONFIG = PortConfig("Linux", (50000, 50999), (), 60.0, "per_destination", tw_reuse=0)


class TableSource:
    name = "fixed tables"

    def __init__(self, reads):
        self.reads = list(reads)
        self.t = 0.0

    def read(self, with_table=True):
        tab, events = self.reads.pop(0)
        self.t += 1.0
        return TableRead(tab, KernelCounters(self.t, None, 0, 0, 0, 0, 0), CONFIG, tuple(events))

    def port_config(self):
        return CONFIG

    def read_counters(self):
        return KernelCounters(self.t, None, 0, 0, 0, 0, 0)

    def close(self):
        pass


def by_pid(sample):
    return {p.pid: p for p in sample.processes}


def test_exact_from_the_established_tuple_seen_earlier():
    first = table(*churn(5, state="ESTABLISHED", pid=111), *churn(3, state="ESTABLISHED", pid=222,
                                                                   first_port=50100))
    later = table(*churn(5), *churn(3, first_port=50100))  # all closed into TIME_WAIT
    s = Sampler(TableSource([(first, []), (later, [])]))
    s.sample()
    sample = s.sample()
    rows = by_pid(sample)
    assert (rows[111].time_wait_exact, rows[111].time_wait_inferred) == (5, 0)
    assert (rows[222].time_wait_exact, rows[222].time_wait_inferred) == (3, 0)
    assert sample.time_wait_unattributed == 0


def _event(pid, state, lport, remote=("10.0.0.9", 443)):
    _, laddr = pack_address("10.0.0.1")
    _, raddr = pack_address(remote[0])
    return TraceEvent(pid, "ev-proc", 4, laddr, lport, raddr, remote[1], state)


def test_exact_from_kernel_fin_wait1_events():
    tw = table(*churn(4))
    events = [_event(333, FIN_WAIT1, 50000 + i) for i in range(4)]
    sample = Sampler(TableSource([(tw, events)])).sample()
    assert by_pid(sample)[333].time_wait_exact == 4


def test_holding_connections_is_no_evidence_nothing_is_credited_and_it_is_said():
    # Late start: pid 444 holds 1 connection to 10.0.0.9:443 and pid 555 holds 3; nobody
    # was seen opening or closing one, so the 40 unowned TIME_WAIT there stay unattributed.
    rows = [("ESTABLISHED", "10.0.0.1:50900", "10.0.0.9:443", 444),
            *churn(3, state="ESTABLISHED", pid=555, first_port=50910)]
    tw = table(*rows, *churn(40), *churn(7, remote="10.0.0.5:80", first_port=50200))
    sample = JudgedSampler(Sampler(TableSource([(tw, [])]))).sample()
    got = by_pid(sample)
    assert got[444].time_wait == got[555].time_wait == 0
    assert sample.time_wait_unattributed == 47
    text = " ".join(sample.verdict.reasons)
    assert "47 TIME_WAIT" in text and "not attributed" in text


def test_inferred_from_connections_seen_ending_weighted_by_them():
    # pid 555 is seen closing 3 connections to 10.0.0.9:443 and pid 444 one; pid 888
    # holds 5 there all along (a pool) and is never credited.
    pool = churn(5, state="ESTABLISHED", pid=888, first_port=50800)
    first = table(*pool, ("ESTABLISHED", "10.0.0.1:50900", "10.0.0.9:443", 444),
                  *churn(3, state="ESTABLISHED", pid=555, first_port=50910))
    later = table(*pool, *churn(40), *churn(7, remote="10.0.0.5:80", first_port=50200))
    s = Sampler(TableSource([(first, []), (later, [])]))
    s.sample()
    sample = s.sample()
    got = by_pid(sample)
    assert (got[444].time_wait_inferred, got[555].time_wait_inferred) == (10, 30)
    assert 888 not in got or got[888].time_wait == 0
    assert sample.time_wait_unattributed == 7
    assert got[555].time_wait_toward == {"10.0.0.9:443": 30}


def test_a_leaker_opening_and_keeping_connections_gets_no_time_wait_of_a_closer():
    # pid 901 leaks: a new ESTABLISHED connection every read, never closed. pid 902
    # opens and closes. The TIME_WAIT is the closer's.
    leak = [churn(k, state="ESTABLISHED", pid=901, first_port=50500) for k in (1, 2, 3)]
    reads = [(table(*leak[0], *churn(2, state="ESTABLISHED", pid=902, first_port=50600)), []),
             (table(*leak[1], *churn(2, first_port=50600)), []),
             (table(*leak[2], *churn(2, first_port=50600), *churn(30, first_port=50000)), [])]
    s = Sampler(TableSource(reads))
    samples = [s.sample() for _ in range(3)]
    got = by_pid(samples[-1])
    assert got[901].time_wait == 0 and got[901].connections == 3
    assert got[902].time_wait == 32


def test_inferred_from_syn_sent_attempts_when_nothing_lives_long_enough():
    tw = table(*churn(50))
    attempts = [_event(666, SYN_SENT, 0) for _ in range(20)]
    sample = Sampler(TableSource([(tw, attempts)])).sample()
    top = sample.processes[0]
    assert top.pid == 666 and top.time_wait_inferred == 50


def test_time_wait_on_a_listening_port_belongs_to_the_listener():
    rows = [("LISTEN", "10.0.0.1:8080", "0.0.0.0:0", 777)]
    tw = table(*rows, *[("TIME_WAIT", "10.0.0.1:8080", f"10.0.0.7:{40000 + i}", None) for i in range(12)])
    sample = Sampler(TableSource([(tw, [])])).sample()
    assert by_pid(sample)[777].time_wait_inferred == 12
    assert sample.ports.in_use == 0  # accepted connections never count toward pressure


def test_count_pairs_counts_rows_per_pid_and_endpoint_in_endpoint_order():
    rkeys = np.array([9, 7, 9, 7, 9, 2**64 - 1], dtype=np.uint64)
    pids = np.array([5, 5, 3, 5, 5, 3], dtype=np.int32)
    counted = count_pairs(rkeys, pids)
    assert list(counted.items()) == [((5, 7), 2), ((3, 9), 1), ((5, 9), 2), ((3, 2**64 - 1), 1)]
    assert all(type(n) is int for pair in counted for n in pair)
    assert count_pairs(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)) == {}
