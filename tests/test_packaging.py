"""The single-file build, run as a binary (not the source): version, watch JSON, window screenshot."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import core

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "portpressure.spec"
MAX_BYTES = 70 * 1024 * 1024  # 70 MiB
CONTRACT_KEYS = {
    "time", "states", "ports", "rates", "forecast", "processes", "remotes", "verdict", "sample_ms",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed (pip install -e .[build])")
    work = tmp_path_factory.mktemp("pyinstaller")
    env = {k: v for k, v in os.environ.items() if k != "PORTPRESSURE_ONEDIR"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(SPEC)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"\nbuild took {time.monotonic() - started:.1f} s")
    exe = work / "dist" / ("PortPressure.exe" if sys.platform == "win32" else "PortPressure")
    assert exe.is_file()
    return exe


def _run(exe: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and distinct-colour count of an 8-bit RGB/RGBA PNG, decoded with zlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, colour_type = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {depth}/{colour_type}"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, ul = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif ftype == 4:
                p = left + up - ul
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                line[i] = (line[i] + pred) & 0xFF
        if y % 4 == 0:  # every 4th row is plenty to tell a real window from a blank one
            colours.update(bytes(line[x:x + 3]) for x in range(0, stride, bpp * 4))
        prev = line
    return width, height, len(colours)


def test_single_file_is_small_enough(built: Path) -> None:
    size = built.stat().st_size
    print(f"\nsingle file: {size / 2**20:.1f} MiB ({size / 1e6:.1f} MB)")
    assert size <= MAX_BYTES


def test_version_matches_package(built: Path) -> None:
    result = _run(built, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"PortPressure {core.__version__}"


def test_watch_json_follows_the_contract(built: Path) -> None:
    result = _run(built, "watch", "--count", "2", "--json")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    for line in lines:
        sample = json.loads(line)
        assert sample.keys() >= CONTRACT_KEYS, CONTRACT_KEYS - sample.keys()


def test_gui_screenshot_is_the_real_window(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    started = time.monotonic()
    result = _run(built, "gui", "--screenshot", str(out), "--after", "2", QT_QPA_PLATFORM="offscreen")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    print(f"\nlaunch to screenshot written (incl. --after 2): {elapsed:.2f} s")
    width, height, colours = png_size_and_colours(out)
    assert width >= 1000 and height >= 650, (width, height)
    assert colours > 16, f"screenshot looks blank ({colours} colours)"
