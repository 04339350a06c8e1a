"""Readers of the kernel's TCP socket table and counters, one module per OS.

`open_source()` picks the reader for this OS; all of them satisfy `SocketSource`.
"""

from __future__ import annotations

import sys

from core.sources.base import SocketSource, SourceError


def open_source(prefer_psutil: bool = False) -> SocketSource:
    """The fastest reader that works here; psutil only where nothing better exists."""
    if not prefer_psutil:
        if sys.platform == "win32":
            from core.sources.windows import WindowsSource

            return WindowsSource()
        if sys.platform.startswith("linux"):
            from core.sources.linux import LinuxSource

            return LinuxSource()
    from core.sources.psutil_source import PsutilSource

    return PsutilSource()


__all__ = ["SocketSource", "SourceError", "open_source"]
