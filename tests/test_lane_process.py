"""The Windows lane's process harness (tests/support/windows_lane.py) on plain Linux processes:
waiting on a program never hangs on a pipe that one of its children still holds (as Wine's
session processes, or a one-file exe's unpacked app, do), and a kill ends the children too."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from tests.support.netns import wait_until
from tests.support.windows_lane import DRAIN_SECONDS, LaneProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")

HOLDER_SECONDS = 60  # how long the left-behind child would hold the pipes


def _start(script: str) -> LaneProcess:
    popen = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    return LaneProcess(popen)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_wait_returns_while_a_child_still_holds_the_pipes() -> None:
    process = _start(f"sleep {HOLDER_SECONDS} & echo $!")  # the shell exits, its sleep keeps stdout
    results = []
    waiter = threading.Thread(target=lambda: results.append(process.wait(30)), daemon=True)
    waiter.start()
    waiter.join(DRAIN_SECONDS + 20)
    try:
        assert not waiter.is_alive(), "wait() hung on a pipe a child still holds"
        assert results[0].returncode == 0
        holder = int(results[0].stdout.split()[0])
        assert _alive(holder), "the test needs the child to outlive the wait"
    finally:
        process.kill()  # the group: the shell's child too
    wait_until(lambda: not _alive(holder) or _zombie(holder), 10, "the child to end")


def test_kill_ends_the_program_and_its_children() -> None:
    process = _start(f"sleep {HOLDER_SECONDS} & echo $!; wait")
    holder = int(wait_until(lambda: process.output_so_far().split(), 10, "the child's pid")[0])
    process.kill()
    result = process.wait(10)
    assert result.returncode == -9
    wait_until(lambda: not _alive(holder) or _zombie(holder), 10, "the child to end")


def _zombie(pid: int) -> bool:
    """Ended, waiting for its parent (here: init) to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
