"""Frozen entry point: the same as `portpressure` (gui.launcher.main).

freeze_support() is a no-op unless the frozen executable was started as a
multiprocessing child on Windows; calling it costs nothing and keeps a future
child process from re-opening the window.
"""

import multiprocessing
import sys

from gui.launcher import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
