"""Does the window stay responsive with 100,000 sockets? (issue 3: the event loop never
stalls more than 50 ms; the worst gap of a 10 ms timer over 60 s.)

Run as root: `python3 -m benchmarks.gui_responsiveness [--sockets 100000 --seconds 60]`.
The script moves itself into a private network namespace (loopback only), starts a
child that builds the TIME_WAIT sockets for real and keeps their number at the
target (TIME_WAIT lasts 60 s: the child churns target/60 connections a second, as a
real churning client does, so about a minute passes before the count is reached,
and it then stays there while the oldest expire), and only then creates the
QApplication and the real window with the real sampler. A 10 ms
PreciseTimer in the GUI thread records every gap between its ticks.

`benchmarks/gui_cpu.py` uses the same harness to measure the CPU cost at 10,000.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proc_cpu import ProcCpu, watch  # noqa: E402
from tests.support.netns import enter_new_netns, netns_unavailable_reason, sockstat_tw, wait_until  # noqa: E402
from tests.support.traffic import set_process_name  # noqa: E402

SYSCTLS = {
    "net.ipv4.ip_local_port_range": "1024 65535",
    "net.ipv4.tcp_tw_reuse": "0",  # else loopback TIME_WAIT would be recycled while building
    "net.ipv4.tcp_max_tw_buckets": "400000",
}
LISTENERS = 16  # 16 destinations x 64k client ports: room for far more than 100k 4-tuples
FIRST_LISTENER_PORT = 30000
BATCH = 500
TICK_MS = 10
STALL_LIMIT_MS = 50.0
TIME_WAIT_SECONDS = 60.0  # Linux, fixed
READY_SHARE = 0.97


def _churn_batch(listener: socket.socket, n: int) -> None:
    clients = []
    for _ in range(n):
        client = socket.socket()
        client.connect(listener.getsockname())
        clients.append(client)
    accepted = [listener.accept()[0] for _ in clients]
    for client in clients:
        client.close()  # the client closes first: the TIME_WAIT is on its side
    for conn in accepted:
        conn.close()


def _time_wait_keeper(target: int, stop: Any, ready: Any) -> None:
    """Child process: a client churning `target / 60` connections a second from the
    start, which is what holds `target` sockets in TIME_WAIT once the first ones
    expire (a TIME_WAIT lasts 60 s). Building them all at once instead would make
    them all expire at once, in the middle of the measurement. `ready` is set when
    the count has reached 97% of the target, about a minute in."""
    set_process_name("tw-keeper")
    # Die with the measuring process, whatever happens to it (PR_SET_PDEATHSIG, SIGTERM).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    listeners = []
    for i in range(LISTENERS):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", FIRST_LISTENER_PORT + i))
        listener.listen(BATCH * 2)
        listeners.append(listener)
    rate = target / TIME_WAIT_SECONDS
    started = time.monotonic()
    made = turn = 0
    while not stop.is_set():
        count = sockstat_tw()
        if count >= READY_SHARE * target:
            ready.set()
        due = int(rate * (time.monotonic() - started)) - made
        if count < target and due > 0:
            n = min(due, BATCH)
            _churn_batch(listeners[turn % LISTENERS], n)
            made += n
            turn += 1
        else:
            stop.wait(0.02)  # pacing: the next batch is due in a few ms
    for listener in listeners:
        listener.close()


@dataclass
class WindowRun:
    """What one measured run of the window saw."""

    seconds: float = 0.0
    gaps_ms: list[float] = field(default_factory=list)
    sample_ms: list[float] = field(default_factory=list)
    sockets: list[int] = field(default_factory=list)
    time_wait: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0
    thread_cpu: dict[str, float] = field(default_factory=dict)
    startup_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    slow_gaps: list[tuple[float, float]] = field(default_factory=list)  # (end time, gap ms) > 25 ms
    sample_times: list[float] = field(default_factory=list)  # perf_counter when shown
    proc: ProcCpu | None = None  # the same run's CPU read from /proc by another process

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.seconds if self.seconds else 0.0


def run_window(seconds: float, interval_s: float, tick_timer: bool = True,
               watcher: Connection | None = None) -> WindowRun:
    """The real window with the real sampler, measured for `seconds` after its first sample.
    `watcher`: the pipe to a benchmarks.proc_cpu watcher, told when the run starts and ends."""
    import psutil
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    run = WindowRun()
    started = time.perf_counter()
    app = QApplication([sys.argv[0]])
    settings_dir = tempfile.mkdtemp(prefix="portpressure-bench-")
    settings = QSettings(os.path.join(settings_dir, "portpressure.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, interval_s=interval_s)
    window.show()
    window.session.sampling.worker.error.connect(run.errors.append)
    deadline = time.monotonic() + 60
    while window.session.latest is None and time.monotonic() < deadline:
        QTest.qWait(10)  # runs the event loop until the first sample is on screen
    if window.session.latest is None:
        raise RuntimeError(f"no sample within 60 s: {run.errors}")
    run.startup_s = time.perf_counter() - started

    def on_sample(sample: Any) -> None:
        run.sample_times.append(time.perf_counter())
        run.sample_ms.append(sample.sample_ms)
        run.sockets.append(int(sample.extra.get("sockets", 0)))
        run.time_wait.append(int(sample.states["TIME_WAIT"]))

    window.sample_shown.connect(on_sample)
    sampling_thread = [0]
    # The sampling thread's native id, asked inside it (the worker's timer runs there).
    QTimer.singleShot(0, window.session.sampling.worker,
                      lambda: sampling_thread.__setitem__(0, threading_native_id()))
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gap = (now - last[0]) * 1000.0
        run.gaps_ms.append(gap)
        if gap > 25.0:
            run.slow_gaps.append((now, gap))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    process = psutil.Process()
    # On Linux the sampler runs in a child process: its CPU is the app's too.
    judged = window.session.sampling.worker.sampler  # core.judgement.JudgedSampler
    sampler_pid = getattr(judged.sampler if judged is not None else None, "pid", None)
    sampler_process = psutil.Process(sampler_pid) if sampler_pid else None
    sampler_before = sampler_process.cpu_times() if sampler_process else None
    threads_before = {t.id: t.user_time + t.system_time for t in process.threads()}
    cpu_before = process.cpu_times()
    if watcher is not None:
        watcher.send("start")
    wall_before = time.perf_counter()
    last[0] = wall_before
    if tick_timer:  # the probe costs CPU itself: the CPU benchmark runs without it
        timer.start()
    # PORTPRESSURE_PROFILE=FILE: where the GUI thread's time goes (cProfile stats, for
    # `python -m pstats FILE`); the profiler's own cost inflates the CPU figure.
    profile_path = os.environ.get("PORTPRESSURE_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()

    def finish() -> None:
        # Read while everything still runs: Qt 6's quit() closes the window, which
        # stops the sampling thread (and its CPU time would vanish with it).
        timer.stop()
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        run.seconds = time.perf_counter() - wall_before
        cpu_after = process.cpu_times()
        if watcher is not None:
            watcher.send("stop")
            if watcher.poll(10):
                run.proc = watcher.recv()
        run.cpu_seconds = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        if sampler_process is not None and sampler_before is not None:
            after = sampler_process.cpu_times()
            spent = (after.user + after.system) - (sampler_before.user + sampler_before.system)
            run.cpu_seconds += spent
            run.thread_cpu["sampling process"] = spent
        gui_thread = threading_native_id()
        for t in process.threads():
            spent = t.user_time + t.system_time - threads_before.get(t.id, 0.0)
            if spent > 0.005:
                name = ("GUI thread" if t.id == gui_thread else
                        "sampling worker thread" if t.id == sampling_thread[0] else f"thread {t.id}")
                run.thread_cpu[name] = spent
        app.quit()

    QTimer.singleShot(int(seconds * 1000), finish)
    app.exec()
    window.close()
    return run


def threading_native_id() -> int:
    import threading

    return threading.get_native_id()


def measure(sockets: int, seconds: float, interval_s: float,
            tick_timer: bool = True) -> tuple[WindowRun, float]:
    """In this process: enter a namespace, build the sockets, run the window."""
    enter_new_netns(SYSCTLS)
    ctx = multiprocessing.get_context("fork")  # forked before any Qt exists in this process
    stop, ready = ctx.Event(), ctx.Event()
    keeper = ctx.Process(target=_time_wait_keeper, args=(sockets, stop, ready), daemon=True)
    build_started = time.perf_counter()
    keeper.start()
    # The CPU seen from outside: a process that reads /proc for this one and its children
    # (the sampling child), the keeper left out.
    watcher_conn, watcher_end = ctx.Pipe()
    watcher = ctx.Process(target=watch, args=(watcher_end, os.getpid(), (keeper.pid,)), daemon=True)
    watcher.start()
    watcher_end.close()
    try:
        wait_until(ready.is_set, 3 * TIME_WAIT_SECONDS, f"{sockets} TIME_WAIT sockets", poll=0.05)
        build_s = time.perf_counter() - build_started
        run = run_window(seconds, interval_s, tick_timer, watcher_conn)
    finally:
        watcher_conn.close()
        watcher.join(5)
        if watcher.is_alive():
            watcher.kill()
        stop.set()
        keeper.join(10)
        if keeper.is_alive():
            keeper.kill()
    return run, build_s


def describe(run: WindowRun, build_s: float) -> list[str]:
    gaps = sorted(run.gaps_ms)
    p99 = gaps[int(len(gaps) * 0.99) - 1] if gaps else 0.0
    over = sum(1 for g in gaps if g > STALL_LIMIT_MS)
    lines = [
        f"sockets in TIME_WAIT after {build_s:.1f} s of churn; window up with its first sample "
        f"after {run.startup_s:.2f} s",
        f"measured {run.seconds:.1f} s: {len(run.sample_ms)} samples, sockets per sample "
        f"{min(run.sockets, default=0):,}-{max(run.sockets, default=0):,} "
        f"(TIME_WAIT {min(run.time_wait, default=0):,}-{max(run.time_wait, default=0):,})",
        f"sample cost (off the GUI thread): median {statistics.median(run.sample_ms or [0]):.1f} ms, "
        f"max {max(run.sample_ms, default=0):.1f} ms",
        f"10 ms timer: {len(gaps)} ticks, worst gap {max(gaps, default=0):.1f} ms, p99 {p99:.1f} ms, "
        f"median {statistics.median(gaps or [0]):.1f} ms, gaps over {STALL_LIMIT_MS:.0f} ms: {over}",
        f"process CPU: {run.cpu_seconds:.2f} s over {run.seconds:.1f} s = {run.cpu_percent:.2f}% of one core "
        f"({', '.join(f'{k} {v:.2f} s' for k, v in sorted(run.thread_cpu.items(), key=lambda kv: -kv[1]))})",
    ]
    if run.slow_gaps:
        # Where the slow gaps fall: right around a sample being shown (GUI-thread work)
        # or elsewhere (the sampling thread holding the GIL, or the OS scheduler).
        near = sum(1 for t, _ in run.slow_gaps if any(abs(t - s) < 0.1 for s in run.sample_times))
        worst = sorted(run.slow_gaps, key=lambda tg: -tg[1])[:5]
        lines.append(f"gaps over 25 ms: {len(run.slow_gaps)}, {near} of them within 100 ms of a sample "
                     f"being shown; worst: {', '.join(f'{g:.0f} ms' for _, g in worst)}")
    if run.errors:
        lines.append(f"sampling errors: {len(run.errors)}, first: {run.errors[0]}")
    return lines


def window_arguments(description: str, script: str, sockets: int) -> argparse.Namespace | None:
    """The command line both window benchmarks take; None (after saying why) where no
    network namespace can be made."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sockets", type=int, default=sockets)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval, seconds")
    args = parser.parse_args()
    reason = netns_unavailable_reason()
    if reason:
        print(f"benchmarks/{script}: skipped: {reason}")
        return None
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return args


def main() -> int:
    args = window_arguments(__doc__.splitlines()[0], "gui_responsiveness.py", 100_000)
    if args is None:
        return 0
    run, build_s = measure(args.sockets, args.seconds, args.interval)
    for line in describe(run, build_s):
        print(line)
    worst = max(run.gaps_ms, default=0.0)
    print(f"{'PASS' if worst <= STALL_LIMIT_MS else 'MISS'}  worst 10 ms timer gap {worst:.1f} ms "
          f"<= {STALL_LIMIT_MS:.0f} ms with {min(run.sockets, default=0):,}+ sockets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
