"""The ticket's picture: with a verdict of six long reasons (the pool exhausted, a
failed outbound test, a process leaking CLOSE_WAIT, the culprit, the advice) every word
of the banner is on screen at 1280x800 and at 1024x700, measured from the window's own
widgets, and `gui --screenshot --size WxH` writes a PNG of exactly that size."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QAbstractScrollArea, QApplication, QLabel, QWidget

from core.recording import Recorder
from tests.support.samples import worst_case_sample
from tests.support.windows import worst_case_window
from tests.test_gui_window import run_cli

pytestmark = pytest.mark.gui
SIZES = [(1280, 800), (1024, 700)]


def visible_in_window(widget: QWidget, window: QWidget) -> QRect:
    """The part of `widget` not clipped by any of its parents, in window coordinates."""
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        rect = rect.intersected(QRect(parent.mapTo(window, QPoint(0, 0)), parent.size()))
        parent = parent.parentWidget()
    return rect.intersected(window.rect())


def assert_whole(label: QLabel, window: QWidget) -> None:
    needed = label.heightForWidth(label.width()) if label.wordWrap() else label.sizeHint().height()
    assert label.height() >= needed, f"{label.objectName()}: {label.height()} px tall, needs {needed}"
    shown = visible_in_window(label, window)
    assert shown.size() == label.size(), f"{label.objectName()} is cut: {shown} of {label.size()}"


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_reason_is_on_screen(qtbot, tmp_path: Path, size: tuple[int, int]) -> None:
    sample = worst_case_sample()
    assert len(sample.verdict.reasons) == 6
    assert any("CLOSE_WAIT" in r for r in sample.verdict.reasons)
    window = worst_case_window(qtbot, tmp_path, size)
    banner = window.banner
    qtbot.waitUntil(lambda: banner.height() >= banner.heightForWidth(banner.width()), timeout=5000)
    assert window.size().toTuple() == size
    assert banner.reasons == sample.verdict.reasons
    for label in (banner.level_label, banner.title_label, banner.reasons_label, banner.gauge_caption):
        assert_whole(label, window)
    for reason in sample.verdict.reasons:  # all of it, not an elided copy
        assert html.escape(reason) in banner.reasons_label.text()
    # Nothing behind a scrollbar: the banner holds no scroll area at all.
    assert not banner.findChildren(QAbstractScrollArea)
    # The plot keeps a readable height under the grown banner, its capacity label whole.
    plot = window.plot
    assert plot.height() >= 150
    qtbot.waitUntil(lambda: plot.limit_line.isVisible(), timeout=5000)
    label = plot.limit_line.label
    assert label.toPlainText() == "capacity of the busiest pool: 200"
    assert plot.view_box.sceneBoundingRect().contains(label.sceneBoundingRect())
    picture = window.screenshot()
    assert (picture.width(), picture.height()) == size


def test_screenshot_size_option_writes_that_size(tmp_path: Path) -> None:
    """The ticket reader's path: a recording replayed and photographed at 1024x700."""
    recording = tmp_path / "worst.jsonl"
    now = time.time()
    with Recorder(recording) as recorder:
        for i in range(5):
            recorder.append(worst_case_sample(now - 5 + i))
    out = tmp_path / "small.png"
    done = run_cli("gui", "--open", str(recording), "--screenshot", str(out), "--after", "0.5",
                   "--size", "1024x700", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1024, 700)


@pytest.mark.parametrize(("size", "needle"), [("1024", "not a size like 1280x800"),
                                              ("800x600", "outside 1024x700")])
def test_a_bad_size_is_one_line_and_exit_2(tmp_path: Path, size: str, needle: str) -> None:
    done = run_cli("gui", "--screenshot", str(tmp_path / "x.png"), "--size", size, tmp_path=tmp_path)
    assert done.returncode == 2 and needle in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x.png").exists()
    alone = run_cli("gui", "--size", "1280x800", tmp_path=tmp_path)
    assert alone.returncode == 2 and "--size only goes with --screenshot" in alone.stderr


def test_a_hidden_curve_says_so_in_the_legend(qtbot, tmp_path: Path) -> None:
    window = worst_case_window(qtbot, tmp_path)
    legend = window.plot.legend
    labels = {sample.item: label for sample, label in legend.items}
    listeners = next(c for c in window.plot.curves if not c.isVisible())
    assert labels[listeners].text == "LISTEN + BOUND (hidden: click to show)"
    listeners.setVisible(True)
    assert labels[listeners].text == "LISTEN + BOUND"
    time_wait = window.plot.curves[0]
    time_wait.setVisible(False)
    assert labels[time_wait].text == "TIME_WAIT (hidden: click to show)"


def test_side_panels_need_no_scrolling_and_key_columns_show(qtbot, tmp_path: Path) -> None:
    """At 1280x800, even under the six-reason banner, the Outbound test's Run button and
    its result line and the OS settings table are on screen without scrolling; at
    1024x700 the process table keeps PID, Name, Sockets and TIME_WAIT in view."""
    window = worst_case_window(qtbot, tmp_path, (1280, 800))
    for index, needed in ((1, (window.probe_panel.run_button, window.probe_panel.status,
                               window.probe_panel.table)),
                          (2, (window.settings_panel.table, window.settings_panel.apply_button))):
        window.side_tabs.setCurrentIndex(index)
        area = window.side_tabs.currentWidget()
        qtbot.waitUntil(lambda a=area: a.widget().height() <= a.viewport().height(), timeout=3000)
        assert not area.verticalScrollBar().isVisible()
        for widget in needed:
            shown = visible_in_window(widget, window)
            assert shown.size() == widget.size(), f"{widget.objectName() or type(widget).__name__} is cut"
    settings_header = window.settings_panel.table.horizontalHeader()
    assert [settings_header.model().headerData(c, Qt.Orientation.Horizontal) for c in range(4)] == \
        ["Setting", "In effect", "Default", "Notes"]
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=3000)
    view = window.processes.process_view
    header = view.horizontalHeader()
    titles = [header.model().headerData(c, Qt.Orientation.Horizontal) for c in range(header.count())]
    for title in ("PID", "Name", "Sockets", "TIME_WAIT"):
        column = titles.index(title)
        assert header.sectionViewportPosition(column) + header.sectionSize(column) <= view.viewport().width()


def test_reasons_that_change_numbers_relayout_nothing_and_longer_ones_grow_the_banner(qtbot) -> None:
    """The reasons and the gauge caption carry numbers that change every sample: the
    window is re-laid out only when the banner needs another height, and then it gets it."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QVBoxLayout

    from gui.verdict_banner import VerdictBanner, reasons_html
    from tests.support.windows import EventCounter

    window = QWidget()
    qtbot.addWidget(window)
    banner = VerdictBanner()
    layout = QVBoxLayout(window)
    layout.addWidget(banner)
    layout.addWidget(QLabel("below"), 1)
    window.resize(900, 600)
    window.show()
    qtbot.waitExposed(window)
    banner.reasons_label.setText(reasons_html(("The busiest pool uses 624 of 64496 ports (1%).",)))
    banner.gauge_caption.setText("Busiest pool: a\nAt 166/s: 9,960 in TIME_WAIT")
    fitted = (banner.reasons_label, banner.gauge_caption)
    qtbot.waitUntil(lambda: all(label.height() == label.heightForWidth(label.width()) for label in fitted),
                    timeout=5000)
    QApplication.processEvents()
    short = banner.height()
    requests = EventCounter(QEvent.Type.LayoutRequest)
    window.installEventFilter(requests)
    for n in range(625, 635):  # numbers change, the wrapped height does not
        banner.reasons_label.setText(reasons_html((f"The busiest pool uses {n} of 64496 ports (1%).",)))
        banner.gauge_caption.setText(f"Busiest pool: a\nAt {n // 4}/s: {n * 16:,} in TIME_WAIT")
        QApplication.processEvents()
    assert requests.count == 0
    assert banner.height() == short
    long_reasons = tuple(f"Reason {i}: " + "a long sentence that wraps " * 8 for i in range(4))
    banner.reasons_label.setText(reasons_html(long_reasons))
    qtbot.waitUntil(lambda: banner.height() > short + 40, timeout=5000)
    assert_whole(banner.reasons_label, window)
    assert requests.count > 0
    tall = banner.reasons_label.height()
    window.resize(700, 600)  # narrower: more lines, and still all of them on screen
    qtbot.waitUntil(lambda: banner.reasons_label.height() == banner.reasons_label.heightForWidth(
        banner.reasons_label.width()) > tall, timeout=5000)
    assert_whole(banner.reasons_label, window)
    banner.reasons_label.setText(reasons_html(("Short again.",)))
    qtbot.waitUntil(lambda: banner.height() < short + 40, timeout=5000)
