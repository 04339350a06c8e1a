#!/usr/bin/env bash
# Builds the Windows executables on Linux: PyInstaller itself runs under Wine, in the Windows
# lane's embeddable CPython with the Windows wheels (tools/windows_lane/setup.sh --build), from
# the same spec as on Windows. Output: dist/windows/PortPressure.exe (windowed) and
# dist/windows/portpressure-cli.exe (console). Run by `packaging/build.sh --windows`.
#
# Cached: the build is kept in $WINDOWS_BUILD_CACHE (default .cache/windows-build, ignored by git)
# with the digest of everything that goes into it (the app's sources, packaging/, resources/,
# pyproject's version, the lane's wheel lists and Python). Same digest: no rebuild, the kept files
# are copied. Exit status 3 (with a "skip:" line) when the lane cannot be set up here.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cache=${WINDOWS_BUILD_CACHE:-$here/.cache/windows-build}
out=dist/windows
exes=(PortPressure.exe portpressure-cli.exe)

set +e
lane=$(tools/windows_lane/setup.sh --build)
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "$lane"  # setup.sh's "skip:" line, if it has one
  exit "$status"
fi
lane=$(echo "$lane" | tail -1)

# Wine's Python sees the checkout as Z:\...; relative paths resolve there as well.
pyinstaller_args=(-m PyInstaller --noconfirm --log-level WARN --distpath "$cache/dist" --workpath "$cache/work"
                  packaging/portpressure.spec)

# What goes into the build. Listed files only, so caches and bytecode never count.
inputs_digest() {
  {
    echo "${pyinstaller_args[*]}"
    # packaging/'s scripts are left out: they run the build, what they ask of PyInstaller is above.
    find core gui packaging resources -type f ! -name '*.pyc' ! -name '*.sh' ! -path '*/__pycache__/*' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
    grep -m1 '^version *=' pyproject.toml  # the only part of it the build reads
    sha256sum tools/windows_lane/requirements*.txt "$lane/python/python311.dll"
    cat "$lane/python/Lib/site-packages/.wheels"
  } | sha256sum | cut -c1-32
}
digest=$(inputs_digest)

have_build() {
  [ "$(cat "$cache/inputs" 2>/dev/null)" = "$digest" ] || return 1
  for exe in "${exes[@]}"; do [ -f "$cache/dist/$exe" ] || return 1; done
}

if have_build; then
  echo "windows build: cached (inputs $digest)"
else
  rm -rf "$cache" && mkdir -p "$cache"
  echo "windows build: building under Wine (inputs $digest; ~2 min on 2 cores)"
  start=$(date +%s)
  set +e
  tools/windows_lane/run.py --timeout 1200 "${pyinstaller_args[@]}" >"$cache/pyinstaller.log" 2>&1
  status=$?
  set -e
  # Under Wine PyInstaller cannot find the api-ms-win-* API sets; they are part of Windows 10+ and
  # are not bundled on Windows either. Everything else it says is shown.
  grep -v -e "Library not found: could not resolve 'api-ms-win-" -e '^[0-9]* INFO: ' -e '^$' \
    "$cache/pyinstaller.log" || true
  echo "windows build: $(grep -c "could not resolve 'api-ms-win-" "$cache/pyinstaller.log" || true)" \
       "api-ms-win-* warnings (Windows' own API sets) in $cache/pyinstaller.log"
  if [ "$status" -ne 0 ]; then
    echo "windows build: PyInstaller failed (status $status), see $cache/pyinstaller.log" >&2
    exit 1
  fi
  for exe in "${exes[@]}"; do
    [ -f "$cache/dist/$exe" ] || { echo "windows build: $exe was not built" >&2; exit 1; }
  done
  echo "$digest" > "$cache/inputs"
  echo "windows build: $(( $(date +%s) - start )) s"
fi

mkdir -p "$out"
for exe in "${exes[@]}"; do
  cmp -s "$cache/dist/$exe" "$out/$exe" || cp "$cache/dist/$exe" "$out/$exe"
done
for exe in "${exes[@]}"; do echo "size: $out/$exe $(stat -c %s "$out/$exe") bytes"; done
