#!/usr/bin/env bash
# The files a user downloads, in dist/release/: PortPressure.exe and portpressure-cli.exe
# (Windows), portpressure-linux-x86_64 (the Linux single file) and SHA256SUMS. Builds both
# (packaging/build.sh; the Windows one under Wine, cached), runs the packaging tests on exactly
# those files, and copies them only when every test passed. Usage: packaging/release.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
release=dist/release

packaging/build.sh
packaging/build.sh --windows
# The built files themselves are tested (the Windows tests always test dist/windows/; the Linux
# test, told by PORTPRESSURE_TEST_BUILT, tests dist/ instead of making a build of its own).
# Only the tests of built files (-m slow), the long Wine exhaustion included. A skipped one would
# be an untested file: -rs lists skips, and any skip stops the release.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
PORTPRESSURE_TEST_BUILT=dist PORTPRESSURE_WINE_FULL_RANGE=1 QT_QPA_PLATFORM=offscreen \
  .venv/bin/python -m pytest -q -rs -m slow tests/test_packaging.py tests/test_packaging_windows.py |
  tee "$report"
if grep -q '^SKIPPED' "$report"; then
  echo "release: tests were skipped (above); a release needs every packaging test run" >&2
  exit 1
fi

rm -rf "$release" && mkdir -p "$release"
cp dist/windows/PortPressure.exe dist/windows/portpressure-cli.exe "$release/"
cp dist/PortPressure "$release/portpressure-linux-x86_64"
(cd "$release" && sha256sum PortPressure.exe portpressure-cli.exe portpressure-linux-x86_64 > SHA256SUMS)
echo "release: $release"
sed 's/^/  /' "$release/SHA256SUMS"
