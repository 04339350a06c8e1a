"""Colours, curve groups and the resource paths the window shares.

Colours are chosen to read on a light background and in a greyscale printout of a
ticket: critical red, warning amber, ok green, each with a darker text colour.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

LEVEL_COLOURS: dict[str, tuple[str, str]] = {
    # level: (background, text)
    "ok": ("#e3f4e1", "#1b5e20"),
    "warning": ("#fff3cd", "#7a4f00"),
    "critical": ("#fde0dc", "#9b1c1c"),
    "unknown": ("#eceff1", "#37474f"),
}
LEVEL_WORDS: dict[str, str] = {
    "ok": "OK",
    "warning": "WARNING",
    "critical": "CRITICAL",
    "unknown": "WAITING",
}


@dataclass(frozen=True)
class CurveGroup:
    """One plotted curve: the sum of some TCP states."""

    label: str
    states: tuple[str, ...]
    colour: str
    width: float = 2.0
    visible: bool = True


# TIME_WAIT is the pile-up, ESTABLISHED the load, CLOSE_WAIT a leak, SYN_SENT the
# attempts (they pile up when connects stall); the rare closing states are summed so
# the legend stays short; LISTEN and BOUND barely move and start hidden.
CURVE_GROUPS: tuple[CurveGroup, ...] = (
    # The widest, drawn first: where TIME_WAIT, ports held and the capacity coincide (the
    # picture of exhaustion) its red edges frame the thinner lines drawn over it.
    CurveGroup("TIME_WAIT", ("TIME_WAIT",), "#d62728", 4.5),
    CurveGroup("ESTABLISHED", ("ESTABLISHED",), "#1f77b4"),
    CurveGroup("CLOSE_WAIT", ("CLOSE_WAIT",), "#ff7f0e"),
    CurveGroup("SYN_SENT", ("SYN_SENT",), "#9467bd"),
    CurveGroup("FIN_WAIT 1+2", ("FIN_WAIT1", "FIN_WAIT2"), "#8c564b"),
    CurveGroup("closing (LAST_ACK, CLOSING, SYN_RECV)", ("LAST_ACK", "CLOSING", "SYN_RECV"), "#7f7f7f", 1.5),
    CurveGroup("LISTEN + BOUND", ("LISTEN", "BOUND"), "#17becf", 1.5, visible=False),
)
PORTS_HELD_COLOUR = "#2ca02c"
CAPACITY_COLOUR = "#b71c1c"

BANNER_STYLE = """
QFrame#verdictBanner {{ background: {background}; border: 1px solid {text}; border-radius: 6px; }}
QLabel#verdictLevel {{ color: white; background: {text}; border-radius: 4px; padding: 4px 10px;
                      font-weight: bold; font-size: 15pt; }}
QLabel#verdictTitle {{ color: {text}; font-weight: bold; font-size: 13pt; }}
QLabel#verdictReasons {{ color: #212121; }}
QLabel#rebootPending {{ color: #7a4f00; background: #fff3cd; border: 1px solid #7a4f00;
                       border-radius: 4px; padding: 2px 6px; }}
"""


def resources_dir() -> Path:
    """resources/ beside the packages in a checkout, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def icon_path() -> Path:
    """The best icon file for this platform (the .ico carries every Windows size)."""
    folder = resources_dir()
    for name in (("portpressure.ico",) if sys.platform == "win32" else ()) + (
            "portpressure.svg", "portpressure.png"):
        if (folder / name).is_file():
            return folder / name
    return folder / "portpressure.svg"
