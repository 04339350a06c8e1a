"""Run a test body inside a private network namespace, for real.

A forked child calls unshare(CLONE_NEWNET), brings loopback up and writes the
namespace's private sysctls (ip_local_port_range, tcp_tw_reuse, ...), then runs the
body and ships its (picklable) result back. Sockets, /proc/net and /proc/sys/net in
the child see only that namespace, so tests cannot disturb the machine or each other.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import pytest

CLONE_NEWNET = 0x40000000


def fork_context() -> multiprocessing.context.BaseContext:
    """Asked for on use, not at import: Windows has no fork, and merely importing these
    helpers must not break collection of the tests that run there."""
    return multiprocessing.get_context("fork")


def netns_unavailable_reason() -> str | None:
    """None when namespaces work here, else why not (the skip reason)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "needs root to create a network namespace (CI runs as root)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --net failed here: {probe.stderr.strip()}"
    return None


requires_netns = pytest.mark.skipif(
    (reason := netns_unavailable_reason()) is not None, reason=reason or ""
)


def enter_new_netns(sysctls: Mapping[str, str] | None = None) -> None:
    """Move the calling process into a fresh network namespace with loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for name, value in (sysctls or {}).items():
        set_sysctl(name, value)


def set_sysctl(name: str, value: str) -> None:
    with open("/proc/sys/" + name.replace(".", "/"), "w") as f:
        f.write(value)


def _child(conn: Any, body: Callable[..., Any], args: tuple[Any, ...],
           sysctls: Mapping[str, str] | None) -> None:
    try:
        enter_new_netns(sysctls)
        result = body(*args)
        conn.send(("ok", result))
    except BaseException as exc:  # ship every failure back to the test, with its traceback
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_in_netns(body: Callable[..., Any], *args: Any, sysctls: Mapping[str, str] | None = None,
                 timeout: float = 120.0) -> Any:
    """body(*args) in a fresh namespace; returns its result or raises with its traceback."""
    parent, child = fork_context().Pipe(duplex=False)
    proc = fork_context().Process(target=_child, args=(child, body, args, sysctls))
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"namespace body did not finish within {timeout} s")
        status, payload = parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise AssertionError("inside the namespace: " + payload)
    return payload


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               poll: float = 0.01) -> Any:
    """Poll a condition until it holds (synchronisation on the state itself, never a
    fixed sleep). Returns the predicate's truthy value, or raises naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def sockstat_tw() -> int:
    """The kernel's own TIME_WAIT count for this namespace."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("tw") + 1])
    raise RuntimeError("no TCP line in /proc/net/sockstat")


def sample_until(sampler: Any, predicate: Callable[[Any], Any], timeout: float, what: str) -> Any:
    """Take samples until one satisfies the predicate; returns that sample (or fails
    showing the last one)."""
    last: dict[str, Any] = {}

    def take() -> Any:
        last["sample"] = sampler.sample()
        return predicate(last["sample"])

    try:
        wait_until(take, timeout, what, poll=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last sample: {last.get('sample')}") from None
    return last["sample"]
