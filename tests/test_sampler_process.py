"""The window's sampler in a forked child process (core/sampler_process.py), for real.

The child runs the real core Sampler inside a private network namespace: its samples
must say what the kernel says, errors must come back as one line and the next request
must retry, and the child must not outlive either close() or its parent.
"""

from __future__ import annotations

import os

import psutil
import pytest

from core.judgement import JudgedSampler
from core.probe import Prober
from core.sampler_process import SamplerProcess, supported
from core.sources.base import SourceError
from tests.support.netns import requires_netns, run_in_netns, sockstat_tw, wait_until
from tests.support.traffic import Churner, Listener

pytestmark = [pytest.mark.skipif(not supported(), reason="the sampler process is Linux-only")]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _real_sampler_body() -> dict:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.02, name="churner") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to hit EADDRNOTAVAIL")
        process = SamplerProcess()
        sampler = JudgedSampler(process)
        child_pid = process.pid
        assert child_pid is not None and child_pid != os.getpid()
        try:
            sample = None

            def critical() -> bool:
                nonlocal sample
                sample = sampler.sample()
                return sample.verdict.level == "critical" and bool(sample.processes) \
                    and sample.processes[0].pid == churner.pid
            wait_until(critical, 20, "a critical sample naming the churner", poll=0.1)
            kernel_tw = sockstat_tw()
            sampler.note_probe(Prober().probe("127.0.0.1", 9000, timeout_s=2.0))
            after_probe = sampler.sample()
        finally:
            sampler.close()
        return {"sample": sample, "kernel_tw": kernel_tw, "after_probe": after_probe,
                "child_gone": _gone(child_pid), "source": sampler.source_name,
                "range": sampler.port_config.dynamic_range}


@requires_netns
def test_child_samples_what_the_kernel_says() -> None:
    result = run_in_netns(_real_sampler_body, sysctls={"net.ipv4.ip_local_port_range": "40000 40049",
                                                       "net.ipv4.tcp_tw_reuse": "0"})
    sample = result["sample"]
    assert result["range"] == (40000, 40049)
    assert result["source"]
    tw = sample.states["TIME_WAIT"]
    assert abs(tw - result["kernel_tw"]) <= max(2, 0.02 * result["kernel_tw"])
    assert sample.ports.pressure >= 0.9
    # the child only samples; the parent judges with the evidence it holds
    assert any(r.startswith("An outbound test to 127.0.0.1:9000 failed")
               for r in result["after_probe"].verdict.reasons)
    assert result["child_gone"], "close() left the sampling process running"


class _FailingOpen:
    def __call__(self) -> object:
        raise PermissionError(13, "Permission denied", "/proc/net/sockstat")


def test_a_sampler_that_cannot_open_is_one_line_and_no_child_is_left() -> None:
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(SourceError) as caught:
        SamplerProcess(_FailingOpen())
    text = str(caught.value)
    assert "\n" not in text and "Permission denied" in text
    left = {p.pid for p in psutil.Process().children()} - before
    assert all(_gone(pid) for pid in left)


class _FlakySampler:
    """Fails every second sample: the window must see the error and then a sample."""

    source_name = "flaky"
    privileged = False
    limits: tuple[str, ...] = ()

    def __init__(self) -> None:
        from core.sampler import Sampler

        self._real = Sampler()
        self.port_config = self._real.port_config
        self._calls = 0

    def sample(self):  # noqa: ANN201 - the Sampler's own type
        self._calls += 1
        if self._calls % 2 == 0:
            raise OSError(105, "No buffer space available")
        return self._real.sample()

    def close(self) -> None:
        self._real.close()


def _flaky_body() -> list[str]:
    sampler = SamplerProcess(_FlakySampler)
    outcomes = []
    try:
        for _ in range(4):
            try:
                sampler.sample()
                outcomes.append("sample")
            except SourceError as exc:
                assert "\n" not in str(exc)
                outcomes.append(str(exc))
    finally:
        sampler.close()
    return outcomes


@requires_netns
def test_a_failed_sample_is_reported_and_the_next_retries() -> None:
    outcomes = run_in_netns(_flaky_body)
    assert outcomes[0] == "sample" and outcomes[2] == "sample"
    assert "No buffer space available" in outcomes[1] and "No buffer space available" in outcomes[3]


def _orphan_body() -> dict:
    """A middle process opens the sampler and dies without closing it."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()

    def middle() -> None:
        sampler = SamplerProcess()
        child_end.send(sampler.pid)
        os._exit(0)  # no close(), no atexit: as if the window was killed

    proc = ctx.Process(target=middle)
    proc.start()
    assert parent_end.poll(30), "the middle process never opened the sampler"
    sampler_pid = parent_end.recv()
    proc.join(10)
    wait_until(lambda: _gone(sampler_pid), 10, "the orphaned sampling process to end")
    return {"pid": sampler_pid}


@requires_netns
def test_the_sampling_process_dies_with_the_window() -> None:
    assert run_in_netns(_orphan_body)["pid"]
