"""The single-file build, run as a binary (not the source): size, contents, version,
watch JSON (also against a real exhausted port range), the window's screenshot and its
sampler child. Plus the build's own logic (what is left out, the version) without building."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import struct
import subprocess
import sys
import time
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType

import psutil
import pytest

import core
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener
from tests.test_watch_cli import check_contract

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "portpressure.spec"
COMPRESSION_LEVEL_ENV = "PYINSTALLER_ZLIB_COMPRESSION_LEVEL"
MAX_BYTES = 70_000_000  # the "at most 70 MB", read strictly (66.8 MiB)
LINUX = sys.platform.startswith("linux")


def _load(name: str) -> ModuleType:
    """packaging/ is not a package (the spec puts it on sys.path); load its modules by path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "packaging" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle_trim = _load("bundle_trim")
version_info = _load("version_info")


def pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


# ---- the build's logic, no build needed -------------------------------------------------

@pytest.mark.parametrize("dest, wanted", [
    ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
    ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
    ("PySide6\\plugins\\platforms\\qwindows.dll", True),
    ("PySide6/Qt/plugins/platforms/libqwayland.so", False),
    ("PySide6/Qt/plugins/platforms/libqlinuxfb.so", False),
    ("PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so", True),
    ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
    ("PySide6\\plugins\\imageformats\\qico.dll", True),
    ("PySide6/Qt/plugins/imageformats/libqjpeg.so", False),
    ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
    ("PySide6\\plugins\\styles\\qmodernwindowsstyle.dll", True),
    ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
    ("PySide6/Qt/plugins/generic/libqevdevmouseplugin.so", False),
    ("PySide6/Qt/translations/qtbase_de.qm", False),
    ("PySide6\\opengl32sw.dll", False),
    ("PySide6/Qt/lib/libQt6Gui.so.6", True),
    ("pyqtgraph/icons/auto.png", True),
    ("pyqtgraph/icons/peegee/peegee_512px.png", True),
    ("pyqtgraph/icons/peegee/peegee_512px@2x.png", False),
    ("numpy.libs/libscipy_openblas64_-32a4b2a6.so", True),
])
def test_what_the_build_keeps_by_name(dest: str, wanted: bool) -> None:
    assert bundle_trim.is_wanted(dest) is wanted


def test_unreachable_libraries_follow_the_needed_lists() -> None:
    # An in-memory stand-in for the ELF needed-lists of a small bundle.
    needs = {
        "/s/QtWidgets.abi3.so": ["libQt6Widgets.so.6"],
        "/s/libQt6Widgets.so.6": ["libQt6Gui.so.6"],
        "/s/libQt6Gui.so.6": ["libQt6Core.so.6", "libc.so.6"],
        "/s/libQt6Core.so.6": ["libicuuc.so.73"],
        "/s/libicuuc.so.73": [],
        "/s/libqxcb.so": ["libQt6XcbQpa.so.6"],
        "/s/libQt6XcbQpa.so.6": ["libQt6Gui.so.6"],
        "/s/libgtk-3.so.0": ["libcairo.so.2"],
        "/s/libcairo.so.2": [],
        "/s/libQt6Network.so.6": ["libQt6Core.so.6"],
    }
    entries = [
        ("PySide6/QtWidgets.abi3.so", "/s/QtWidgets.abi3.so", "EXTENSION"),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", "/s/libQt6Widgets.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/s/libQt6Gui.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6Core.so.6", "/s/libQt6Core.so.6", "BINARY"),
        ("PySide6/Qt/lib/libicuuc.so.73", "/s/libicuuc.so.73", "BINARY"),
        ("PySide6/Qt/lib/libQt6XcbQpa.so.6", "/s/libQt6XcbQpa.so.6", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/s/libqxcb.so", "BINARY"),
        ("libgtk-3.so.0", "/s/libgtk-3.so.0", "BINARY"),  # left by a dropped platform theme
        ("libcairo.so.2", "/s/libcairo.so.2", "BINARY"),
        ("PySide6/Qt/lib/libQt6Network.so.6", "/s/libQt6Network.so.6", "BINARY"),
        ("libQt6Network.so.6", "PySide6/Qt/lib/libQt6Network.so.6", "SYMLINK"),
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
        ("pyqtgraph/icons/auto.png", "/s/auto.png", "DATA"),
    ]
    dropped = bundle_trim.unreachable_libraries(entries, needs.__getitem__)
    assert dropped == {"libgtk-3.so.0", "libcairo.so.2", "PySide6/Qt/lib/libQt6Network.so.6",
                       "libQt6Network.so.6"}
    # One needed-list it cannot read, and it keeps everything rather than guess.
    unreadable = {**needs, "/s/libQt6Core.so.6": None}
    assert bundle_trim.unreachable_libraries(entries, unreadable.__getitem__) == set()


def test_unreachable_qt_dlls_follow_the_import_tables() -> None:
    # An in-memory stand-in for the PE import tables of a small Windows bundle (names in any case).
    imports = {
        "C:/s/QtWidgets.pyd": ["Qt6Widgets.dll", "python3.dll"],
        "C:/s/Qt6Widgets.dll": ["QT6GUI.dll", "KERNEL32.dll"],
        "C:/s/Qt6Gui.dll": ["Qt6Core.dll"],
        "C:/s/Qt6Core.dll": ["VCRUNTIME140.dll"],
        "C:/s/qwindows.dll": ["Qt6Gui.dll"],
        "C:/s/VCRUNTIME140.dll": [],
        "C:/s/python311.dll": ["VCRUNTIME140.dll"],
        "C:/s/Qt6Network.dll": ["Qt6Core.dll"],  # only the dropped TLS/network plugins import it
        "C:/s/MSVCP140_2.dll": [],  # unreached, but not Qt's: kept (could be loaded by name)
    }
    entries = [
        ("PySide6\\QtWidgets.pyd", "C:/s/QtWidgets.pyd", "EXTENSION"),
        ("PySide6\\Qt6Widgets.dll", "C:/s/Qt6Widgets.dll", "BINARY"),
        ("PySide6\\Qt6Gui.dll", "C:/s/Qt6Gui.dll", "BINARY"),
        ("PySide6\\Qt6Core.dll", "C:/s/Qt6Core.dll", "BINARY"),
        ("PySide6\\plugins\\platforms\\qwindows.dll", "C:/s/qwindows.dll", "BINARY"),
        ("VCRUNTIME140.dll", "C:/s/VCRUNTIME140.dll", "BINARY"),
        ("python311.dll", "C:/s/python311.dll", "BINARY"),
        ("PySide6\\Qt6Network.dll", "C:/s/Qt6Network.dll", "BINARY"),
        ("PySide6\\MSVCP140_2.dll", "C:/s/MSVCP140_2.dll", "BINARY"),
    ]
    assert bundle_trim.unreachable_qt_dlls(entries, imports.__getitem__) == {"PySide6\\Qt6Network.dll"}
    unreadable = {**imports, "C:/s/Qt6Gui.dll": None}
    assert bundle_trim.unreachable_qt_dlls(entries, unreadable.__getitem__) == set()


@pytest.mark.skipif(not LINUX, reason="ELF libraries are Linux's")
def test_elf_needed_reads_a_real_library() -> None:
    import PySide6

    gui = Path(PySide6.__file__).parent / "Qt" / "lib" / "libQt6Gui.so.6"
    needed = bundle_trim.elf_needed(str(gui))
    assert needed is not None and "libQt6Core.so.6" in needed
    assert bundle_trim.elf_needed(str(ROOT / "pyproject.toml")) is None


def test_app_modules_are_every_module_of_core_and_gui() -> None:
    names = bundle_trim.app_modules(ROOT)
    assert {"core.commands.tune", "gui.settings_panel", "gui.probe_panel", "core.tuning.linux"} <= set(names)
    assert set(names) == set(_source_modules())


@pytest.mark.parametrize("version, numbers", [
    ("0.1.0", (0, 1, 0, 0)), ("1.2", (1, 2, 0, 0)), ("1.2rc1", (1, 2, 0, 0)),
    ("2.0.1.post3", (2, 0, 1, 0)), ("1.2.3.4.5", (1, 2, 3, 4)),
])
def test_windows_version_numbers(version: str, numbers: tuple[int, ...]) -> None:
    assert version_info.version_tuple(version) == numbers


def test_windows_version_resource_carries_pyproject_version() -> None:
    text = version_info.version_resource_text(version_info.project_version(), "portpressure-cli.exe")
    assert f"StringStruct('ProductVersion', '{pyproject_version()}')" in text
    assert "StringStruct('OriginalFilename', 'portpressure-cli.exe')" in text
    numbers = version_info.version_tuple(pyproject_version())
    call = ast.parse(text, mode="eval").body
    assert isinstance(call, ast.Call)
    fixed = next(k.value for k in call.keywords if k.arg == "ffi")
    assert isinstance(fixed, ast.Call)
    assert {k.arg: ast.literal_eval(k.value) for k in fixed.keywords}["filevers"] == numbers
    # PyInstaller evaluates the source in its versioninfo module, which needs pefile and win32api:
    # Windows only. From Linux, tests/test_packaging_windows.py reads the resource of the built exes.
    versioninfo = pytest.importorskip("PyInstaller.utils.win32.versioninfo", exc_type=ImportError,
                                      reason="PyInstaller's versioninfo needs win32api (Windows)")
    resource = eval(text, vars(versioninfo))
    major, minor, micro, _ = version_info.version_tuple(pyproject_version())
    assert resource.ffi.fileVersionMS == (major << 16) | minor
    assert resource.ffi.fileVersionLS >> 16 == micro


def test_core_version_is_pyproject_version() -> None:
    assert core.__version__ == pyproject_version()


def _core_init_version(folder: Path) -> str:
    """core/__init__.py's version when it is loaded from `folder` (as in a bundle)."""
    (folder / "__init__.py").write_text((ROOT / "core" / "__init__.py").read_text())
    spec = importlib.util.spec_from_file_location("frozen_core_copy", folder / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.__version__)


def test_frozen_core_reads_the_baked_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    bundle_core = tmp_path / "core"
    bundle_core.mkdir()
    (bundle_core / "VERSION").write_text("7.8.9\n")
    assert _core_init_version(bundle_core) == "7.8.9"
    (bundle_core / "VERSION").unlink()  # a bundle without it says so rather than guess
    assert _core_init_version(bundle_core) == "0+unknown"


def test_source_run_prints_pyproject_version() -> None:
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"PortPressure {pyproject_version()}"


# ---- the built single file ---------------------------------------------------------------

def _source_modules() -> Iterator[str]:
    for package in bundle_trim.APP_PACKAGES:
        yield package
        path = [str(ROOT / package)]
        for info in pkgutil.walk_packages(path, prefix=package + "."):
            yield info.name


@dataclass(frozen=True)
class Build:
    exe: Path  # PortPressure: windowed on Windows
    cli: Path  # portpressure-cli: the console program (the same on Linux)
    log: str  # PyInstaller's warnings


BUILT_ENV = "PORTPRESSURE_TEST_BUILT"  # a folder with a finished build: test those files instead
BUILD_LOG = ROOT / "build" / "pyinstaller.log"  # packaging/build.sh keeps PyInstaller's warnings here


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    suffix = ".exe" if sys.platform == "win32" else ""
    if os.environ.get(BUILT_ENV):  # packaging/release.sh: the very files that are shipped
        folder = Path(os.environ[BUILT_ENV])
        exe, cli = folder / f"PortPressure{suffix}", folder / f"portpressure-cli{suffix}"
        assert exe.is_file() and cli.is_file(), f"{BUILT_ENV}={folder} holds no finished build"
        return Build(exe, cli, BUILD_LOG.read_text() if BUILD_LOG.is_file() else "")
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed (pip install -e .[build])")
    work = tmp_path_factory.mktemp("pyinstaller")
    env = {k: v for k, v in os.environ.items() if k != "PORTPRESSURE_ONEDIR"}
    # zlib level 6 instead of PyInstaller's 9 for the single files: ~3x faster to compress (the
    # bulk of the build time), ~0.5 % larger. The contents are the same, and the shipped level-9
    # file is smaller than this one, so the size limit checked here holds for it too.
    env[COMPRESSION_LEVEL_ENV] = "6"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"), str(SPEC)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"\nbuild took {time.monotonic() - started:.1f} s")
    exe, cli = work / "dist" / f"PortPressure{suffix}", work / "dist" / f"portpressure-cli{suffix}"
    assert exe.is_file() and cli.is_file()
    return Build(exe, cli, result.stderr)


@pytest.fixture(scope="module")
def built(build: Build) -> Path:
    return build.exe


@pytest.fixture(scope="module")
def console_programs(build: Build) -> list[Path]:
    """Where the subcommands print: a windowed Windows exe has no stdout, so only the CLI there."""
    return [build.cli] if sys.platform == "win32" else [build.exe, build.cli]


def _run(exe: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def _archive(exe: Path) -> tuple[set[str], set[str]]:
    """The file names in the single file, and the module names in its Python archive."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(exe))
    files = {name.replace("\\", "/") for name in archive.toc}  # Windows names use backslashes
    return files, set(archive.open_embedded_archive("PYZ.pyz").toc)


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


@pytest.mark.slow
def test_single_file_is_small_enough(built: Path) -> None:
    size = built.stat().st_size
    print(f"\nsingle file: {size:,} bytes = {size / 2**20:.1f} MiB")
    if LINUX:  # the target is for Linux; the Windows size is printed
        assert size <= MAX_BYTES


MISSING_LIBRARY = re.compile(r"Library not found: could not resolve '([^']+)', dependency of '([^']+)'")


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason=(
    "Debian packages on a Linux build machine; under Wine PyInstaller warns about Windows' own API sets "
    "(api-ms-win-*), which packaging/build_windows.sh filters"))
def test_every_library_the_bundle_needs_was_found(build: Build) -> None:
    """PyInstaller bundles the libraries it finds on the build machine and only warns about
    the rest: a Qt plugin in the bundle whose library was missing fails at run time (the xcb
    platform without libxcb-icccm4 and libxcb-keysyms1 cannot open a window on X11)."""
    if not build.log:
        pytest.skip(f"no build log: {BUILT_ENV} names a build made without packaging/build.sh")
    files, _ = _archive(build.exe)
    names = {PurePosixPath(f).name for f in files}
    found = [(lib, PurePosixPath(of.replace("\\", "/")).name)
             for lib, of in MISSING_LIBRARY.findall(build.log)]
    missing = sorted({(lib, of) for lib, of in found if of in names})
    assert not missing, ("install the Debian packages that provide these on the build machine, then "
                         f"rebuild: {missing}")


@pytest.mark.slow
def test_single_file_holds_the_app_and_only_the_qt_it_uses(built: Path) -> None:
    files, modules = _archive(built)
    missing = set(_source_modules()) - modules
    assert not missing, f"modules of the app not in the build: {sorted(missing)}"
    assert "core/VERSION" in files
    assert not [f for f in files if "translations" in f]
    plugins = {f for f in files if "/plugins/" in f}
    assert plugins and all(bundle_trim.is_wanted(f) for f in plugins), sorted(plugins)
    if LINUX:
        for kept in ("platforms/libqxcb.so", "platforms/libqoffscreen.so", "imageformats/libqsvg.so",
                     "iconengines/libqsvgicon.so"):
            assert f"PySide6/Qt/plugins/{kept}" in files
        assert "PySide6/Qt/lib/libQt6OpenGL.so.6" in files  # pyqtgraph imports QtOpenGL
        assert not [f for f in files if "Network" in f or "libgtk" in f or "libcairo" in f]


@pytest.mark.slow
def test_version_is_pyproject_version(console_programs: list[Path]) -> None:
    for program in console_programs:
        result = _run(program, "--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"PortPressure {pyproject_version()}", program.name


@pytest.mark.slow
def test_watch_json_follows_the_contract(console_programs: list[Path]) -> None:
    result = _run(console_programs[0], "watch", "--count", "2", "--interval", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    for sample in lines:
        check_contract(sample)


@pytest.mark.slow
def test_serve_writes_a_textfile_from_the_built_binary(console_programs: list[Path], tmp_path: Path) -> None:
    """prometheus_client (and the ssl it imports) made it into the build: `serve` is offered."""
    target = tmp_path / "portpressure.prom"
    result = _run(console_programs[-1], "serve", "--textfile", str(target), "--count", "1")
    assert result.returncode == 0, result.stderr
    assert "portpressure_verdict_level " in target.read_text()


def _frozen_watch_while_exhausted(exe: str) -> tuple[list[dict], int]:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.0, name="frozenchurn") as churner:
        wait_until(lambda: churner.addr_not_avail >= 20, 30, "the 50-port range to run out")
        result = subprocess.run([exe, "watch", "--count", "2", "--interval", "0.5", "--json"],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()], churner.pid


@pytest.mark.slow
@requires_netns
def test_built_binary_names_the_culprit_of_a_real_exhaustion(built: Path) -> None:
    lines, churner_pid = run_in_netns(_frozen_watch_while_exhausted, str(built), sysctls={
        "net.ipv4.ip_local_port_range": "40000 40049", "net.ipv4.tcp_tw_reuse": "0"})
    assert len(lines) == 2
    for sample in lines:
        check_contract(sample)
    last = lines[-1]
    assert last["verdict"]["level"] == "critical", last["verdict"]
    assert last["ports"]["capacity"] == 50
    assert last["processes"][0]["pid"] == churner_pid
    assert last["processes"][0]["name"] == "frozenchurn"


@pytest.mark.slow
def test_gui_screenshot_is_the_real_window_and_its_sampler_child_stays_a_sampler(
        built: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    process = subprocess.Popen([str(built), "gui", "--screenshot", str(out), "--after", "2"],
                               env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Every process below the launched one, seen while it runs: (pid, parent pid).
    tree: dict[int, int] = {}
    launched = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            for child in launched.children(recursive=True):
                tree[child.pid] = child.ppid()
        except psutil.Error:
            pass  # ending: what was seen is what there was
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)  # the polling period; returns at once when the program ends
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    width, height, colours = png_size_and_colours(out)
    assert width >= 1000 and height >= 650, (width, height)
    assert colours > 16, f"screenshot looks blank ({colours} colours)"
    assert "not available" not in stderr, stderr  # every panel made it into the build
    if LINUX:
        # One file: the bootloader starts the app, the app forks its sampler. A child that
        # re-ran the program would open a window and start a sampler of its own.
        apps = [pid for pid, parent in tree.items() if parent == process.pid]
        assert len(apps) == 1, tree
        samplers = [pid for pid, parent in tree.items() if parent == apps[0]]
        assert len(samplers) == 1, tree
        assert not [pid for pid, parent in tree.items() if parent == samplers[0]], tree


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A private X server (Xvfb); yields its DISPLAY once it accepts clients."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1600x1000x24",
                               "-nolisten", "tcp"], pass_fds=(write_end,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as ready:  # Xvfb writes its display number here when it is ready
            number = ready.readline().strip()
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.slow
@pytest.mark.skipif(not LINUX or shutil.which("Xvfb") is None,
                    reason="needs Xvfb (apt-get install xvfb) for a real X display")
def test_window_opens_on_an_x_display_with_the_bundled_xcb(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "xcb.png"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    with xvfb() as display:
        result = subprocess.run([str(built), "gui", "--screenshot", str(out), "--after", "1"],
                                env={**env, "DISPLAY": display}, capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    width, height, colours = png_size_and_colours(out)
    assert width >= 1000 and height >= 650, (width, height)
    assert colours > 16, f"screenshot looks blank ({colours} colours)"
