"""Process details (core.process_details) and the dialog that shows them: a running
process, one that exited, one the user may not read, and its remote endpoints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

import psutil
import pytest

from core.model import ProcessRow
from core.process_details import ACCESS_DENIED, EXITED, read_process_details
from gui.process_dialog import ProcessDialog
from tests.support.netns import requires_netns, run_in_netns, wait_until

pytestmark = pytest.mark.gui


def exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def what_psutil_says(read: Callable[[], str]) -> str:
    """psutil's answer, or the dialog's words for its failure (Wine cannot tell a process's
    exe: NtQuerySystemInformation(SystemProcessIdInformation) is not implemented there)."""
    try:
        return read()
    except (psutil.Error, OSError) as exc:
        return f"unavailable ({type(exc).__name__})"


def row(pid: int, name: str = "x") -> ProcessRow:
    return ProcessRow(pid=pid, name=name, connections=1, time_wait=3, time_wait_exact=2,
                      time_wait_inferred=1, opens_per_s=2.5, states={"ESTABLISHED": 1, "TIME_WAIT": 3})


def test_details_of_a_running_process() -> None:
    details = read_process_details(os.getpid(), with_endpoints=False)
    me = psutil.Process()
    assert details.status == "running"
    assert details.exe == what_psutil_says(me.exe) and details.user == me.username()
    assert details.cmdline == " ".join(me.cmdline()) and details.name == what_psutil_says(me.name)


def test_details_of_an_exited_process() -> None:
    details = read_process_details(exited_pid())
    assert details.status == "exited"
    assert details.exe == details.cmdline == EXITED
    assert details.endpoints == () and "exited" in details.endpoints_note


def _details_of_pid1_as_nobody() -> tuple[str, str, str, str]:
    os.setgid(65534)
    os.setuid(65534)
    details = read_process_details(1)
    return details.status, details.exe, details.name, details.endpoints_note


@requires_netns  # root on Linux: the body drops to another user inside a namespace
def test_access_denied_is_shown_as_such() -> None:
    status, exe, name, note = run_in_netns(_details_of_pid1_as_nobody)
    assert status == "running"
    assert exe == ACCESS_DENIED  # /proc/1/exe is not readable by another user
    assert name not in (ACCESS_DENIED, EXITED)  # the name still is
    assert "access denied" in note


def _endpoints_in_namespace() -> tuple[str, list[tuple[str, int, tuple]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in clients]
    details = read_process_details(os.getpid())
    for s in clients + accepted + [listener]:
        s.close()
    return str(port), [(e.endpoint, e.count, e.states) for e in details.endpoints]


@requires_netns
@pytest.mark.netns
def test_remote_endpoints_of_a_process() -> None:
    port, endpoints = run_in_netns(_endpoints_in_namespace)
    # Our 3 clients toward the listener, and the 3 accepted ends toward the clients' ports.
    assert (f"127.0.0.1:{port}", 3, (("ESTABLISHED", 3),)) in endpoints
    assert sum(count for _, count, _ in endpoints) == 6


def test_dialog_shows_a_vanished_process(qtbot) -> None:
    dialog = ProcessDialog(row(exited_pid(), "gone"))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.details is not None, timeout=10_000)
    assert dialog.fields["status"].text() == "exited (the process is gone)"
    assert dialog.fields["exe"].text() == EXITED
    assert dialog.endpoints.rowCount() == 0 and "exited" in dialog.endpoints_note.text()


def test_dialog_shows_a_running_process(qtbot) -> None:
    dialog = ProcessDialog(row(os.getpid(), "pytest"))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.details is not None, timeout=30_000)
    assert dialog.fields["status"].text() == "running"
    assert dialog.fields["exe"].text() == what_psutil_says(psutil.Process().exe)
    assert "pytest" in dialog.windowTitle() and str(os.getpid()) in dialog.windowTitle()


def test_dialog_survives_a_failing_reader(qtbot) -> None:
    def broken(_pid: int):
        raise RuntimeError("psutil exploded")

    dialog = ProcessDialog(row(os.getpid()), read=broken)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.details is not None, timeout=5_000)
    assert "psutil exploded" in dialog.endpoints_note.text()


def _close_wait_leaker() -> dict:
    from tests.support.traffic import Listener

    with Listener("127.0.0.1", 0, mode="never_close") as server:
        for _ in range(30):  # clients that connect and hang up; the server never closes
            client = socket.create_connection(("127.0.0.1", server.port))
            client.close()
        wait_until(lambda: server.accepted >= 30, 10, "the server to accept every client")
        details = read_process_details(os.getpid())
        rows = [(e.endpoint, e.count, dict(e.states)) for e in details.endpoints]
        return {"port": server.port, "endpoints": rows}


@requires_netns
def test_a_close_wait_leakers_clients_are_one_row_per_address_and_port() -> None:
    got = run_in_netns(_close_wait_leaker)
    rows = {endpoint: (count, states) for endpoint, count, states in got["endpoints"]}
    inbound = f"127.0.0.1 (clients of local port {got['port']})"
    assert inbound in rows, rows
    count, states = rows[inbound]
    assert count == 30 and states.get("CLOSE_WAIT") == 30
    assert not any(endpoint.startswith("127.0.0.1:") and endpoint != f"127.0.0.1:{got['port']}"
                   for endpoint in rows), rows  # no row per client port


def test_a_process_whose_sockets_are_all_in_time_wait_is_said_to_be_so(qtbot) -> None:
    idle = subprocess.Popen(["sleep", "30"])  # running, no socket of its own left
    try:
        closer = ProcessRow(pid=idle.pid, name="sleep", connections=0, time_wait=40, time_wait_exact=30,
                            time_wait_inferred=10, opens_per_s=0.0, states={"TIME_WAIT": 40})
        dialog = ProcessDialog(closer)
        qtbot.addWidget(dialog)
        qtbot.waitUntil(lambda: dialog.details is not None, timeout=10_000)
        note = dialog.endpoints_note.text()
        assert "All of its sockets are in TIME_WAIT: 40 attributed to it (30 exact, 10 inferred)" in note
        assert "holds no connected TCP sockets" not in note
    finally:
        idle.kill()
        idle.wait()


def test_time_wait_per_remote_endpoint_sits_beside_the_connections_held(qtbot) -> None:
    # This test process holds one real connection to a listener; the sample credited it
    # with TIME_WAIT toward that listener and toward another endpoint it holds nothing to.
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    # Under Wine a socket shows its owner only once the owner has sent on it (real
    # clients do); on Linux and Windows this changes nothing.
    client.sendall(b"x")
    accepted.recv(1)
    try:
        held = f"127.0.0.1:{server.getsockname()[1]}"
        me = ProcessRow(pid=os.getpid(), name="pytest", connections=1, time_wait=55, time_wait_exact=50,
                        time_wait_inferred=5, opens_per_s=3.0, states={"ESTABLISHED": 1, "TIME_WAIT": 55},
                        time_wait_toward={held: 5, "10.0.0.9:443": 50})
        dialog = ProcessDialog(me)
        qtbot.addWidget(dialog)
        qtbot.waitUntil(lambda: dialog.details is not None, timeout=10_000)
        table = dialog.endpoints
        rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(1, 4)]
                for r in range(table.rowCount())}
        assert rows["10.0.0.9:443"] == ["0", "50", ""]  # TIME_WAIT only: nothing held there
        assert rows[held][:2] == ["1", "5"] and "ESTABLISHED" in rows[held][2]
        assert table.item(0, 0).text() == "10.0.0.9:443"  # busiest first
    finally:
        for s in (client, accepted, server):
            s.close()
