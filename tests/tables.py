"""Fixed socket tables for unit tests: rows written the way the kernel reports them."""

from __future__ import annotations

import numpy as np

from core.model import NO_PID, STATE_CODE, empty_table, pack_address


def table(*rows: tuple) -> np.ndarray:
    """rows: (state, local "addr:port", remote "addr:port", pid) with IPv4 addresses."""
    t = empty_table(len(rows))
    for i, (state, local, remote, pid) in enumerate(rows):
        laddr, lport = local.rsplit(":", 1)
        raddr, rport = remote.rsplit(":", 1)
        fam, lraw = pack_address(laddr)
        _, rraw = pack_address(raddr)
        t[i]["state"] = STATE_CODE[state]
        t[i]["family"] = fam
        t[i]["laddr"] = lraw
        t[i]["raddr"] = rraw
        t[i]["lport"] = int(lport)
        t[i]["rport"] = int(rport)
        t[i]["pid"] = NO_PID if pid is None else pid
        t[i]["inode"] = 0 if pid is None else 1000 + i
    return t


def churn(n: int, local: str = "10.0.0.1", remote: str = "10.0.0.9:443", first_port: int = 50000,
          state: str = "TIME_WAIT", pid: int | None = None) -> list[tuple]:
    return [(state, f"{local}:{first_port + i}", remote, pid) for i in range(n)]
