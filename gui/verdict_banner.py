"""The verdict across the top: level in colour and words, title, reasons, pressure gauge.

The reasons are selectable text: a support engineer pastes them into the ticket.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from core.analysis import CRITICAL_PRESSURE, WARNING_PRESSURE
from core.model import PortsSummary, Sample
from gui.style import BANNER_STYLE, LEVEL_COLOURS, LEVEL_WORDS
from gui.wrapped_text import WrappedTextBox

LEFT_COLUMN_PX = 230
GAUGE_STYLE = """
QProgressBar {{ border: 1px solid #90a4ae; border-radius: 4px; background: white; text-align: center;
               min-height: 22px; font-weight: bold; }}
QProgressBar::chunk {{ background: {colour}; border-radius: 3px; }}
"""


def pressure_colour(pressure: float) -> str:
    if pressure >= CRITICAL_PRESSURE:
        return "#e53935"
    if pressure >= WARNING_PRESSURE:
        return "#ffb300"
    return "#43a047"


def reasons_html(reasons: tuple[str, ...]) -> str:
    """One bullet per reason, wrapped lines hanging under the text (not under the bullet)."""
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    return f"<ul style='margin: 0px; -qt-list-indent: 1;'>{items}</ul>"


def pool_caption(ports: PortsSummary) -> str:
    if not ports.pools and ports.in_use == 0:
        return "No outbound connections yet: every port is free"
    return f"Busiest pool: {ports.pool}"


class VerdictBanner(QFrame):
    """Grows to its text: every reason is on screen (and in a screenshot), never behind a
    scrollbar. The height changes only when the wording does: the reasons and the gauge
    caption change their numbers every sample, and each sits in a WrappedTextBox, which
    asks the window for a new layout only when the text needs another height."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verdictBanner")
        self.level = "unknown"
        self.reasons: tuple[str, ...] = ()
        self._gauge_colour = ""
        self.level_label = QLabel()
        self.level_label.setObjectName("verdictLevel")
        self.level_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title_label = QLabel()
        self.title_label.setObjectName("verdictTitle")
        self.title_label.setWordWrap(True)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reasons_label = QLabel()
        self.reasons_label.setObjectName("verdictReasons")
        self.reasons_label.setWordWrap(True)
        self.reasons_label.setTextFormat(Qt.TextFormat.RichText)
        self.reasons_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reasons_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.reboot_label = QLabel()
        self.reboot_label.setObjectName("rebootPending")
        self.reboot_label.setWordWrap(True)
        self.reboot_label.hide()

        self.gauge = QProgressBar()
        self.gauge.setRange(0, 1000)
        self.gauge.setValue(0)
        self.gauge.setFormat("port pressure: waiting")
        self.gauge.setToolTip("Ports held in the busiest pool / that pool's capacity")
        self.gauge_caption = QLabel()
        self.gauge_caption.setWordWrap(True)
        self.gauge_caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.gauge_caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # The level, the gauge and its caption share one narrow column on the left, so
        # the reasons get the width (fewer lines, a lower banner at 1024 px).
        left = QVBoxLayout()
        left.setSpacing(4)
        left.addWidget(self.level_label)
        left.addWidget(self.gauge)
        self.gauge_caption_box = WrappedTextBox(self.gauge_caption)
        left.addWidget(self.gauge_caption_box)
        left.addStretch(1)
        left_box = QWidget()
        left_box.setLayout(left)
        left_box.setFixedWidth(LEFT_COLUMN_PX)
        middle = QVBoxLayout()
        middle.setSpacing(2)
        middle.addWidget(self.title_label)
        self.reasons_box = WrappedTextBox(self.reasons_label)
        middle.addWidget(self.reasons_box)
        middle.addWidget(self.reboot_label)
        middle.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(left_box, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(middle, 1)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.show_waiting()

    def show_waiting(self) -> None:
        """Before the first sample (also when coming back to live from a replay)."""
        self._apply_level("unknown")
        self.title_label.setText("Reading the socket table…")
        self.reasons = ()
        self.reasons_shown: tuple[str, ...] | None = None
        self.reasons_box.set_text("The first sample names the busiest pool and the process behind it.")
        self.gauge.setValue(0)
        self.gauge.setFormat("port pressure: waiting")
        self.gauge_caption_box.set_text("")

    def _apply_level(self, level: str) -> None:
        self.level = level
        background, text = LEVEL_COLOURS.get(level, LEVEL_COLOURS["unknown"])
        self.setStyleSheet(BANNER_STYLE.format(background=background, text=text))
        self.level_label.setText(LEVEL_WORDS.get(level, level.upper()))

    def show_sample(self, sample: Sample) -> None:
        verdict = sample.verdict
        if verdict.level != self.level:
            self._apply_level(verdict.level)
        self.title_label.setText(verdict.title)
        self.reasons = verdict.reasons
        if verdict.reasons != self.reasons_shown:
            self.reasons_box.set_text(reasons_html(verdict.reasons))
            self.reasons_shown = verdict.reasons
        ports = sample.ports
        self.gauge.setValue(round(min(max(ports.pressure, 0.0), 1.0) * 1000))
        self.gauge.setFormat(f"{ports.pressure * 100:.0f}%  ({ports.in_use:,} of {ports.capacity:,} ports)")
        colour = pressure_colour(ports.pressure)
        if colour != self._gauge_colour:  # restyling is not free: only when it changes
            self._gauge_colour = colour
            self.gauge.setStyleSheet(GAUGE_STYLE.format(colour=colour))
        eta = sample.forecast.seconds_to_exhaustion
        steady = sample.forecast.steady_state_time_wait
        lines = [pool_caption(ports)]
        if eta is not None:
            lines.append("Out of ports now" if eta <= 0 else f"Out of ports in ~{eta:.0f} s")
        rate = sample.forecast.open_rate_per_s
        lines.append(f"At {rate:,.0f}/s: {steady:,} in TIME_WAIT" if rate >= 1 else
                     f"At this rate: {steady:,} in TIME_WAIT")
        self.gauge_caption_box.set_text("\n".join(lines))
        self.gauge_caption.setToolTip(
            f"Busiest pool: {ports.pool}\nSockets that would sit in TIME_WAIT if connections kept being "
            f"opened at the current rate (steady state): {steady:,}")

    def show_reboot_pending(self, text: str) -> None:
        self.reboot_label.setText(f"Reboot pending: {text}" if text else "")
        self.reboot_label.setVisible(bool(text))

    def reasons_text(self) -> str:
        """The reasons as plain text, one a line (what a ticket wants)."""
        return "\n".join(self.reasons)
