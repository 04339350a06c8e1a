"""The Windows executables as users get them: dist/windows/PortPressure.exe and
portpressure-cli.exe, built on Linux under Wine by `packaging/build.sh --windows` (cached while
nothing that goes into them changes) and tested as files, not as source. Their PE headers and
resources are read from Linux with pefile; they run under Wine (the Windows lane,
tests/support/windows_lane.py): the version, `watch --json` against a real exhausted port range
in a private namespace with a Windows churner, `probe`, and the window's screenshot."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener
from tests.support.windows_lane import Lane, LaneProcess, lane_cache, windows_path
from tests.test_packaging import (
    MAX_BYTES,
    ROOT,
    _archive,
    _source_modules,
    bundle_trim,
    png_size_and_colours,
    pyproject_version,
    version_info,
)
from tests.test_watch_cli import check_contract

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="built on Linux, under Wine")]

DIST = ROOT / "dist" / "windows"
GUI_SUBSYSTEM, CONSOLE_SUBSYSTEM = 2, 3  # IMAGE_SUBSYSTEM_WINDOWS_GUI / _CUI
WINDOWS_10 = "{8e0f7a12-bfb3-4fe8-b9a5-48fd50a15a9a}"  # supportedOS Id
WSAEADDRNOTAVAIL = 10049
# Windows' dynamic port range since Vista, made the namespace's real one: under Wine the exe reads
# the range Windows would have (Wine's netsh has none), so the kernel must run out of the same range.
WINDOWS_RANGE = "49152 65535"
WATCH_FULL_RANGE_TIMEOUT = 600.0  # one sample of 16,384 sockets under Wine: 1-2 min
START_TIMEOUT = 180.0  # seconds for one run of an exe under Wine on a busy 2-core machine


@dataclass(frozen=True)
class WindowsBuild:
    gui: Path  # PortPressure.exe: windowed, what a double-click starts
    cli: Path  # portpressure-cli.exe: the console subcommands


@pytest.fixture(scope="module")
def windows_build(tmp_path_factory: pytest.TempPathFactory) -> WindowsBuild:
    log = tmp_path_factory.mktemp("windows-build") / "build.log"
    started = time.monotonic()
    with open(log, "w") as out:  # a file, not a pipe: Wine's session processes may hold pipes open
        status = subprocess.run([str(ROOT / "packaging" / "build.sh"), "--windows"], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                timeout=1800).returncode
    text = log.read_text()
    if status == 3:  # the lane cannot be set up on this machine; setup.sh printed why
        pytest.skip(next((line for line in text.splitlines() if line.startswith("skip:")), text[-500:]))
    assert status == 0, text[-4000:]
    print(f"\nwindows build (cached or not): {time.monotonic() - started:.1f} s\n{text[-600:]}")
    return WindowsBuild(DIST / "PortPressure.exe", DIST / "portpressure-cli.exe")


def _mei_folders() -> set[Path]:
    """PyInstaller's unpack folders in the prefix's Temp: a killed one-file exe leaves its 92 MB."""
    users = lane_cache() / "prefix" / "drive_c" / "users"
    return {*users.glob("*/AppData/Local/Temp/_MEI*"), *users.glob("*/Temp/_MEI*")}


@pytest.fixture(scope="module")
def lane(windows_build: WindowsBuild) -> Iterator[Lane]:
    """The lane's Wine, its server kept between the runs of this module, stopped at the end,
    and every unpack folder a run left behind removed."""
    lane = Lane()
    before = _mei_folders()
    try:
        yield lane
    finally:
        lane.stop_server()
        for folder in _mei_folders() - before:
            shutil.rmtree(folder, ignore_errors=True)


# ---- the files, read from Linux ------------------------------------------------------------

_parsed: dict[Path, object] = {}


def _pe(path: Path):  # -> pefile.PE
    """The headers and resources of an exe, parsed once (a full parse of 40 MB takes seconds)."""
    pefile = pytest.importorskip("pefile", reason="pefile is in the dev extras (tools/setup.sh --dev)")
    if path not in _parsed:
        pe = pefile.PE(str(path), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_RESOURCE"]])
        _parsed[path] = pe
    return _parsed[path]


def _resources(pe, type_id: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The data of every resource of one type (RT_ICON 3, RT_GROUP_ICON 14, RT_MANIFEST 24)."""
    found = []
    for kind in getattr(pe, "DIRECTORY_ENTRY_RESOURCE", None).entries:
        if kind.id != type_id:
            continue
        for name in kind.directory.entries:
            for language in name.directory.entries:
                entry = language.data.struct
                found.append(pe.get_data(entry.OffsetToData, entry.Size))
    return found


def test_each_exe_is_small_enough(windows_build: WindowsBuild) -> None:
    for exe in (windows_build.gui, windows_build.cli):
        size = exe.stat().st_size
        print(f"\n{exe.name}: {size:,} bytes = {size / 2**20:.1f} MiB")
        assert size <= MAX_BYTES, exe.name


def test_windowed_and_console_subsystems(windows_build: WindowsBuild) -> None:
    for exe, subsystem in ((windows_build.gui, GUI_SUBSYSTEM), (windows_build.cli, CONSOLE_SUBSYSTEM)):
        pe = _pe(exe)
        assert pe.FILE_HEADER.Machine == 0x8664, exe.name  # x64
        assert pe.OPTIONAL_HEADER.Subsystem == subsystem, exe.name


def test_pe_imports_reads_a_real_exe(windows_build: WindowsBuild) -> None:
    """What the Windows pruning walks: the import table, here the bootloader's."""
    imports = bundle_trim.pe_imports(str(windows_build.cli))
    assert imports is not None and "kernel32.dll" in [name.lower() for name in imports]
    assert bundle_trim.pe_imports(str(ROOT / "pyproject.toml")) is None


def test_version_resource_is_pyproject_version(windows_build: WindowsBuild) -> None:
    version = pyproject_version()
    major, minor, micro, build = version_info.version_tuple(version)
    for exe in (windows_build.gui, windows_build.cli):
        pe = _pe(exe)
        strings = {k.decode(): v.decode() for info in pe.FileInfo[0] if info.Key == b"StringFileInfo"
                   for table in info.StringTable for k, v in table.entries.items()}
        assert strings["ProductVersion"] == strings["FileVersion"] == version, strings
        assert strings["OriginalFilename"] == exe.name
        assert strings["ProductName"] == "PortPressure"
        fixed = pe.VS_FIXEDFILEINFO[0]
        assert (fixed.FileVersionMS, fixed.FileVersionLS) == ((major << 16) | minor, (micro << 16) | build)
        assert (fixed.ProductVersionMS, fixed.ProductVersionLS) == (fixed.FileVersionMS, fixed.FileVersionLS)


def test_manifest_runs_as_invoker_on_windows_10(windows_build: WindowsBuild) -> None:
    """No UAC prompt at start (only `tune set` asks), and Windows 10 behaviour rather than Vista's."""
    for exe in (windows_build.gui, windows_build.cli):
        manifests = _resources(_pe(exe), 24)
        assert len(manifests) == 1, exe.name
        root = ET.fromstring(manifests[0])
        levels = [e.attrib for e in root.iter() if e.tag.endswith("requestedExecutionLevel")]
        assert levels == [{"level": "asInvoker", "uiAccess": "false"}], levels
        assert WINDOWS_10 in [e.attrib.get("Id") for e in root.iter() if e.tag.endswith("supportedOS")]


def test_icon_is_the_projects(windows_build: WindowsBuild) -> None:
    ico = (ROOT / "resources" / "portpressure.ico").read_bytes()
    count = int.from_bytes(ico[4:6], "little")  # ICONDIR: reserved, type, count; then 16-byte entries
    images = {ico[o:o + n] for n, o in (
        (int.from_bytes(ico[6 + 16 * i + 8:6 + 16 * i + 12], "little"),
         int.from_bytes(ico[6 + 16 * i + 12:6 + 16 * i + 16], "little")) for i in range(count))}
    for exe in (windows_build.gui, windows_build.cli):
        pe = _pe(exe)
        assert len(_resources(pe, 14)) == 1, exe.name  # one icon group: Explorer's icon
        assert set(_resources(pe, 3)) == images, exe.name  # every size of resources/portpressure.ico


def test_bundle_holds_the_app_and_only_the_qt_it_uses(windows_build: WindowsBuild) -> None:
    files, modules = _archive(windows_build.gui)
    missing = set(_source_modules()) - modules
    assert not missing, f"modules of the app not in the build: {sorted(missing)}"
    assert "core/VERSION" in files
    names = {PurePosixPath(f).name.lower() for f in files}
    assert {"qwindows.dll", "qoffscreen.dll", "qico.dll", "qt6core.dll", "qt6widgets.dll",
            "qt6opengl.dll", "python311.dll"} <= names
    plugins = {f for f in files if "/plugins/" in f}
    assert plugins and all(bundle_trim.is_wanted(f) for f in plugins), sorted(plugins)
    # Left out: what nothing kept imports (Qt6Network: only dropped plugins did), software OpenGL,
    # and Windows' own DLLs, among them the lane's ICU stub (Windows 10 has the real icuuc.dll).
    left_out = {"qt6network.dll", "opengl32sw.dll", "icuuc.dll", "kernel32.dll", "ucrtbase.dll"}
    assert not names & left_out, sorted(names & left_out)
    assert not [n for n in names if n.startswith("api-ms-win-")]
    assert not [f for f in files if "translations" in f]


# ---- the files, run under Wine -------------------------------------------------------------

def test_cli_prints_pyproject_version(windows_build: WindowsBuild, lane: Lane) -> None:
    started = time.monotonic()
    result = lane.run(["--version"], START_TIMEOUT, exe=str(windows_build.cli))
    print(f"\nportpressure-cli.exe --version under Wine: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip() == f"PortPressure {pyproject_version()}"


def test_probe_tells_ok_from_refused(windows_build: WindowsBuild, lane: Lane) -> None:
    with Listener("127.0.0.1", 0) as listener:
        ok = lane.run(["probe", "--json", "127.0.0.1", str(listener.port)], START_TIMEOUT,
                      exe=str(windows_build.cli))
    closed = socket.socket()  # bound, never listening: the kernel answers with a reset
    with closed:
        closed.bind(("127.0.0.1", 0))
        refused = lane.run(["probe", "--json", "127.0.0.1", str(closed.getsockname()[1])], START_TIMEOUT,
                           exe=str(windows_build.cli))
    assert ok.returncode == 0, ok.describe()
    assert json.loads(ok.stdout)["category"] == "ok"
    assert refused.returncode == 1, refused.describe()
    assert json.loads(refused.stdout)["category"] == "refused", refused.stdout


# A Windows client under Wine, so the watcher sees it with a Windows PID: it keeps a pool of 4
# connections open, then opens and closes short ones as fast as it can. Prints its PID once the
# pool is up, then a line per 10 connect() failures for lack of a port (WSAEADDRNOTAVAIL).
WINDOWS_CHURNER = f"""
import os, time, socket
pool = [socket.create_connection(("127.0.0.1", 9000)) for _ in range(4)]
print("pid", os.getpid(), flush=True)
deadline, failed = time.monotonic() + 240, 0
while time.monotonic() < deadline:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 9000))
    except OSError as exc:
        if exc.errno != {WSAEADDRNOTAVAIL}:
            print("error", exc, flush=True)
        failed += 1
        if failed % 10 == 0:
            print("addrnotavail", failed, flush=True)
        time.sleep(0.002)
    finally:
        s.close()  # client closes first: TIME_WAIT is ours
"""


# The default exhaustion test: a narrow private range, so Wine reads a table of ~150 sockets in
# well under a second. The Windows client holds a pool of connections, each sending a request
# (Wine names a socket's owner only once its process has used it), then opens and closes
# connections until connect() fails for lack of a port. Prints "exhausted pid=N after=M" and holds
# its pool until a line on stdin.
NARROW_RANGE = "50000 50149"  # 150 ports; with tcp_tw_reuse=0 the TIME_WAITs keep it full for 60 s
POOL = 20
WINDOWS_EXHAUSTER = f"""
import os, socket, sys, time
port = int(sys.argv[1])
pool = [socket.create_connection(("127.0.0.1", port)) for _ in range({POOL})]
for s in pool:
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
deadline, opened = time.monotonic() + 120, 0
while time.monotonic() < deadline:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except OSError as exc:
        if exc.errno != {WSAEADDRNOTAVAIL}:
            raise
        print(f"exhausted pid={{os.getpid()}} after={{opened}}", flush=True)
        break
    finally:
        s.close()  # client closes first: TIME_WAIT is ours
    opened += 1
sys.stdin.readline()
"""


def _exe_watch_narrow_exhaustion(cli: str) -> dict:
    lane = Lane()  # a wineserver of this namespace: started here, stopped here
    started = time.monotonic()
    try:
        with Listener("127.0.0.1", 0) as listener:
            client = lane.start(["-c", WINDOWS_EXHAUSTER, str(listener.port)])
            try:
                exhausted = wait_until(lambda: _output_lines(client, "exhausted "), START_TIMEOUT,
                                       f"the Windows client to run out of ports: {client.output_so_far()}",
                                       poll=0.2)
                ran_out = time.monotonic() - started
                watch = lane.run(["watch", "--count", "1", "--json"], START_TIMEOUT, exe=cli)
            finally:
                client.kill()
                client.wait(30)
    finally:
        lane.stop_server()
    fields = dict(item.split("=") for item in exhausted[0].split()[1:])
    return {"watch": watch, "pid": int(fields["pid"]), "opened": int(fields["after"]),
            "ran_out_s": ran_out, "total_s": time.monotonic() - started}


@requires_netns
def test_cli_exe_reports_an_exhausted_range_critical_and_names_the_client(
        windows_build: WindowsBuild, lane: Lane) -> None:
    """The built cli exe, in a namespace whose 150-port range a Windows client under Wine has
    used up (its pool plus TIME_WAITs): one `watch --json` sample is critical, counts the range
    the namespace really has (the lane's netsh answers with it), and its first process is the
    client, by its Windows PID."""
    lane.stop_server()  # the namespace gets a server of its own
    got = run_in_netns(_exe_watch_narrow_exhaustion, str(windows_build.cli), timeout=2 * START_TIMEOUT + 120,
                       sysctls={"net.ipv4.ip_local_port_range": NARROW_RANGE, "net.ipv4.tcp_tw_reuse": "0"})
    watch = got["watch"]
    print(f"\nnarrow exhaustion under Wine: ran out after {got['opened']} connections in "
          f"{got['ran_out_s']:.1f} s, watched by {got['total_s']:.1f} s")
    assert watch.returncode == 0, watch.describe()
    lines = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, watch.stdout
    sample = lines[0]
    check_contract(sample)
    assert sample["verdict"]["level"] == "critical", sample["verdict"]
    # The range the namespace really has (the lane's netsh reads it from the kernel), used up: its
    # capacity is the 150 ports less the one the Linux listener's port 0 took from it.
    assert sample["ports"]["range"] == [50000, 50149], sample["ports"]
    assert sample["ports"]["pressure"] == 1.0, sample["ports"]
    assert sample["states"]["TIME_WAIT"] >= got["opened"] - 5, sample["states"]
    first = sample["processes"][0]
    assert first["pid"] == got["pid"], sample["processes"][:5]
    assert first["states"].get("ESTABLISHED") == POOL, first
    print(f"the exe's sample: ports {sample['ports']}, first process {first}")


def _output_lines(process: LaneProcess, prefix: str) -> list[str]:
    return [line for line in process.output_so_far().splitlines() if line.startswith(prefix)]


def _exe_watch_while_exhausted(cli: str) -> tuple[list[dict], int]:
    lane = Lane()  # a wineserver of this namespace: started here, stopped here
    started, phases = time.monotonic(), []
    try:
        with Listener("127.0.0.1", 9000):
            churner = lane.start(["-c", WINDOWS_CHURNER])
            pid_line = wait_until(lambda: _output_lines(churner, "pid "), START_TIMEOUT,
                                  f"the Windows client's pool: {churner.output_so_far()}", poll=0.2)
            phases.append(f"client up {time.monotonic() - started:.1f} s")
            # Wine's connect() manages ~300/s here: 16,384 ports would take a minute of the
            # suite's time. A Linux churner takes most of the range in seconds; the Windows one
            # keeps churning and runs into the same wall.
            with Churner("127.0.0.1", 9000, hold_s=0.0, name="linuxfiller") as filler:
                wait_until(lambda: filler.addr_not_avail >= 20, 120, "the range to run out")
                wait_until(lambda: _output_lines(churner, "addrnotavail "), START_TIMEOUT,
                           f"the Windows client to get WSAEADDRNOTAVAIL: {churner.output_so_far()}", poll=0.2)
                phases.append(f"exhausted {time.monotonic() - started:.1f} s")
                # One sample: under Wine the TCP table costs ~8 ms a socket, 1-2 min for these 16k.
                watch = lane.run(["watch", "--count", "1", "--json"], WATCH_FULL_RANGE_TIMEOUT, exe=cli)
                phases.append(f"watched {time.monotonic() - started:.1f} s")
            churner.kill()
    finally:
        lane.stop_server()
    assert watch.returncode == 0, watch.describe()
    lines = [json.loads(line) for line in watch.stdout.splitlines() if line.strip()]
    print("\nexhaustion under Wine: " + ", ".join(phases))
    return lines, int(pid_line[0].split()[1])


FULL_RANGE_ENV = "PORTPRESSURE_WINE_FULL_RANGE"


@requires_netns
@pytest.mark.skipif(os.environ.get(FULL_RANGE_ENV) != "1", reason=(
    f"{FULL_RANGE_ENV}=1 runs it (2.5-4 min, over ./test.sh's budget): under Wine the exe sees "
    "Windows' 16,384-port range, and Wine's TCP table costs ~8 ms per socket"))
def test_cli_exe_reports_a_real_exhaustion_critical(windows_build: WindowsBuild, lane: Lane) -> None:
    lane.stop_server()  # the namespace gets a server of its own
    lines, churner_pid = run_in_netns(
        _exe_watch_while_exhausted, str(windows_build.cli), timeout=WATCH_FULL_RANGE_TIMEOUT + 300,
        sysctls={"net.ipv4.ip_local_port_range": WINDOWS_RANGE, "net.ipv4.tcp_tw_reuse": "0"})
    assert len(lines) == 1
    last = lines[0]
    check_contract(last)
    assert last["verdict"]["level"] == "critical", last["verdict"]
    assert last["ports"]["capacity"] == 16384
    assert last["states"]["TIME_WAIT"] >= 16000, last["states"]
    owners = {p["pid"] for p in last["processes"]}
    # Wine 8 reports every row of its TCP table as owned by PID 0 (psutil in the lane's Python
    # sees the same for its own sockets), so under Wine the exe cannot tell the owners apart;
    # on Windows the client's pool names it. Where Wine does report owners, the client is there.
    if owners != {0}:
        assert churner_pid in owners, last["processes"][:5]


def test_window_renders_its_screenshot(windows_build: WindowsBuild, lane: Lane, tmp_path: Path) -> None:
    """The windowed exe draws the whole window offscreen. Under Wine it then hangs on quit (not on
    Windows), so the harness kills it once the PNG is complete, and removes its unpack folder."""
    out = tmp_path / "windows.png"
    before = _mei_folders()
    started = time.monotonic()
    window = lane.start(["gui", "--screenshot", windows_path(out), "--after", "2"],
                        exe=str(windows_build.gui), env={"QT_QPA_PLATFORM": "offscreen"})
    try:
        def complete() -> bool:
            if window.popen.poll() is not None:
                return True
            try:
                png_size_and_colours(out)
            except (OSError, AssertionError, ValueError, struct.error, zlib.error, IndexError):
                return False  # not there yet, or still being written
            return True
        wait_until(complete, START_TIMEOUT, "the window's screenshot", poll=0.5)
        print(f"\nPortPressure.exe gui --screenshot under Wine: {time.monotonic() - started:.1f} s")
    finally:
        # The one-file exe is two processes (bootloader, then the app it unpacked): kill() ends
        # its process group, both; ending the prefix's server ends anything Wine started for it.
        window.kill()
        lane.stop_server()
        result = window.wait(30)
        for folder in _mei_folders() - before:
            shutil.rmtree(folder, ignore_errors=True)
    assert out.is_file(), result.describe()
    assert not _mei_folders() - before, "the killed exe's unpack folder is still there"
    width, height, colours = png_size_and_colours(out)
    assert width >= 1000 and height >= 650, (width, height)
    assert colours > 16, f"screenshot looks blank ({colours} colours)"
    shutil.copy(out, tmp_path.parent / "windows-exe-window.png")  # kept beside the test's folder to look at
