"""Free local ports in the busiest pool, from one read of the socket table: the probe's
evidence when connect() fails with an error that may or may not mean exhaustion
(WSAEADDRNOTAVAIL). Reading the table costs up to a second on a busy server, so it is done
only when such an error is seen, never per attempt."""

from __future__ import annotations

import logging

from core.analysis import compute_pools, split_table, summarize_ports
from core.model import TableRead
from core.sources import SourceError, open_source

log = logging.getLogger(__name__)


def free_in_busiest_pool(read: TableRead) -> int:
    facts = split_table(read.table, read.config)
    pools, _ = compute_pools(read.table, read.config, facts)
    ports = summarize_ports(pools, read.config, read.table, facts)
    return max(ports.capacity - ports.in_use, 0)


def read_free_ports() -> int | None:
    """Open this OS's reader, read the table once; None when it cannot be read."""
    try:
        source = open_source()
    except (SourceError, OSError) as exc:
        log.info("socket table not opened for the probe: %s", exc)
        return None
    try:
        return free_in_busiest_pool(source.read())
    except (SourceError, OSError) as exc:
        log.info("socket table not read for the probe: %s", exc)
        return None
    finally:
        source.close()
