#!/usr/bin/env bash
# Set up (first time only) and run every check: lint, types (linux and win32), the
# import contract, then the whole test suite. Arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
tools/setup.sh --dev --build  # --build: PyInstaller, so the packaging test builds and runs the real binary
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
py=.venv/bin/python
echo "== ruff"; "$py" -m ruff check core gui tests benchmarks
echo "== mypy (linux)"; "$py" -m mypy --platform linux core
echo "== mypy (win32)"; "$py" -m mypy --platform win32 core
echo "== import contract"; .venv/bin/lint-imports
echo "== pytest"; "$py" -m pytest "$@"
# The Windows lane (issue 14): Windows Python under Wine; skips with a reason where it cannot run.
if [ $# -eq 0 ]; then echo "== windows lane"; exec tools/windows_lane/check.sh; fi
