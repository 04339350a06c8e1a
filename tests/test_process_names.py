"""core.process_names: pid -> name through psutil, and where psutil cannot tell a name (under
Wine it cannot ask Windows for the image path), the program of the command line."""

from __future__ import annotations

import ntpath
import os
import subprocess
import sys

import psutil

from core.process_names import ProcessNames


def test_a_running_process_is_named_as_psutil_or_its_command_line_says() -> None:
    try:
        expected = psutil.Process().name()
    except (psutil.Error, OSError):
        expected = ntpath.basename(psutil.Process().cmdline()[0])
    names = ProcessNames()
    assert names.name(os.getpid()) == expected
    assert expected.lower().startswith("python")


def test_an_exited_process_is_said_to_be_gone_and_not_cached() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    names = ProcessNames()
    assert names.name(child.pid) == f"(exited, pid {child.pid})"
    assert names.name(child.pid, fallback="from the table") == "from the table"


def test_forget_except_drops_names_of_pids_gone() -> None:
    names = ProcessNames()
    names.name(os.getpid())
    names.forget_except(set())
    assert names._cache == {}
