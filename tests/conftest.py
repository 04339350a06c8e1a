import os
import sys
from pathlib import Path

# Make `core`, `gui` and `tests.support` importable when pytest runs from a checkout.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
