#!/usr/bin/env bash
# Set up (first time only) and run PortPressure. Arguments go to `portpressure`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/tools/setup.sh"
exec "$here/.venv/bin/portpressure" "$@"
