#!/usr/bin/env bash
# Builds PortPressure into dist/: one file by default, PORTPRESSURE_ONEDIR=1 for a folder.
# Sets up .venv with PyInstaller first (tools/setup.sh --build). Usage: packaging/build.sh
# --windows: the Windows executables instead, built on Linux under Wine into dist/windows/
# (packaging/build_windows.sh; cached while nothing that goes into them changes).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
case "${1:-}" in
  "") ;;
  --windows) exec packaging/build_windows.sh ;;
  *) echo "build.sh: unknown option $1 (only --windows)" >&2; exit 2 ;;
esac
tools/setup.sh --build
start=$(date +%s)
mkdir -p build
# PyInstaller's warnings are kept: the packaging test reads them to check every library was found.
.venv/bin/python -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/portpressure.spec 2> >(tee build/pyinstaller.log >&2)
echo "build: $(( $(date +%s) - start )) s"
ls -l dist/ | sed -n '2,$p'
du -sh dist/* | sed 's/^/size: /'
