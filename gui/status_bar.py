"""The status bar: what the reader is and sees, the port settings, the cost of the
sample on screen, recording and replay state, and the last problem. It follows a
gui.session.Session: the settings shown are those of the newest sample (live) or of
the recording (replay), never a value from before a change.
"""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QLabel, QProgressBar, QWidget

from core.model import PortConfig, Sample
from core.recording import Recorder, Recording
from core.settings_watch import config_after
from gui.replay import describe
from gui.sampling_worker import SourceFacts
from gui.session import LIVE, LOADING, REPLAY, Session
from gui.status_messages import ElidedLabel, MessageStatusBar
from gui.text_strip import TextStrip

log = logging.getLogger(__name__)


def port_settings_text(config: PortConfig) -> str:
    lo, hi = config.dynamic_range
    reuse = "" if config.tw_reuse is None else f" · tcp_tw_reuse {config.tw_reuse}"
    return (f"{config.os_name} · ports {lo}-{hi} ({config.capacity:,}) · "
            f"TIME_WAIT {config.time_wait_seconds:g} s{reuse}")


class StatusBar(MessageStatusBar):
    """Long messages elided in the middle, every message kept for View > Messages
    (gui/status_messages.py); the read-outs follow the session."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.error_label = ElidedLabel(self.log)
        self.error_label.setStyleSheet("color: #b71c1c; font-weight: bold;")
        self.error_label.setWordWrap(False)
        # Its text changes every sample: a TextStrip repaints without re-laying out the window.
        self.interval_label = TextStrip(hint="Every 10 s · last sample 9999.9 ms, 9,999,999 sockets")
        self._show_interval()
        self.privilege_label = QLabel()
        self.source_label = QLabel("Opening the socket table reader…")
        self.record_label = QLabel()
        self.record_label.setStyleSheet("color: #b71c1c;")
        self.record_label.hide()
        self.loading_bar = QProgressBar()
        self.loading_bar.setRange(0, 0)  # busy: the loader cannot tell how far it got
        self.loading_bar.setMaximumWidth(120)
        self.loading_bar.hide()
        self.mode_label = QLabel()
        self.mode_label.setStyleSheet("color: #1a237e; font-weight: bold;")
        self.mode_label.hide()
        for widget in (self.loading_bar, self.record_label, self.interval_label, self.privilege_label,
                       self.source_label):
            self.addPermanentWidget(widget)
        self.addWidget(self.mode_label)
        self.addWidget(self.error_label, 1)
        session.shown.connect(self.show_sample)
        session.facts_changed.connect(self.show_facts)
        session.error.connect(self.show_error)
        session.message.connect(lambda text: self.showMessage(text, 10000))
        session.mode_changed.connect(self.show_mode)
        session.recording_loaded.connect(self.show_recording)
        session.replay_moved.connect(self.show_replayed_settings)
        session.load_failed.connect(self.show_error)
        session.recorder_changed.connect(self.show_recorder)
        session.cleared.connect(self._show_interval)

    def _show_interval(self) -> None:
        self.interval_label.setText(f"Sampling every {self.session.interval_s:g} s")

    def show_sample(self, sample: Sample) -> None:
        """The cost of the sample on screen."""
        source = sample.extra.get("source", "")
        sockets = sample.extra.get("sockets")
        counted = (f", {sockets:,} socket{'' if sockets == 1 else 's'}" if isinstance(sockets, int)
                   else "")
        read_with = f", read with {source}" if source else ""
        if self.session.recording is None:
            self.interval_label.setText(f"Every {self.session.interval_s:g} s · last sample "
                                        f"{sample.sample_ms:.1f} ms{counted}")
            self.interval_label.setToolTip("Sampling interval and the cost of the last sample" + read_with)
        else:
            self.interval_label.setText(f"Recorded sample took {sample.sample_ms:.1f} ms{counted}")
            self.interval_label.setToolTip("What the recorded sample cost to take" + read_with)

    def show_facts(self, facts: SourceFacts | None) -> None:
        """The live reader and the port settings of its newest sample."""
        if facts is None:
            self.privilege_label.setText("")
            self.source_label.setText("Opening the socket table reader…")
            return
        config = facts.port_config
        admin = "administrator" if config.os_name == "Windows" else "root"
        if facts.privileged:
            self.privilege_label.setText(f"Running as {admin}" + (" (limits: hover)" if facts.limits else ""))
        else:
            self.privilege_label.setText(f"Not {admin}: other users' socket owners hidden")
        hidden = "\n".join(facts.limits)
        self.privilege_label.setToolTip(hidden or "Nothing is hidden: every socket's owner is visible.")
        self.source_label.setText(port_settings_text(config))
        self.source_label.setToolTip(f"Read with {facts.source_name}" + (
            "\n" + "\n".join(config.notes) if config.notes else ""))

    def show_recording(self, recording: Recording) -> None:
        self._show_replay_mode(recording)
        header = recording.header or {}
        host = header.get("host") or "an unknown host"
        self.privilege_label.setText(f"Recorded on {host}")
        self.privilege_label.setToolTip(f"{header.get('os', '')}\nPortPressure {header.get('version', '?')}, "
                                        f"read with {header.get('source') or 'an unknown reader'}")
        config = recording.port_config
        if config is None:
            self.source_label.setText("Port settings not recorded")
            self.source_label.setToolTip("This recording's header does not carry the port range")
            return
        self.source_label.setText(port_settings_text(config))
        self.source_label.setToolTip("The port settings at the replayed moment: those recorded when the "
                                     "recording started, with the setting changes it recorded since"
                                     + ("\n" + "\n".join(config.notes) if config.notes else ""))

    def _show_replay_mode(self, recording: Recording) -> None:
        # The file and the count here; the period in the title, the bar above the plot and the tooltip.
        count = len(recording)
        warned = (f" · {len(recording.warnings)} warning{'' if len(recording.warnings) == 1 else 's'}"
                  if recording.warnings else "")
        self.mode_label.setText(f"Replay of {recording.path.name}, {count:,} "
                                f"sample{'' if count == 1 else 's'}{warned}")
        self.mode_label.setToolTip("\n".join((describe(recording), str(recording.path)) + recording.warnings))

    def show_replayed_settings(self, _index: int, sample: Sample) -> None:
        """The port settings in effect at the replayed moment: the recording's header
        holds those of its start, its setting events say what changed since."""
        recording = self.session.recording
        if recording is None or recording.port_config is None:
            return
        changes = [e for e in recording.events if e.kind == "setting" and e.time_iso <= sample.time_iso]
        self.source_label.setText(port_settings_text(config_after(recording.port_config, changes)))

    def show_mode(self, mode: str) -> None:
        loader = self.session.loader
        self.loading_bar.setVisible(loader is not None)
        if mode == LOADING and loader is not None:
            try:
                size = f" ({loader.path.stat().st_size / 1e6:.1f} MB)"
            except OSError:
                size = ""
            self.mode_label.setText(f"Loading {loader.path.name}{size}…")
        elif mode == REPLAY and self.session.recording is not None:
            self._show_replay_mode(self.session.recording)  # also after a failed load over a replay
        elif mode == LIVE and self.session.recording is None:
            self._show_interval()
        self.mode_label.setVisible(mode in (LOADING, REPLAY) or self.session.recording is not None)

    def show_error(self, text: str) -> None:
        if text == self.error_label.text():
            return  # cleared by every sample: only a change costs a re-fit
        self.error_label.setText(text)
        self.error_label.setToolTip(text)
        if text:
            log.warning("%s", text)

    def show_recorder(self, recorder: Recorder | None, written: int) -> None:
        if recorder is None:
            self.record_label.hide()
            return
        self.record_label.setText(f"● Recording to {recorder.path.name} ({written:,} "
                                  f"sample{'' if written == 1 else 's'})")
        self.record_label.setToolTip(f"Every sample is appended to {recorder.path} "
                                     "(File > Record to file again to stop)")
        self.record_label.show()
