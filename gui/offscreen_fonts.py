"""Real fonts for Qt's offscreen platform on Windows.

There the offscreen platform reads fonts only from a folder (QT_QPA_FONTDIR, else Qt's own
lib/fonts, which the PySide6 wheels do not ship). Without one it has no font at all: every
text is measured and drawn with a placeholder glyph about twice as wide as real text, so a
window laid out offscreen (tests, `gui --screenshot`) elides and wraps as no real window
does. Windows keeps its fonts in %WINDIR%\\Fonts: point Qt there before the QApplication.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

FONT_DIR_VARIABLE = "QT_QPA_FONTDIR"
FONT_SUFFIXES = (".ttf", ".ttc", ".otf")


def use_windows_fonts_offscreen(environ: MutableMapping[str, str], platform: str = sys.platform) -> None:
    """Set QT_QPA_FONTDIR to the Windows fonts folder when Qt will run offscreen on Windows,
    nobody chose a folder already and that one holds fonts (Wine's may be empty: then Qt's
    own lib/fonts stays); anywhere else leave the environment alone."""
    if platform != "win32" or FONT_DIR_VARIABLE in environ:
        return
    if not environ.get("QT_QPA_PLATFORM", "").startswith("offscreen"):
        return
    folder = os.path.join(environ.get("WINDIR", "C:\\Windows"), "Fonts")
    if _holds_fonts(folder):
        environ[FONT_DIR_VARIABLE] = folder


def _holds_fonts(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(entry.name.lower().endswith(FONT_SUFFIXES) for entry in entries)
    except OSError:
        return False
