#!/usr/bin/env bash
# Builds PortPressure into dist/: one file by default, PORTPRESSURE_ONEDIR=1 for a folder.
# Sets up .venv with PyInstaller first (tools/setup.sh --build). Usage: packaging/build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
tools/setup.sh --build
start=$(date +%s)
.venv/bin/python -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/portpressure.spec
echo "build: $(( $(date +%s) - start )) s"
ls -l dist/ | sed -n '2,$p'
du -sh dist/* | sed 's/^/size: /'
