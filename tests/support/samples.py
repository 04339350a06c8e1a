"""A worst case for the ticket artifacts: a sample whose verdict core.analysis.judge
writes with six long reasons (the pool exhausted, the steady state over capacity, a failed
outbound test, a process leaking CLOSE_WAIT, the culprit, the advice), plus events of
each kind. The window and the report must show every word of it."""

from __future__ import annotations

import time
from datetime import datetime

from core.analysis import judge
from core.model import (
    STATE_NAMES,
    Event,
    Forecast,
    PoolUsage,
    PortConfig,
    PortsSummary,
    ProbeFailure,
    ProcessRow,
    Rates,
    RemoteRow,
    Sample,
)

RANGE = (40000, 40199)
POOL = "10.20.30.40 -> 10.99.0.15:5432"


def worst_case_sample(timestamp: float | None = None) -> Sample:
    moment = time.time() if timestamp is None else timestamp
    config = PortConfig("Linux", RANGE, time_wait_seconds=60.0, tw_reuse=0)
    capacity = RANGE[1] - RANGE[0] + 1
    pools = (PoolUsage(POOL, capacity, capacity, 196, False),
             PoolUsage("10.20.30.40 -> 10.99.0.16:6379", capacity, 41, 40, False))
    ports = PortsSummary(RANGE, capacity, capacity, 1.0, POOL, pools)
    fc = Forecast(steady_state_time_wait=26_880, seconds_to_exhaustion=0.0)
    processes = (
        ProcessRow(31337, "order-sync-worker", 4, 196, 150, 46, 448.0, {"ESTABLISHED": 4}),
        ProcessRow(2718, "inventory-gateway", 75, 0, 0, 0, 0.0, {"CLOSE_WAIT": 57, "ESTABLISHED": 18},
                   close_wait=57),
        ProcessRow(812, "postgres-proxy", 3, 0, 0, 0, 0.0, {"LISTEN": 1, "ESTABLISHED": 2}),
    )
    remotes = (RemoteRow("10.99.0.15", 5432, 200, 196), RemoteRow("10.99.0.16", 6379, 41, 40))
    failure = ProbeFailure(time.monotonic() - 12, "10.99.0.15:5432",
                           "[Errno 99] Cannot assign requested address")
    verdict = judge(ports, fc, config, processes, remotes, (failure,), now=time.monotonic())
    states = dict.fromkeys(STATE_NAMES, 0) | {"TIME_WAIT": 236, "ESTABLISHED": 24, "CLOSE_WAIT": 57,
                                              "LISTEN": 1}
    iso = datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")
    events = (
        Event(iso, "setting", "net.ipv4.tcp_tw_reuse changed from 1 to 0",
              {"name": "net.ipv4.tcp_tw_reuse", "old": "1", "new": "0"}),
        Event(iso, "probe", "Outbound test to 10.99.0.15:5432 failed: no free local port",
              {"target": "10.99.0.15:5432", "ok": False, "category": "ports_exhausted"}),
        Event(iso, "note", "Recording started"),
    )
    return Sample(time_iso=iso, timestamp=moment, states=states, ports=ports,
                  rates=Rates(448.0, 0.0, 31.5), forecast=fc, processes=processes, remotes=remotes,
                  verdict=verdict, sample_ms=9.4, os_name="Linux", events=events)


CONFIG = PortConfig("Linux", RANGE, time_wait_seconds=60.0, tw_reuse=0)
