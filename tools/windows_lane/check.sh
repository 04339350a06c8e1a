#!/usr/bin/env bash
# The Windows lane's tests, what ./test.sh runs: set the lane up (setup.sh), then
#   (a) the project's test suite under the Windows Python (Linux-only tests skip with a reason);
#   (b-e) tests/test_windows_lane.py: the Windows source against real sockets in network
#         namespaces, tune against Wine's registry, probe, and the window's screenshot.
# Where the lane cannot be set up (no Wine and not root, ...) it says why and exits 0: skipped.
# Arguments go to the Windows pytest of part (a).
set -euo pipefail
checkout=$(cd "$(dirname "$0")/../.." && pwd)
cd "$checkout"
started=$SECONDS
[ -x .venv/bin/python ] || tools/setup.sh --dev  # parts (b-e) run in the project's Linux virtualenv
set +e
answer=$(tools/windows_lane/setup.sh)
status=$?
set -e
if [ "$status" -eq 3 ]; then
  echo "windows lane: skipped: ${answer#skip: }"
  exit 0
fi
[ "$status" -eq 0 ] || { echo "windows lane: setup failed (status $status)" >&2; exit "$status"; }
echo "windows lane: ready in $((SECONDS - started)) s ($answer)"

part=$SECONDS
echo "== windows lane (a): the test suite under Windows Python"
tools/windows_lane/run.py --timeout 900 -m pytest -q -p no:cacheprovider "$@"
echo "windows lane (a): $((SECONDS - part)) s"

part=$SECONDS
echo "== windows lane (b-e): end to end under Wine, in network namespaces"
PORTPRESSURE_WINDOWS_LANE=1 QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/test_windows_lane.py
echo "windows lane (b-e): $((SECONDS - part)) s; the window's screenshot: ${answer}/out/gui-screenshot.png"
echo "windows lane: $((SECONDS - started)) s in all"
