"""Frozen entry point: the same as `portpressure` (gui.launcher.main).

freeze_support() comes first, before the app is imported: if the executable was
started as a multiprocessing child by the spawn method (Windows; Linux forks the
window's sampler, see core/sampler_process.py, and never re-executes), it runs the
child's task and exits there, so a child never opens a second window.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from gui.launcher import main

    sys.exit(main())
