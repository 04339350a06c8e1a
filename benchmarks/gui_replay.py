"""Opening a 24-hour recording in the window: time to the first drawn replay, how long
the GUI thread stalled meanwhile, and what moving the time cursor costs.

The recording is synthesized through the real Recorder (benchmarks/load_recording.py:
10 processes and 6 remotes a line, drifting counts) unless one is given. The window is
the real MainWindow (offscreen), not sampling; File > Open recording's path is taken:
the loader thread, then the plot, tables and banner at the highest-pressure moment.

    QT_QPA_PLATFORM=offscreen python3 -m benchmarks.gui_replay [--hours H] [--recording FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer  # noqa: E402

from benchmarks.load_recording import synthesize  # noqa: E402
from gui.app import application  # noqa: E402

TICK_MS = 10  # the GUI thread's heartbeat while loading: a longer gap is a stall


def measure(path: Path, settings_file: Path) -> dict[str, float]:
    application()
    from gui.main_window import MainWindow  # after the QApplication, as the app does

    window = MainWindow(settings=QSettings(str(settings_file), QSettings.Format.IniFormat), start=False,
                        restore_geometry=False)
    window.show()
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(TICK_MS)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    loop = QEventLoop()
    outcome: list[bool] = []
    window.loading_finished.connect(lambda ok: (outcome.append(ok), loop.quit()))
    heartbeat.start()
    started = time.perf_counter()
    window.open_recording(path)
    load_end: list[float] = []  # noted in the loader thread as it hands the recording over
    assert window.session.loader is not None
    window.session.loader.loaded.connect(lambda _r: load_end.append(time.perf_counter()),
                                  Qt.ConnectionType.DirectConnection)
    loop.exec()
    window.grab()  # the first drawn replay: plot, tables and banner rendered (synchronously)
    drawn = time.perf_counter()
    heartbeat.stop()
    if not outcome or not outcome[0]:
        raise SystemExit(f"could not open {path}: {window.status_bar.error_label.text()}")
    recording = window.session.recording
    assert recording is not None
    during = [b for b in beats if b <= load_end[0]]
    gaps = [b - a for a, b in zip([started] + during, during + [load_end[0]], strict=True)]

    slider = window.replay_bar.slider
    start = slider.value()
    steps = min(300, slider.maximum())
    t0 = time.perf_counter()
    for i in range(steps):  # Right arrow held down: neighbouring samples
        slider.setValue((start + i + 1) % (slider.maximum() + 1))
        window.plot.plot_widget.grab()  # a synchronous paint of the plot
    step_ms = (time.perf_counter() - t0) / steps * 1000
    rng = random.Random(5)
    jumps = 30
    t0 = time.perf_counter()
    for _ in range(jumps):  # the cursor dragged across the day
        slider.setValue(rng.randrange(slider.maximum() + 1))
        window.plot.plot_widget.grab()  # a synchronous paint of the plot
    jump_ms = (time.perf_counter() - t0) / jumps * 1000
    result = {"samples": float(len(recording)), "load_s": recording.load_seconds,
              "loaded_s": load_end[0] - started, "show_s": drawn - load_end[0], "drawn_s": drawn - started,
              "worst_stall_ms": max(gaps) * 1000, "stalls_over_100ms": float(sum(g > 0.1 for g in gaps)),
              "step_ms": step_ms, "jump_ms": jump_ms}
    window.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--recording", type=Path, help="open this recording instead of synthesizing one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.recording
        if path is None:
            path = Path(tmp) / "day.jsonl.gz"
            t0 = time.perf_counter()
            synthesize(path, int(args.hours * 3600))
            print(f"synthesized {args.hours:g} h at 1 Hz in {time.perf_counter() - t0:.0f} s "
                  f"({path.stat().st_size / 1e6:.1f} MB)")
        r = measure(path, Path(tmp) / "settings.ini")
    print(f"recording: {r['samples']:,.0f} samples")
    print(f"open recording -> loaded: {r['loaded_s']:.2f} s (load_recording itself {r['load_s']:.2f} s, "
          "in the loader thread)")
    print(f"loaded -> drawn (GUI thread: plot, tables, banner at the peak, one paint): {r['show_s']:.2f} s")
    print(f"open recording -> first drawn replay: {r['drawn_s']:.2f} s")
    print(f"GUI thread while loading: worst gap between {TICK_MS} ms heartbeats "
          f"{r['worst_stall_ms']:.0f} ms, {r['stalls_over_100ms']:.0f} gaps over 100 ms")
    print(f"time cursor: {r['step_ms']:.1f} ms per step to the next sample, {r['jump_ms']:.1f} ms per jump "
          "across the day (tables, banner, cursor, plot repainted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
