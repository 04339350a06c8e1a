"""Status messages at the smallest window: elided in the middle (start and end kept) with
the whole text in the tooltip and in View > Messages; an error and a message never print
over each other or over the permanent read-outs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QLabel, QStatusBar

from gui.main_window import MainWindow
from tests.support.windows import worst_case_window

pytestmark = pytest.mark.gui
LONG_PATH = "/srv/evidence/" + "/".join(f"folder-{i:02d}" for i in range(20)) + "/portpressure-bundle"


@pytest.fixture
def window(qtbot, tmp_path: Path) -> MainWindow:
    return worst_case_window(qtbot, tmp_path, (1024, 700))


def shown_message(bar: QStatusBar) -> str:
    return QStatusBar.currentMessage(bar)  # what Qt paints, not the whole text


def first_permanent_x(window: MainWindow) -> int:
    bar = window.statusBar()
    return min(w.mapTo(bar, QPoint(0, 0)).x() for w in bar.permanent if w.isVisible())


def test_a_long_message_is_elided_in_the_middle_and_kept_whole(qtbot, window: MainWindow) -> None:
    bar = window.statusBar()
    window.show_error(f"Could not save the evidence: {LONG_PATH} is read-only")  # laid out first
    text = f"Saved the evidence (screenshot, report.html, report.json) in {LONG_PATH}"
    bar.showMessage(text, 60_000)
    # Once the bar has settled (the message hides the error label), the message ends
    # before the first permanent read-out.
    qtbot.waitUntil(lambda: bar.fontMetrics().horizontalAdvance(shown_message(bar))
                    <= first_permanent_x(window) - 8, timeout=3000)
    shown = shown_message(bar)
    assert "…" in shown and shown.startswith("Saved the evidence") and shown.endswith("portpressure-bundle")
    assert bar.currentMessage() == text  # the window's own code and tests read the whole text
    # A second message replaces the first; the log keeps both, whole.
    bar.showMessage("Screenshot copied to the clipboard", 5000)
    assert shown_message(bar) == "Screenshot copied to the clipboard"
    dialog = bar.show_log()
    logged = dialog.view.toPlainText()
    assert text in logged and "Screenshot copied to the clipboard" in logged
    view_menu = window.menuBar().actions()[1].menu()
    assert bar.messages_action in view_menu.actions()


def test_an_error_never_prints_over_a_message_or_the_read_outs(qtbot, window: MainWindow) -> None:
    bar = window.statusBar()
    error = f"Could not save the evidence: cannot write the report in {LONG_PATH}: Permission denied"
    window.show_error(error)
    label = window.status_bar.error_label
    painted = QLabel.text(label)  # what Qt paints, not the whole text
    assert painted.startswith("Could not save") and painted.endswith("Permission denied")
    assert label.text() == error and label.toolTip() == error
    right = label.mapTo(bar, QPoint(label.width(), 0)).x()
    assert right <= first_permanent_x(window)
    # A temporary message hides the error while it shows; the error comes back after.
    bar.showMessage("Live: sampling this machine again", 5000)
    assert not label.isVisible()
    bar.clearMessage()
    assert label.isVisible()
    assert error in bar.log.text()
