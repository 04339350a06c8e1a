"""`portpressure watch|probe|tune|report|serve` — the command line (DESIGN.md contract).

Each subcommand lives in core/commands/<name>.py with `register(subparsers)`; this
module only wires them and turns bad input into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from core import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Subcommand modules, in help order. A module missing from a build is simply not offered.
COMMAND_MODULES = ("watch", "probe", "tune", "report", "serve")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage block on error; a script wants one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser(gui_available: bool = True) -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="portpressure",
        description="See, prove and fix ephemeral TCP port exhaustion (TIME_WAIT pile-up).",
    )
    parser.add_argument("--version", action="version", version=f"PortPressure {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    if gui_available:
        gui = sub.add_parser("gui", help="open the window (the default)")
        gui.add_argument("--open", metavar="RECORDING", help="replay a recording made with --record")
        gui.add_argument("--screenshot", metavar="PNG", help="save the window as PNG and exit")
        gui.add_argument("--after", metavar="SECONDS", type=_non_negative_float, default=None,
                         help="with --screenshot: wait this long first (default 3)")
        gui.add_argument("--size", metavar="WxH", type=window_size, default=None,
                         help="with --screenshot: the window's size in pixels (default 1280x800)")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"core.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"core.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


SMALLEST_WINDOW = (1024, 700)  # the window's minimum size (gui.main_window)
LARGEST_WINDOW = (7680, 4320)


def window_size(text: str) -> tuple[int, int]:
    """ "1024x700" -> (1024, 700), within the sizes the window can take."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size like 1280x800: {text!r}")
    width, height = int(match[1]), int(match[2])
    (min_w, min_h), (max_w, max_h) = SMALLEST_WINDOW, LARGEST_WINDOW
    if not (min_w <= width <= max_w and min_h <= height <= max_h):
        raise argparse.ArgumentTypeError(
            f"{width}x{height} is outside {min_w}x{min_h} .. {max_w}x{max_h} (the window's smallest size "
            "and a sane largest)")
    return width, height


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
    return value


# Sampling commands refuse longer periods: timers and Event.wait overflow on huge values.
MAX_INTERVAL_S = 3600.0
MAX_DURATION_S = 366 * 86400.0


def bounded_float(maximum: float, unit: str = "s") -> Callable[[str], float]:
    """positive_float with an upper bound (time.sleep and timers overflow on huge values)."""
    return _bounded(positive_float, maximum, f"{maximum:g} {unit}")


def bounded_int(maximum: int, why: str = "") -> Callable[[str], int]:
    """positive_int with an upper bound; `why` is said beside it (e.g. "label cardinality")."""
    return _bounded(positive_int, maximum, f"{maximum} ({why})" if why else str(maximum))


def _bounded(parse: Callable[[str], Any], maximum: float, shown: str) -> Callable[[str], Any]:
    def parse_bounded(text: str) -> Any:
        value = parse(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"at most {shown}: {text!r}")
        return value
    return parse_bounded


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def has_display() -> bool:
    """Whether a window can be shown: always on Windows/macOS, on Linux only with a
    display server or an explicit Qt platform (offscreen for tests)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM"))


def main(argv: Sequence[str] | None = None,
         open_window: Callable[[argparse.Namespace], int] | None = None) -> int:
    """Entry point. `open_window` is supplied by gui.launcher; core itself never imports Qt."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(gui_available=open_window is not None)
    try:
        if not args_list and open_window is not None and not has_display():
            print("portpressure: no display found; showing the terminal view instead "
                  "(run 'portpressure watch --help' for options)", file=sys.stderr)
            args_list = ["watch"]
            # Tests and scripts can bound the fallback view without a terminal to stop it.
            if os.environ.get("PORTPRESSURE_WATCH_COUNT", "").isdigit():
                args_list += ["--count", os.environ["PORTPRESSURE_WATCH_COUNT"]]
        elif not args_list and open_window is not None:
            args_list = ["gui"]
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return EXIT_OK
        if args.command == "gui":
            assert open_window is not None
            for given, option in ((args.after, "--after"), (args.size, "--size")):
                if given is not None and not args.screenshot:
                    raise UsageError(f"portpressure gui: {option} only goes with --screenshot")
            return open_window(args)
        result: int = args.run(args)
        return result
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `portpressure watch --json | head` closes our stdout: not an error.
        return EXIT_OK
