#!/usr/bin/env bash
# Sets up a fresh machine for PortPressure: the Debian libraries Qt needs, then a
# virtualenv in .venv with the project and its development tools. Idempotent and quiet
# when everything is already there. Usage: tools/setup.sh [--dev] [--build]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev" ;;
    --build) extras="${extras:+$extras,}build" ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# Qt's offscreen platform needs the first five shared libraries, its xcb platform (a real
# X display) the libxcb/xkbcommon-x11 ones; ip and unshare run the namespace tests; fonts
# make screenshots readable. --dev adds Xvfb so the X11 window tests run instead of skipping.
debs="libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fonts-dejavu-core iproute2 util-linux procps"
debs="$debs libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
case ",$extras," in *,dev,*) debs="$debs xvfb" ;; esac
# --dev: the tests open report.html in Debian's chromium (driven by Playwright, which never
# downloads a browser of its own) and turn its printed PDF into pictures with pdftoppm.
case ",$extras," in *,dev,*) debs="$debs chromium poppler-utils" ;; esac
# --dev: a real Prometheus (prometheus, promtool) that the exporter tests scrape and check
# rules with; the tests run their own instance, never the packaged service.
case ",$extras," in *,dev,*) debs="$debs prometheus" ;; esac
missing=""
for pkg in $debs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: please install as root: apt-get install$missing" >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.portpressure-installed-${extras:-base}"
digest=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "setup: installing Python packages into .venv (${extras:-base})"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
  echo "$digest" > "$stamp"
fi
