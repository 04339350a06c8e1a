"""Windows reader: GetExtendedTcpTable and GetTcpStatisticsEx through ctypes, port
settings from netsh and the registry.

ctypes releases the GIL for the length of each call, so a table read of 100k sockets
does not freeze the window (psutil <= 7.2 holds the GIL for seconds there). Only a
thin layer touches Windows: the structures below are plain ctypes (importable anywhere),
the row conversion takes any buffer, and the OS calls sit behind `IpHelper` and the
`WindowsPortConfig` callables, so everything but the calls themselves is tested on Linux.

State mapping (MIB_TCP_STATE -> core.model):
  1 CLOSED -> BOUND        the row still holds its local port, connected to nothing
  2 LISTEN ... 11 TIME_WAIT -> the state of the same name (4 SYN_RCVD -> SYN_RECV)
  12 DELETE_TCB -> BOUND   being torn down; the port is held until it goes
  anything else -> BOUND   (never documented; counted as holding its port)
PIDs: PID 0 means "no owner" (every TIME_WAIT row; under Wine, every socket of a Linux
process) and becomes NO_PID on any row: the System Idle Process owns no socket, so it is
never a process row nor a culprit. PID 4 ("System") is a real owner (http.sys listeners,
SMB) and is kept.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from core.model import (
    BOUND,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NO_PID,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    KernelCounters,
    PortConfig,
    TableRead,
    empty_table,
)
from core.sources.base import SourceError
from core.sources.netsh_parse import parse_dynamic_port, parse_excluded_ranges

log = logging.getLogger(__name__)

# Winsock's values, not the host's: socket.AF_INET6 is 10 on Linux, 23 on Windows.
AF_INET = 2
AF_INET6 = 23
TCP_TABLE_OWNER_PID_ALL = 5  # TCP_TABLE_CLASS, counted from TCP_TABLE_BASIC_LISTENER = 0

NO_ERROR = 0
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_NOT_SUPPORTED = 50
ERROR_INVALID_PARAMETER = 87
ERROR_INSUFFICIENT_BUFFER = 122
_ERROR_NAMES = {
    ERROR_NOT_ENOUGH_MEMORY: "ERROR_NOT_ENOUGH_MEMORY",
    ERROR_NOT_SUPPORTED: "ERROR_NOT_SUPPORTED",
    ERROR_INVALID_PARAMETER: "ERROR_INVALID_PARAMETER",
    ERROR_INSUFFICIENT_BUFFER: "ERROR_INSUFFICIENT_BUFFER",
}

INITIAL_BUFFER_BYTES = 64 * 1024
MAX_BUFFER_BYTES = 256 * 1024 * 1024  # ~4.7M IPv6 rows: past this the size answer is nonsense
TABLE_ATTEMPTS = 5  # the table can grow between the size answer and the next call
CONFIG_MAX_AGE_SECONDS = 30.0  # netsh takes 100s of ms; the settings rarely change
NETSH_TIMEOUT_SECONDS = 10.0
TCPIP_PARAMETERS_KEY = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
MODERN_DYNAMIC_RANGE = (49152, 65535)  # Vista / Server 2008 and later
LEGACY_DYNAMIC_RANGE = (1025, 5000)  # Server 2003 and earlier (MaxUserPort default)
TIME_WAIT_DELAY_MAX = 300

DWORD = ctypes.c_uint32  # not c_ulong: that is 64-bit on Linux, where the tests build tables


# -- the C structures (tcpmib.h) ------------------------------------------------------------
class MIB_TCPROW_OWNER_PID(ctypes.Structure):
    _fields_ = [
        ("dwState", DWORD),
        ("dwLocalAddr", DWORD),  # IPv4 address, network byte order
        ("dwLocalPort", DWORD),  # port in network byte order in the low 16 bits
        ("dwRemoteAddr", DWORD),
        ("dwRemotePort", DWORD),
        ("dwOwningPid", DWORD),
    ]


class MIB_TCP6ROW_OWNER_PID(ctypes.Structure):
    _fields_ = [
        ("ucLocalAddr", ctypes.c_ubyte * 16),
        ("dwLocalScopeId", DWORD),
        ("dwLocalPort", DWORD),
        ("ucRemoteAddr", ctypes.c_ubyte * 16),
        ("dwRemoteScopeId", DWORD),
        ("dwRemotePort", DWORD),
        ("dwState", DWORD),
        ("dwOwningPid", DWORD),
    ]


class MIB_TCPTABLE_OWNER_PID(ctypes.Structure):
    # table[ANY_SIZE]: declared with one row; the row count is dwNumEntries.
    _fields_ = [("dwNumEntries", DWORD), ("table", MIB_TCPROW_OWNER_PID * 1)]


class MIB_TCP6TABLE_OWNER_PID(ctypes.Structure):
    _fields_ = [("dwNumEntries", DWORD), ("table", MIB_TCP6ROW_OWNER_PID * 1)]


class MIB_TCPSTATS(ctypes.Structure):
    _fields_ = [
        ("dwRtoAlgorithm", DWORD),
        ("dwRtoMin", DWORD),
        ("dwRtoMax", DWORD),
        ("dwMaxConn", DWORD),
        ("dwActiveOpens", DWORD),
        ("dwPassiveOpens", DWORD),
        ("dwAttemptFails", DWORD),
        ("dwEstabResets", DWORD),
        ("dwCurrEstab", DWORD),
        ("dwInSegs", DWORD),
        ("dwOutSegs", DWORD),
        ("dwRetransSegs", DWORD),
        ("dwInErrs", DWORD),
        ("dwOutRsts", DWORD),
        ("dwNumConns", DWORD),
    ]


def _row_dtype(struct: type[ctypes.Structure], formats: dict[str, str]) -> np.dtype:
    """A numpy view of a C row: offsets and size come from ctypes, so the two cannot drift."""
    names = list(formats)
    return np.dtype({
        "names": names,
        "formats": [formats[name] for name in names],
        "offsets": [getattr(struct, name).offset for name in names],
        "itemsize": ctypes.sizeof(struct),
    })


ROW4_DTYPE = _row_dtype(MIB_TCPROW_OWNER_PID, {
    "dwState": "<u4", "dwLocalAddr": "<u4", "dwLocalPort": "<u4",
    "dwRemoteAddr": "<u4", "dwRemotePort": "<u4", "dwOwningPid": "<u4",
})
ROW6_DTYPE = _row_dtype(MIB_TCP6ROW_OWNER_PID, {
    "ucLocalAddr": "V16", "dwLocalPort": "<u4", "ucRemoteAddr": "V16",
    "dwRemotePort": "<u4", "dwState": "<u4", "dwOwningPid": "<u4",
})

# MIB_TCP_STATE (index) -> core.model state code; the last slot catches unknown values.
STATE_FROM_MIB = np.array(
    [BOUND, BOUND, LISTEN, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT1, FIN_WAIT2,
     CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT, BOUND, BOUND],
    dtype=np.uint8,
)


# -- rows -> SOCKET_DTYPE ---------------------------------------------------------------------
# What GetExtendedTcpTable filled, or the same bytes built in memory by a test.
TableBytes = bytes | bytearray | memoryview | ctypes.Array[ctypes.c_char]


def _rows(buffer: TableBytes, table_type: type[ctypes.Structure], row_dtype: np.dtype) -> np.ndarray:
    """The dwNumEntries rows of a MIB_TCP(6)TABLE_OWNER_PID held in `buffer` (no copy)."""
    data = memoryview(buffer).cast("B")
    header = ctypes.sizeof(DWORD)
    if data.nbytes < header:
        raise SourceError(f"TCP table buffer too short: {data.nbytes} bytes")
    count = int.from_bytes(data[:header], "little")
    first_row = table_type.table.offset
    needed = first_row + count * row_dtype.itemsize
    if needed > data.nbytes:
        raise SourceError(
            f"TCP table says {count} rows ({needed} bytes) but the buffer holds {data.nbytes} bytes"
        )
    return np.frombuffer(data, dtype=row_dtype, count=count, offset=first_row)


def _ports(dwords: np.ndarray) -> np.ndarray:
    # The port sits in network byte order in the DWORD's low 16 bits.
    return (dwords & 0xFFFF).astype("<u2").byteswap()


def _states(dwords: np.ndarray) -> np.ndarray:
    return STATE_FROM_MIB[np.minimum(dwords, len(STATE_FROM_MIB) - 1)]


def _pids(dwords: np.ndarray) -> np.ndarray:
    pids = dwords.astype(np.int32)
    pids[dwords == 0] = NO_PID  # Windows' "no owner" (TIME_WAIT, orphaned sockets)
    return pids


def _ipv4_slots(dwords: np.ndarray) -> np.ndarray:
    """IPv4 DWORDs (bytes already in network order) -> 16-byte SOCKET_DTYPE address slots."""
    slots = np.zeros((len(dwords), 4), dtype="<u4")
    slots[:, 0] = dwords  # written back little-endian: the same 4 bytes as in the row
    return slots.view("V16").ravel()


def _socket_table(rows: np.ndarray, family: int, laddr: np.ndarray, raddr: np.ndarray) -> np.ndarray:
    """The fields both row layouts share, converted; addresses come ready as 16-byte slots."""
    table = empty_table(len(rows))
    table["family"] = family
    table["state"] = _states(rows["dwState"])
    table["lport"] = _ports(rows["dwLocalPort"])
    table["rport"] = _ports(rows["dwRemotePort"])
    table["pid"] = _pids(rows["dwOwningPid"])
    table["laddr"] = laddr
    table["raddr"] = raddr
    return table


def ipv4_table(buffer: TableBytes) -> np.ndarray:
    """MIB_TCPTABLE_OWNER_PID bytes (any buffer) -> SOCKET_DTYPE table."""
    rows = _rows(buffer, MIB_TCPTABLE_OWNER_PID, ROW4_DTYPE)
    return _socket_table(rows, 4, _ipv4_slots(rows["dwLocalAddr"]), _ipv4_slots(rows["dwRemoteAddr"]))


def ipv6_table(buffer: TableBytes) -> np.ndarray:
    """MIB_TCP6TABLE_OWNER_PID bytes (any buffer) -> SOCKET_DTYPE table. Scope ids are
    dropped: SOCKET_DTYPE has no slot for them, and pools are keyed by address only."""
    rows = _rows(buffer, MIB_TCP6TABLE_OWNER_PID, ROW6_DTYPE)
    return _socket_table(rows, 6, rows["ucLocalAddr"], rows["ucRemoteAddr"])


def counters_from_stats(stats: Sequence[MIB_TCPSTATS], monotonic: float) -> KernelCounters:
    """IPv4 + IPv6 MIB_TCPSTATS summed. Windows has no TIME_WAIT counter: the count
    comes from the table."""
    return KernelCounters(
        monotonic=monotonic,
        time_wait=None,
        active_opens=sum(s.dwActiveOpens for s in stats),
        passive_opens=sum(s.dwPassiveOpens for s in stats),
        attempt_fails=sum(s.dwAttemptFails for s in stats),
        established_resets=sum(s.dwEstabResets for s in stats),
        current_established=sum(s.dwCurrEstab for s in stats),
    )


# -- the calls ---------------------------------------------------------------------------------
class TcpTableError(SourceError):
    """GetExtendedTcpTable or GetTcpStatisticsEx returned an error code."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what} failed: error {code} ({_ERROR_NAMES.get(code, 'see winerror.h')})")
        self.code = code


# call(buffer, size) -> Windows error code; `size` is the in/out DWORD of the C API.
TableCall = Callable[["ctypes.Array[ctypes.c_char]", "ctypes.c_uint32"], int]


class TableBuffer:
    """The output buffer for one address family, kept between reads and grown on demand."""

    def __init__(self, initial_bytes: int = INITIAL_BUFFER_BYTES) -> None:
        self._buffer = ctypes.create_string_buffer(initial_bytes)

    @property
    def size(self) -> int:
        return len(self._buffer)

    def fill(self, call: TableCall, attempts: int = TABLE_ATTEMPTS) -> ctypes.Array[ctypes.c_char]:
        """Run `call` until the table fits. The result is this object's buffer: convert
        it before the next fill."""
        for _ in range(attempts):
            size = DWORD(len(self._buffer))
            code = call(self._buffer, size)
            if code == NO_ERROR:
                return self._buffer
            if code != ERROR_INSUFFICIENT_BUFFER:
                raise TcpTableError("GetExtendedTcpTable", code)
            needed = max(int(size.value), len(self._buffer) + 1)
            # Headroom: sockets keep opening between this answer and the next call.
            grown = needed + needed // 4 + 4096
            if grown > MAX_BUFFER_BYTES:
                raise SourceError(f"GetExtendedTcpTable asks for {needed} bytes; refusing more "
                                  f"than {MAX_BUFFER_BYTES}")
            self._buffer = ctypes.create_string_buffer(grown)
        raise SourceError(f"GetExtendedTcpTable: the TCP table kept growing faster than the buffer "
                          f"({attempts} attempts, last {len(self._buffer)} bytes)")

    def release(self) -> None:
        self._buffer = ctypes.create_string_buffer(0)


class IpHelper(Protocol):
    """The two iphlpapi.dll calls; a stand-in implements this in tests."""

    def tcp_table(self, family: int, buffer: ctypes.Array[ctypes.c_char], size: ctypes.c_uint32) -> int:
        """GetExtendedTcpTable(buffer, &size, FALSE, family, TCP_TABLE_OWNER_PID_ALL, 0)."""
        ...

    def tcp_statistics(self, family: int, stats: MIB_TCPSTATS) -> int:
        """GetTcpStatisticsEx(&stats, family)."""
        ...


class IpHelperDll:
    """iphlpapi.dll itself."""

    _get_table: Callable[..., int]
    _get_stats: Callable[..., int]

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise SourceError("iphlpapi.dll exists only on Windows")
        dll = ctypes.WinDLL("iphlpapi.dll")
        get_table = dll.GetExtendedTcpTable
        get_table.argtypes = [ctypes.c_void_p, ctypes.POINTER(DWORD), ctypes.c_int,
                              ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32]
        get_table.restype = DWORD
        get_stats = dll.GetTcpStatisticsEx
        get_stats.argtypes = [ctypes.POINTER(MIB_TCPSTATS), ctypes.c_uint32]
        get_stats.restype = DWORD
        self._get_table, self._get_stats = get_table, get_stats

    def tcp_table(self, family: int, buffer: ctypes.Array[ctypes.c_char], size: ctypes.c_uint32) -> int:
        return int(self._get_table(buffer, ctypes.byref(size), 0, family, TCP_TABLE_OWNER_PID_ALL, 0))

    def tcp_statistics(self, family: int, stats: MIB_TCPSTATS) -> int:
        return int(self._get_stats(ctypes.byref(stats), family))


# -- port settings -------------------------------------------------------------------------
NETSH_DYNAMIC_V4 = ("interface", "ipv4", "show", "dynamicport", "tcp")
NETSH_DYNAMIC_V6 = ("interface", "ipv6", "show", "dynamicport", "tcp")
NETSH_EXCLUDED_V4 = ("interface", "ipv4", "show", "excludedportrange", "protocol=tcp")


def default_time_wait_seconds(version: tuple[int, int]) -> float:
    """TIME_WAIT length when TcpTimedWaitDelay is absent: 120 s since Vista, 240 s before."""
    return 120.0 if version >= (6, 0) else 240.0


def time_wait_delay_minimum(version: tuple[int, int]) -> int:
    """Smallest accepted TcpTimedWaitDelay: 2 s on 8.1 / 2012 R2 (6.3) and later, else 30 s."""
    return 2 if version >= (6, 3) else 30


class WindowsPortConfig:
    """PortConfig from netsh and the registry, cached for `max_age` seconds.

    The OS access is passed in (run_netsh(args) -> text, read_delay() -> seconds or None)
    so the assembly, fallbacks and cache are tested with recorded netsh output.
    TcpTimedWaitDelay is read at boot: delay_in_effect(stored) says what Windows still uses
    when the stored value changed since (see time_wait_delay_in_effect); the figures use that."""

    def __init__(self, run_netsh: Callable[[Sequence[str]], str],
                 read_delay: Callable[[], int | None], version: tuple[int, int],
                 clock: Callable[[], float] = time.monotonic,
                 max_age: float = CONFIG_MAX_AGE_SECONDS,
                 delay_in_effect: Callable[[int | None], int | None] = lambda stored: stored) -> None:
        self._run_netsh = run_netsh
        self._read_delay = read_delay
        self._delay_in_effect = delay_in_effect
        self.version = version
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._cached: PortConfig | None = None
        self._read_at = 0.0

    @classmethod
    def for_this_machine(cls) -> WindowsPortConfig:
        return cls(run_netsh, read_tcp_timed_wait_delay, windows_version()[:2],
                   delay_in_effect=time_wait_delay_in_effect)

    def get(self) -> PortConfig:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._read_at >= self._max_age:
                self._cached = self.read()
                self._read_at = now
            return self._cached

    def read(self) -> PortConfig:
        notes: list[str] = []
        legacy = self.version < (6, 0)
        fallback = LEGACY_DYNAMIC_RANGE if legacy else MODERN_DYNAMIC_RANGE
        try:
            dynamic = parse_dynamic_port(self._run_netsh(NETSH_DYNAMIC_V4))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            dynamic = fallback
            notes.append(f"dynamic port range not read ({exc}); assuming the Windows default "
                         f"{fallback[0]}-{fallback[1]}")
        else:
            try:
                dynamic_v6 = parse_dynamic_port(self._run_netsh(NETSH_DYNAMIC_V6))
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                log.info("IPv6 dynamic port range not read: %s", exc)
            else:
                if dynamic_v6 != dynamic:
                    notes.append(f"IPv6 dynamic port range is {dynamic_v6[0]}-{dynamic_v6[1]}, IPv4 "
                                 f"{dynamic[0]}-{dynamic[1]}; the pool figures use the IPv4 range")
        try:
            excluded = parse_excluded_ranges(self._run_netsh(NETSH_EXCLUDED_V4))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            excluded = ()
            notes.append(f"excluded port ranges not read ({exc}); capacity may be overstated")
        time_wait = default_time_wait_seconds(self.version)
        try:
            delay = self._read_delay()
        except (OSError, ValueError) as exc:
            notes.append(f"TcpTimedWaitDelay not read ({exc}); assuming the default {time_wait:.0f} s")
        else:
            stored, delay = delay, self._delay_in_effect(delay)
            default = time_wait
            if delay is not None:
                time_wait = float(delay)
                low = time_wait_delay_minimum(self.version)
                if not low <= delay <= TIME_WAIT_DELAY_MAX:
                    notes.append(f"TcpTimedWaitDelay = {delay} s is outside the documented range "
                                 f"{low}-{TIME_WAIT_DELAY_MAX} s; the figures assume it as written")
            if delay != stored:
                notes.append(f"TcpTimedWaitDelay is set to {default if stored is None else stored:.0f} s, "
                             f"but {time_wait:.0f} s stays in effect until the next restart; the "
                             f"figures use {time_wait:.0f} s")
        return PortConfig(
            os_name="Windows",
            dynamic_range=dynamic,
            excluded=excluded,
            time_wait_seconds=time_wait,
            pool_scope="per_local_address",
            tw_reuse=None,
            notes=tuple(notes),
        )


def windows_version() -> tuple[int, int, int]:
    """(major, minor, build) of the running Windows: the one place both the live view and
    `tune` ask. platform_version is the real one; getwindowsversion's major/minor are what a
    compatibility shim tells this process (e.g. 6.2 for an unmanifested program on 10)."""
    if sys.platform != "win32":
        raise OSError("not Windows")
    major, minor, build = sys.getwindowsversion().platform_version
    return major, minor, build


def _forget_bundled_dll_directory() -> None:
    """A PyInstaller build sets the DLL directory to its unpack folder, and child processes
    inherit it: netsh would then load the bundle's copies of system DLLs and fail."""
    if sys.platform == "win32" and getattr(sys, "frozen", False):
        ctypes.windll.kernel32.SetDllDirectoryW(None)


def run_netsh(args: Sequence[str]) -> str:
    """netsh's output as text; OSError or subprocess.TimeoutExpired when it fails."""
    if sys.platform != "win32":
        raise OSError("netsh exists only on Windows")
    _forget_bundled_dll_directory()
    # The full path: never pick up a netsh.exe from the current directory.
    netsh = os.path.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32", "netsh.exe")
    done = subprocess.run(
        [netsh, *args], capture_output=True, stdin=subprocess.DEVNULL, check=False,
        timeout=NETSH_TIMEOUT_SECONDS, creationflags=subprocess.CREATE_NO_WINDOW,
    )
    # netsh writes in the OEM code page; the numbers the parsers need are ASCII in all of them.
    text = done.stdout.decode("oem", errors="replace")
    if done.returncode != 0:
        said = (text.strip() or done.stderr.decode("oem", errors="replace").strip()).splitlines()
        raise OSError(f"netsh {' '.join(args)} exited with status {done.returncode}"
                      + (f": {said[0].strip()}" if said else ""))
    return text


def read_tcp_timed_wait_delay() -> int | None:
    """HKLM\\...\\Tcpip\\Parameters\\TcpTimedWaitDelay in seconds; None when absent (default)."""
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, TCPIP_PARAMETERS_KEY) as key:
            value, kind = winreg.QueryValueEx(key, "TcpTimedWaitDelay")
    except FileNotFoundError:
        return None
    if kind != winreg.REG_DWORD or not isinstance(value, int):
        raise ValueError(f"TcpTimedWaitDelay has registry type {kind}, expected REG_DWORD")
    return value


def time_wait_delay_in_effect(stored: int | None) -> int | None:
    """The TcpTimedWaitDelay Windows uses now (None: its default). Windows reads the value at
    boot and does not report the one in use: when PortPressure changed it since this boot (its
    backups say so), the value stored before that change stays in effect until the restart."""
    # Imported here: core.tuning builds on this module.
    from core.tuning.backups import boot_time, default_backup_dir, list_backups, this_host
    from core.tuning.reminder import effective_since_boot

    effective, _ = effective_since_boot(list_backups(default_backup_dir()), "TcpTimedWaitDelay",
                                        this_host(), stored, None, boot_time())
    return effective if isinstance(effective, int) or effective is None else stored


def _is_elevated() -> bool:
    if sys.platform != "win32":
        return False
    try:
        return bool(ctypes.windll.shell32.IsUserAnAdmin())
    except (AttributeError, OSError):
        return False


# -- the source ------------------------------------------------------------------------------
class WindowsSource:
    name = "GetExtendedTcpTable"

    def __init__(self, api: IpHelper | None = None, config: WindowsPortConfig | None = None) -> None:
        self._api: IpHelper = api if api is not None else IpHelperDll()
        self._config = config if config is not None else WindowsPortConfig.for_this_machine()
        self._buffers = {AF_INET: TableBuffer(), AF_INET6: TableBuffer()}
        self._lock = threading.Lock()
        self._ipv6 = True
        self.privileged = _is_elevated()

    @property
    def limits(self) -> tuple[str, ...]:
        hidden = ["no kernel events on Windows yet: TIME_WAIT sockets (reported with PID 0) are "
                  "attributed from connections seen while open, or by inference"]
        if not self._ipv6:
            hidden.append("IPv6 is not available on this machine: IPv4 sockets only")
        return tuple(hidden)

    def port_config(self) -> PortConfig:
        return self._config.get()

    def read_counters(self) -> KernelCounters:
        stats: list[MIB_TCPSTATS] = []
        for family in (AF_INET, AF_INET6):
            one = MIB_TCPSTATS()
            code = self._api.tcp_statistics(family, one)
            if code == NO_ERROR:
                stats.append(one)
            elif family == AF_INET6 and code == ERROR_NOT_SUPPORTED:
                self._ipv6 = False
            else:
                raise TcpTableError(f"GetTcpStatisticsEx({'AF_INET6' if family == AF_INET6 else 'AF_INET'})",
                                    code)
        return counters_from_stats(stats, time.monotonic())

    def _family_table(self, family: int) -> np.ndarray:
        def call(buffer: ctypes.Array[ctypes.c_char], size: ctypes.c_uint32) -> int:
            return self._api.tcp_table(family, buffer, size)

        filled = self._buffers[family].fill(call)
        return ipv4_table(filled) if family == AF_INET else ipv6_table(filled)

    def _read_table(self) -> np.ndarray:
        parts = [self._family_table(AF_INET)]
        if self._ipv6:
            try:
                parts.append(self._family_table(AF_INET6))
            except TcpTableError as exc:
                if exc.code != ERROR_NOT_SUPPORTED:
                    raise
                self._ipv6 = False
        return np.concatenate(parts)

    def read(self, with_table: bool = True) -> TableRead:
        started = time.perf_counter()
        config = self.port_config()
        with self._lock:  # the buffers are reused between reads
            table = self._read_table() if with_table else empty_table()
            counters = self.read_counters()
        return TableRead(
            table=table,
            counters=counters,
            config=config,
            read_ms=(time.perf_counter() - started) * 1000.0,
            complete=True,  # every row carries its owner's PID without elevation
            limits=self.limits,
        )

    def close(self) -> None:
        with self._lock:
            for buffer in self._buffers.values():
                buffer.release()
