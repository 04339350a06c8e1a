#!/usr/bin/env python3
"""Run the Windows lane's python.exe (or another Windows program) under Wine, with the harness
rules of tests/support/windows_lane.py: std streams on pipes, a timeout, waiting on the process
rather than on end of output, and the prefix's wineserver stopped afterwards.

  tools/windows_lane/run.py -c "import sys; print(sys.platform)"
  tools/windows_lane/run.py -m gui.launcher watch --count 2 --json
  tools/windows_lane/run.py --exe dist/PortPressure.exe -- --version
  tools/windows_lane/run.py --path ../other-checkout -m pytest -q tests/test_model.py

The checkout (and every --path) is on the Windows Python's sys.path. Exit status: the program's;
124 on timeout; 3 when the lane is not set up (run tools/windows_lane/setup.sh first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.windows_lane import ROOT, Lane, lane_unavailable_reason  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--exe", help="a Windows program to run instead of python.exe")
    parser.add_argument("--path", action="append", default=[], type=Path,
                        help="another folder for the Windows Python's sys.path (repeatable)")
    parser.add_argument("--keep-server", action="store_true",
                        help="leave the wineserver running (faster for several calls in a row)")
    # Our options come first; the program's arguments start at the first other word (or after --).
    ours = {"--timeout": 2, "--exe": 2, "--path": 2, "--keep-server": 1, "-h": 1, "--help": 1}
    split = 0
    while split < len(argv) and argv[split] in ours:
        split += ours[argv[split]]
    options = parser.parse_args(argv[:split])
    args = argv[split:]
    args = args[1:] if args[:1] == ["--"] else args
    reason = lane_unavailable_reason()
    if reason:
        print(f"run.py: {reason}", file=sys.stderr)
        return 3
    lane = Lane(checkouts=[ROOT, *options.path])
    # A Windows path (C:\windows\system32\reg.exe) as it is; a Linux one made absolute.
    exe = options.exe if not options.exe or ":" in options.exe else str(Path(options.exe).resolve())
    try:
        result = lane.run(args, options.timeout, exe=exe, cwd=Path.cwd())
    except TimeoutError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 124
    finally:
        if not options.keep_server:
            lane.stop_server()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
