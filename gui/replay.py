"""Replay of a recording in the main window: the loader that reads it off the GUI
thread, and the bar that says what is being replayed and holds the time cursor.

A day's recording takes ~3 s to load (core.recording.load_recording); in a thread of
its own the window keeps repainting and answering meanwhile. The bar's slider is the
time cursor: one step per recorded sample, Left/Right step one sample, Page Up/Down a
minute of samples, Home/End the ends; the plot's draggable cursor line is kept in step
with it by the window.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from core.model import Sample
from core.recording import Recording, RecordingError, load_recording
from gui.text_strip import TextStrip

log = logging.getLogger(__name__)
PAGE_SAMPLES = 60  # Page Up/Down: a minute at 1 Hz
REPLAY_BAR_STYLE = """
QFrame#replayBar { background: #e8eaf6; border: 1px solid #9fa8da; border-radius: 4px; }
QLabel#replayTitle { color: #1a237e; font-weight: bold; }
QLabel#replayWarnings { color: #8a5300; }
"""


def when(timestamp: float) -> str:
    """Local date and time of a recorded moment (recordings span midnight)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def describe(recording: Recording) -> str:
    """"Replay of FILE (start - end), N samples": the title bar and status bar say it."""
    count = len(recording)
    return (f"Replay of {recording.path.name} ({when(recording.start)} – {when(recording.end)}), "
            f"{count:,} sample{'' if count == 1 else 's'}")


def peak_index(recording: Recording) -> int:
    """The first sample at the highest port pressure: where a replay opens, since that is
    usually the moment the ticket is about."""
    pressure = recording.snapshot().series("pressure")
    return int(pressure.argmax()) if len(pressure) else 0


class RecordingLoader(QThread):
    """Loads one recording in its own thread; exactly one of `loaded` (Recording) or
    `failed` (a one-line reason) is emitted, then QThread.finished."""

    loaded = Signal(object)
    failed = Signal(str)

    def __init__(self, path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.setObjectName("portpressure-recording-loader")

    def run(self) -> None:
        try:
            recording = load_recording(self.path)
        except RecordingError as exc:
            self.failed.emit(str(exc))
            return
        except MemoryError:
            self.failed.emit(f"{self.path} is too large to load in the memory available")
            return
        except Exception as exc:  # a loader bug must not take the window down with it
            log.exception("loading %s", self.path)
            self.failed.emit(f"cannot load {self.path}: {type(exc).__name__}: {exc}")
            return
        log.info("loaded %s: %d samples in %.2f s", self.path, len(recording), recording.load_seconds)
        self.loaded.emit(recording)


class ReplayBar(QFrame):
    """What is being replayed, any load warnings, and the time cursor."""

    back_to_live = Signal()
    peak_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("replayBar")
        self.setStyleSheet(REPLAY_BAR_STYLE)
        self.title = QLabel()
        self.title.setObjectName("replayTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.warnings = QLabel()
        self.warnings.setObjectName("replayWarnings")
        self.warnings.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.warnings.hide()
        self.peak_button = QPushButton("Highest pressure")
        self.peak_button.setToolTip("Move the cursor to the first sample with the highest port pressure")
        self.peak_button.clicked.connect(self.peak_requested)
        self.live_button = QPushButton("Back to live")
        self.live_button.setToolTip("Leave the replay and sample this machine again")
        self.live_button.clicked.connect(self.back_to_live)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setSingleStep(1)
        self.slider.setPageStep(PAGE_SAMPLES)
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.slider.setToolTip("The moment shown: drag, or Left/Right one sample, Page Up/Down a minute, "
                               "Home/End the ends")
        self.moment = TextStrip(hint="2026-11-24 23:59:59 · sample 999,999 of 999,999")

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 3)
        top.addWidget(self.warnings, 2)
        top.addWidget(self.peak_button)
        top.addWidget(self.live_button)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.moment)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addLayout(bottom)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def show_recording(self, recording: Recording) -> None:
        text = describe(recording)
        self.title.setText(text)
        self.title.setToolTip(f"{text}\n{recording.path}")
        self.warnings.setText(" · ".join(_short_warning(w, recording.path) for w in recording.warnings))
        self.warnings.setToolTip("\n".join(recording.warnings))
        self.warnings.setVisible(bool(recording.warnings))
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(recording) - 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)

    def start(self, recording: Recording, index: int) -> None:
        """Shown for a loaded recording, the cursor at `index` (the window shows it)."""
        self.show_recording(recording)
        self.show()
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.slider.setFocus()

    def step(self, step: int) -> None:
        """One sample back (-1) or on (+1), as Left/Right do."""
        if self.isVisible():
            self.slider.setValue(min(max(self.slider.value() + step, 0), self.slider.maximum()))

    def show_moment(self, index: int, sample: Sample) -> None:
        count = self.slider.maximum() + 1
        self.moment.setText(f"{when(sample.timestamp)} · sample {index + 1:,} of {count:,}")


def _short_warning(warning: str, path: Path) -> str:
    """The bar has little room: the file name is already in the title."""
    return warning.removeprefix(f"{path}: ")
