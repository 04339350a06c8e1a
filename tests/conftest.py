import os
import sys
from pathlib import Path

# Make `core`, `gui` and `tests.support` importable when pytest runs from a checkout.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from gui.offscreen_fonts import use_windows_fonts_offscreen  # noqa: E402 - needs ROOT on sys.path

use_windows_fonts_offscreen(os.environ)  # before pytest-qt's QApplication: real text metrics on Windows

# Linux-only modules (kernel tracing, namespaces, sysctls, fork) are not even collected
# elsewhere: importing them needs Linux-only pieces. The rest runs on the Windows runner.
LINUX_ONLY = ["test_linux_trace.py", "test_kernel_events.py", "test_scenarios.py", "test_tuning_linux.py",
              "test_tiered_time_wait.py", "test_sampler_process.py", "test_gui_netns.py"]
collect_ignore = [] if sys.platform.startswith("linux") else LINUX_ONLY
