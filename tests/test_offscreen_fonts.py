"""Qt's offscreen platform has real fonts on Windows too (gui/offscreen_fonts.py): without
them every text is measured with a placeholder glyph and the window elides as none does."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QFontDatabase, QFontInfo, QFontMetrics
from PySide6.QtWidgets import QApplication

from gui.offscreen_fonts import use_windows_fonts_offscreen


def test_offscreen_on_windows_reads_the_windows_fonts_folder(tmp_path: Path) -> None:
    fonts = tmp_path / "Fonts"
    fonts.mkdir()
    environ = {"QT_QPA_PLATFORM": "offscreen", "WINDIR": str(tmp_path)}
    use_windows_fonts_offscreen(environ, platform="win32")
    assert "QT_QPA_FONTDIR" not in environ  # an empty folder (Wine's): Qt's own lib/fonts stays
    (fonts / "arial.ttf").write_bytes(b"")
    use_windows_fonts_offscreen(environ, platform="win32")
    assert environ["QT_QPA_FONTDIR"] == str(fonts)


@pytest.mark.parametrize(("environ", "platform"), [
    ({"QT_QPA_PLATFORM": "offscreen", "QT_QPA_FONTDIR": "E:\\fonts"}, "win32"),  # someone chose
    ({"QT_QPA_PLATFORM": "windows"}, "win32"),  # the windows platform asks Windows itself
    ({}, "win32"),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux"),  # fontconfig finds them
])
def test_anything_else_is_left_alone(environ: dict[str, str], platform: str) -> None:
    before = dict(environ)
    use_windows_fonts_offscreen(environ, platform=platform)
    assert environ == before


@pytest.mark.gui
def test_the_tests_window_font_is_a_real_one(qapp: QApplication) -> None:
    # Under Windows offscreen without a fonts folder: no families, an empty family name,
    # and "Could not save" measured 168 px wide where DejaVu Sans 9 pt gives 83.
    assert QFontDatabase.families()
    font = QApplication.font()
    assert QFontInfo(font).family() != ""
    assert QFontMetrics(font).horizontalAdvance("Could not save") < 12 * len("Could not save")
