"""The banner's reasons and gauge caption change numbers every sample: in the window,
each sample paints the banner once, with the new text (a rich-text or selectable QLabel
left to lay out its text in its paint asked for a second paint of itself and the banner
under it a few ms later, every sample)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication

from gui.verdict_banner import reasons_html
from tests.support.samples import worst_case_sample
from tests.support.windows import EventCounter, worst_case_window


def test_each_sample_paints_the_banner_once_with_its_numbers(qtbot, tmp_path: Path) -> None:
    window = worst_case_window(qtbot, tmp_path)
    banner = window.banner
    paints = EventCounter(QEvent.Type.Paint)
    banner.installEventFilter(paints)
    first = worst_case_sample()
    counts = []
    for n in range(1, 7):
        ports = dataclasses.replace(first.ports, in_use=first.ports.in_use - n)
        reasons = (f"The busiest pool uses {ports.in_use} ports.",)
        verdict = dataclasses.replace(first.verdict, reasons=reasons)
        forecast = dataclasses.replace(first.forecast, steady_state_time_wait=9_000 + n)
        sample = dataclasses.replace(first, timestamp=first.timestamp + n, ports=ports, verdict=verdict,
                                     forecast=forecast)
        before = paints.count
        window.session.ingest(sample)
        qtbot.waitUntil(lambda b=before: paints.count > b, timeout=3000)
        for _ in range(3):  # what a second paint would wait for: the layout request, then the update
            QApplication.processEvents()
        counts.append(paints.count - before)
        assert f"{ports.in_use:,} of" in banner.gauge.text()
        assert banner.reasons_label.text() == reasons_html(sample.verdict.reasons)
        assert f"{9_000 + n:,} in TIME_WAIT" in banner.gauge_caption.text()
    assert counts[1:] == [1] * 5, counts  # the first may grow the banner to the new text
