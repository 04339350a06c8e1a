"""Short-lived processes of one program started by one parent become one row
(DESIGN.md "Attribution rules (second round)").

A monitoring engine that starts a check per device, or a shell loop running curl,
creates thousands of processes that each open one connection and end: thousands of
one-line rows would hide the program and the parent that starts it. Rows whose process
has ended are grouped with every row of the same program and parent; an ended process
whose parent was never seen (it ended before it could be asked) joins its program's
group when that program has exactly one known parent.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.model import ParentProcess, ProcessRow

GroupKey = tuple[str, int | None]


def group_short_lived(rows: Sequence[ProcessRow]) -> list[ProcessRow]:
    parents_by_name: dict[str, set[ParentProcess]] = {}
    for row in rows:
        if row.parent is not None:
            parents_by_name.setdefault(row.name, set()).add(row.parent)

    def parent_of(row: ProcessRow) -> ParentProcess | None:
        if row.parent is not None:
            return row.parent
        known = parents_by_name.get(row.name, set())
        return next(iter(known)) if len(known) == 1 else None

    def key(row: ProcessRow) -> GroupKey:
        parent = parent_of(row)
        return (row.name, None if parent is None else parent.pid)

    with_ended = {key(row) for row in rows if row.exited}
    groups: dict[GroupKey, list[ProcessRow]] = {}
    result: list[ProcessRow] = []
    for row in rows:
        if key(row) in with_ended:
            groups.setdefault(key(row), []).append(row)
        else:
            result.append(row)
    for members in groups.values():
        result.append(members[0] if len(members) == 1 else _merge(members, parent_of(members[0])))
    return result


def _merge(members: list[ProcessRow], parent: ParentProcess | None) -> ProcessRow:
    # The row's pid: a running member if any (it can be inspected), else the busiest.
    lead = min(members, key=lambda p: (p.exited, -p.time_wait, p.pid))
    states: dict[str, int] = {}
    toward: dict[str, int] = {}
    for member in members:
        for name, n in member.states.items():
            states[name] = states.get(name, 0) + n
        for remote, n in member.time_wait_toward.items():
            toward[remote] = toward.get(remote, 0) + n
    return ProcessRow(
        pid=lead.pid,
        name=lead.name,
        connections=sum(p.connections for p in members),
        time_wait=sum(p.time_wait for p in members),
        time_wait_exact=sum(p.time_wait_exact for p in members),
        time_wait_inferred=sum(p.time_wait_inferred for p in members),
        opens_per_s=sum(p.opens_per_s for p in members),
        states=states,
        close_wait=sum(p.close_wait for p in members),
        time_wait_toward=toward,
        exited=all(p.exited for p in members),
        instances=sum(p.instances for p in members),
        parent=parent,
    )
