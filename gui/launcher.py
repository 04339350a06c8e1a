"""The `portpressure` executable: the command line from core, plus the window.

Qt is imported only when a window is actually opened, so `watch`, `probe`, `tune`
and `report` start fast and work on a server with no display (Server Core).
"""

from __future__ import annotations

import argparse
import sys

from core import cli


def _open_window(args: argparse.Namespace) -> int:
    from gui.app import run_window  # imports Qt

    return run_window(args)


def main() -> int:
    return cli.main(sys.argv[1:], open_window=_open_window)


if __name__ == "__main__":
    sys.exit(main())
