"""The hard rule, over generated tables and kernel event streams: a process never seen
opening or closing a connection to an endpoint is never credited TIME_WAIT toward it
(DESIGN.md "Attribution rules (second round)")."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attribution import split_by_evidence
from core.model import FIN_WAIT1, SYN_SENT, TraceEvent, pack_address
from core.sampler import Sampler
from tests.tables import table
from tests.test_attribution import TableSource

ENDPOINTS = ("10.0.0.9:443", "10.0.0.8:5432", "10.0.0.7:80")
# pids near the top of the pid space: no process on the test machine has them
HOLDERS = (4_190_101, 4_190_102)  # hold long-lived connections from before the first read, never change them
CHURNERS = (4_190_201, 4_190_202, 4_190_203)  # open and close connections while we watch


def _event(pid: int, state: int, lport: int, remote: tuple[str, int]) -> TraceEvent:
    """A kernel event from that pid (each with its own program name: not grouped)."""
    _, laddr = pack_address("10.0.0.1")
    _, raddr = pack_address(remote[0])
    return TraceEvent(pid, f"prog{pid}", 4, laddr, lport, raddr, remote[1], state)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 200)), min_size=1, max_size=6),
       st.dictionaries(st.integers(0, 5), st.dictionaries(st.integers(1, 9), st.floats(0.1, 100.0),
                                                          max_size=3), max_size=4))
def test_split_credits_only_pids_with_evidence_for_that_endpoint(parts, evidence):
    rkeys = np.array([k for k, _ in parts], dtype=np.uint64)
    counts = np.array([c for _, c in parts], dtype=np.int64)
    credited, left = split_by_evidence(rkeys, counts, evidence)
    for (pid, rkey), n in credited.items():
        assert n > 0 and pid in evidence.get(rkey, {})
    assert sum(credited.values()) + left == counts.sum()


_step = st.fixed_dictionaries({
    # per churner: (endpoint index, connections opened, connections closed, SYN_SENT events, FIN events?)
    "churn": st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 3), st.integers(0, 2),
                                st.booleans()), min_size=3, max_size=3),
    # unowned TIME_WAIT appearing toward each endpoint (opened before we watched, by someone)
    "background": st.lists(st.integers(0, 4), min_size=3, max_size=3),
})


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, min_size=1, max_size=5), st.lists(st.integers(1, 4), min_size=2, max_size=2))
def test_never_credited_without_being_seen_opening_or_closing(steps, held):
    next_port = iter(range(50000, 51000))
    holders = [("ESTABLISHED", f"10.0.0.1:{next(next_port)}", ENDPOINTS[i % 3], pid)
               for pid, n in zip(HOLDERS, held, strict=True) for i in range(n)]
    live: dict[int, list[tuple[int, str]]] = {pid: [] for pid in CHURNERS}
    tw: list[tuple] = []
    seen: dict[int, set[str]] = {pid: set() for pid in (*HOLDERS, *CHURNERS)}
    reads = []
    for index, step in enumerate(steps):
        events = []
        for pid, (ep, opened, closed, attempts, fin) in zip(CHURNERS, step["churn"], strict=True):
            endpoint = ENDPOINTS[ep]
            for port, remote in live[pid][:closed]:  # closing: the tuple turns into an unowned TIME_WAIT
                tw.append(("TIME_WAIT", f"10.0.0.1:{port}", remote, None))
                seen[pid].add(remote)
                if fin:
                    host, rport = remote.rsplit(":", 1)
                    events.append(_event(pid, FIN_WAIT1, port, (host, int(rport))))
            live[pid] = live[pid][closed:]
            for _ in range(opened):
                live[pid].append((next(next_port), endpoint))
                if index > 0:  # a connection new since the previous read was seen opening
                    seen[pid].add(endpoint)
            host, rport = endpoint.rsplit(":", 1)
            events += [_event(pid, SYN_SENT, 0, (host, int(rport))) for _ in range(attempts)]
            if attempts:
                seen[pid].add(endpoint)
        for ep, n in enumerate(step["background"]):
            tw += [("TIME_WAIT", f"10.0.0.1:{next(next_port)}", ENDPOINTS[ep], None) for _ in range(n)]
        rows = holders + [("ESTABLISHED", f"10.0.0.1:{port}", remote, pid)
                          for pid, conns in live.items() for port, remote in conns] + tw
        reads.append((table(*rows), events))
    sampler = Sampler(TableSource(reads))
    for _ in reads:
        sample = sampler.sample()
        for row in sample.processes:
            assert set(row.time_wait_toward) <= seen[row.pid], (row, seen[row.pid])
            if row.pid in HOLDERS:
                assert row.time_wait == 0
        credited = sum(p.time_wait for p in sample.processes)
        assert credited + sample.time_wait_unattributed == sample.states["TIME_WAIT"]
