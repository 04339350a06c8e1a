"""Run Windows programs under Wine with the Windows lane's rules (tools/windows_lane/setup.sh).

Wine's own limits live here, never in the product:
- python.exe fails when its standard streams are files: they are always pipes;
- Wine's session processes (services, winedevice) inherit those pipes and keep them open
  after the program exits, so waiting for end of output can wait forever: we wait on the
  process, then give the readers a moment to drain. A pipe whose reader is still blocked is
  never closed under it (closing a buffered stream waits for its reader's lock: forever, while
  another process holds the pipe's other end); its reader closes it at end of output;
- a one-file exe is two processes (the launcher, then the app it unpacked): each program starts
  in a process group of its own, and a kill ends the whole group, so no child keeps our pipes;
- a wineserver keeps running after its last program: `stop_server` ends it (and with it
  every Wine process of the prefix), so nothing outlives a test.

Stdlib only: tools/windows_lane/run.py imports it without the project's virtualenv.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "tools" / "windows_lane" / "setup.sh"
DRAIN_SECONDS = 2.0  # after the program exits, how long its output may still trickle in


def lane_cache() -> Path:
    return Path(os.environ.get("WINDOWS_LANE_CACHE") or ROOT / ".cache" / "windows-lane")


def lane_unavailable_reason() -> str | None:
    """None when the lane is set up here, else why not (the skip reason)."""
    if not sys.platform.startswith("linux"):
        return "the Windows lane runs Wine on Linux"
    if not (lane_cache() / "env.sh").is_file():
        return f"the Windows lane is not set up here (run {SETUP.relative_to(ROOT)})"
    return None


def windows_path(path: str | os.PathLike[str]) -> str:
    """A Linux path as Wine's programs see it: drive Z: is the Linux root."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


def _read_env_sh(path: Path) -> dict[str, str]:
    """The `export NAME='value' ...` lines setup.sh writes, as a dict."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            for item in line[len("export "):].split():
                name, _, value = item.partition("=")
                found[name] = value.strip("'")
    return found


@dataclass(frozen=True)
class LaneResult:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"status {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class _Collector(threading.Thread):
    def __init__(self, stream: object) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self.chunks: list[bytes] = []

    def run(self) -> None:
        read = self._stream.read1  # type: ignore[attr-defined]
        try:
            while chunk := read(65536):
                self.chunks.append(chunk)
        except (OSError, ValueError):
            pass
        finally:
            self._stream.close()  # type: ignore[attr-defined]  # only here: no other thread reads it

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


class LaneProcess:
    """One Windows program running under Wine, its std streams on pipes."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._out = _Collector(popen.stdout)
        self._err = _Collector(popen.stderr)
        self._out.start()
        self._err.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output_so_far(self) -> str:
        return self._out.text()

    def wait(self, timeout: float) -> LaneResult:
        """Wait for the program (not for end of output); kill it and raise on timeout."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait(10)
            self._drain()
            raise TimeoutError(f"Windows program did not finish within {timeout} s\n"
                               f"--- stdout\n{self._out.text()}\n--- stderr\n{self._err.text()}") from None
        self._drain()
        return LaneResult(code, self._out.text(), self._err.text())

    def kill(self) -> None:
        """End the program and every process it started (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def _drain(self) -> None:
        """Bounded: the readers get DRAIN_SECONDS in all; a reader still blocked then (another
        process holds the pipe) keeps its stream and closes it when that process lets go."""
        deadline = time.monotonic() + DRAIN_SECONDS
        for reader in (self._out, self._err):
            reader.join(max(0.0, deadline - time.monotonic()))
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):  # BrokenPipe: the program is gone
                self.popen.stdin.close()


class Lane:
    """The lane's Wine and Python; `checkouts` go on the Windows Python's sys.path."""

    def __init__(self, cache: Path | None = None, checkouts: Sequence[Path] = (ROOT,)) -> None:
        self.cache = cache or lane_cache()
        settings = _read_env_sh(self.cache / "env.sh")
        self.wine = settings["WINE"]
        self.wineserver = settings["WINESERVER"]
        self.python_exe = settings["LANE_PYTHON_EXE"]
        self.env = dict(os.environ)
        for name in ("WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES"):
            self.env[name] = settings[name]
        self.env["PYTHONPATH"] = ";".join(windows_path(p) for p in checkouts)
        self.env["PYTHONUTF8"] = "1"  # our pipes carry UTF-8 whatever Wine's code page is
        self.env["PYTHONUNBUFFERED"] = "1"  # output reaches us as it is written (and on a kill)
        # Bytecode of the checkout goes to the lane's folder, not beside the Linux Python's.
        self.env["PYTHONPYCACHEPREFIX"] = windows_path(self.cache / "pycache")
        self.env.pop("DISPLAY", None)  # a window opens only where a test asks for one

    def start(self, args: Sequence[str], exe: str | None = None, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> LaneProcess:
        """Start `python.exe args` (or `exe args`) under Wine."""
        program = exe or self.python_exe
        popen = subprocess.Popen(
            [self.wine, program, *args], cwd=cwd or ROOT, env={**self.env, **(env or {})},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # a group of its own, for kill()
        )
        return LaneProcess(popen)

    def run(self, args: Sequence[str], timeout: float, exe: str | None = None, cwd: Path | None = None,
            env: Mapping[str, str] | None = None) -> LaneResult:
        return self.start(args, exe=exe, cwd=cwd, env=env).wait(timeout)

    def python(self, code: str, timeout: float, env: Mapping[str, str] | None = None) -> LaneResult:
        return self.run(["-c", code], timeout, env=env)

    def stop_server(self, timeout: float = 30.0) -> None:
        """End this prefix's wineserver and every Wine process attached to it."""
        subprocess.run([self.wineserver, "-k"], env=self.env, capture_output=True, timeout=timeout,
                       check=False)
        subprocess.run([self.wineserver, "-w"], env=self.env, capture_output=True, timeout=timeout,
                       check=False)
