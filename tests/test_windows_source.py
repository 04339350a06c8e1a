"""Windows reader logic, run on any OS with in-memory stand-ins for the Windows calls.

What runs here: the row conversion on MIB_TCP(6)TABLE_OWNER_PID bytes built with ctypes
from the documented C layout (tcpmib.h, written out again below rather than imported from
the module under test), MIB_TCPSTATS summing, the buffer-growth retry loop against a fake
GetExtendedTcpTable that answers as the documentation says, WindowsSource.read() end to end
over that fake, and the netsh parsers and PortConfig assembly on recorded netsh output.
What cannot run here: the iphlpapi.dll calls themselves, netsh.exe, winreg,
SetDllDirectoryW and IsUserAnAdmin.
"""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.model import NO_PID, STATE_CODE, STATE_NAMES, empty_table, format_address, pack_address
from core.sources import windows as win
from core.sources.base import SourceError
from core.sources.netsh_parse import parse_dynamic_port, parse_excluded_ranges
from core.tuning.backups import BACKUP_DIR_ENV, boot_time, write_backup

DWORD = ctypes.c_uint32


# -- the documented layout, as an independent witness ---------------------------------------
class Row4(ctypes.Structure):
    _fields_ = [(name, DWORD) for name in
                ("dwState", "dwLocalAddr", "dwLocalPort", "dwRemoteAddr", "dwRemotePort", "dwOwningPid")]


class Row6(ctypes.Structure):
    _fields_ = [("ucLocalAddr", ctypes.c_ubyte * 16), ("dwLocalScopeId", DWORD), ("dwLocalPort", DWORD),
                ("ucRemoteAddr", ctypes.c_ubyte * 16), ("dwRemoteScopeId", DWORD), ("dwRemotePort", DWORD),
                ("dwState", DWORD), ("dwOwningPid", DWORD)]


# MIB_TCP_STATE values (tcpmib.h)
MIB = {"CLOSED": 1, "LISTEN": 2, "SYN_SENT": 3, "SYN_RCVD": 4, "ESTAB": 5, "FIN_WAIT1": 6,
       "FIN_WAIT2": 7, "CLOSE_WAIT": 8, "CLOSING": 9, "LAST_ACK": 10, "TIME_WAIT": 11,
       "DELETE_TCB": 12}
# Windows leaves the upper 16 bits of a port DWORD undefined: fill them to prove they are ignored.
PORT_JUNK = 0xBEEF0000


def ipv4_dword(text: str) -> int:
    """An IPv4 address as Windows stores it in a DWORD: network-order bytes, read little-endian."""
    _, raw = pack_address(text)
    return int.from_bytes(raw[:4], "little")


def port_dword(port: int) -> int:
    """The port in network byte order in the low 16 bits (little-endian memory)."""
    return PORT_JUNK | int.from_bytes(port.to_bytes(2, "big"), "little")


Row = tuple[int, str, int, str, int, int]  # (MIB state, laddr, lport, raddr, rport, pid)


def _table_bytes(row_type: type[ctypes.Structure], rows: Sequence[Row],
                 write_addresses: Callable[[Any, str, str], None]) -> bytes:
    """dwNumEntries followed by the rows: a MIB_TCP(6)TABLE_OWNER_PID as Windows fills it."""
    class Table(ctypes.Structure):
        _fields_ = [("dwNumEntries", DWORD), ("table", row_type * max(len(rows), 1))]

    t = Table()
    t.dwNumEntries = len(rows)
    for i, (state, laddr, lport, raddr, rport, pid) in enumerate(rows):
        row = t.table[i]
        row.dwState, row.dwOwningPid = state, pid
        row.dwLocalPort, row.dwRemotePort = port_dword(lport), port_dword(rport)
        write_addresses(row, laddr, raddr)
    return bytes(t)[: Table.table.offset + ctypes.sizeof(row_type) * len(rows)]


def table4_bytes(rows: Sequence[Row], trailing: bytes = b"") -> bytes:
    def write(row: Any, laddr: str, raddr: str) -> None:
        row.dwLocalAddr, row.dwRemoteAddr = ipv4_dword(laddr), ipv4_dword(raddr)

    return _table_bytes(Row4, rows, write) + trailing


def table6_bytes(rows: Sequence[Row], scope: int = 0) -> bytes:
    def write(row: Any, laddr: str, raddr: str) -> None:
        row.ucLocalAddr[:] = list(pack_address(laddr)[1])
        row.ucRemoteAddr[:] = list(pack_address(raddr)[1])
        row.dwLocalScopeId = row.dwRemoteScopeId = scope

    return _table_bytes(Row6, rows, write)


def described(table: np.ndarray) -> list[tuple[str, str, int, str, int, int]]:
    return [(STATE_NAMES[r["state"]], format_address(int(r["family"]), bytes(r["laddr"])), int(r["lport"]),
             format_address(int(r["family"]), bytes(r["raddr"])), int(r["rport"]), int(r["pid"]))
            for r in table]


# -- layout ------------------------------------------------------------------------------------
def test_module_structures_match_the_documented_layout() -> None:
    assert ctypes.sizeof(win.MIB_TCPROW_OWNER_PID) == ctypes.sizeof(Row4) == 24
    assert ctypes.sizeof(win.MIB_TCP6ROW_OWNER_PID) == ctypes.sizeof(Row6) == 56
    assert ctypes.sizeof(win.MIB_TCPSTATS) == 15 * 4
    assert win.ROW4_DTYPE.itemsize == 24 and win.ROW6_DTYPE.itemsize == 56
    for name, _ in Row6._fields_:
        assert getattr(win.MIB_TCP6ROW_OWNER_PID, name).offset == getattr(Row6, name).offset


# -- conversion --------------------------------------------------------------------------------
def test_ipv4_rows_convert_field_by_field() -> None:
    rows: list[Row] = [
        (MIB["LISTEN"], "0.0.0.0", 445, "0.0.0.0", 0, 4),
        (MIB["ESTAB"], "10.0.0.5", 50001, "10.0.0.9", 443, 1234),
        (MIB["TIME_WAIT"], "10.0.0.5", 50002, "10.0.0.9", 443, 0),
        (MIB["CLOSE_WAIT"], "192.168.1.20", 8080, "192.168.1.30", 61000, 0),
        (MIB["SYN_SENT"], "10.0.0.5", 65535, "203.0.113.7", 1, 5678),
    ]
    table = win.ipv4_table(table4_bytes(rows))
    assert table.dtype == empty_table().dtype
    assert described(table) == [
        ("LISTEN", "0.0.0.0", 445, "0.0.0.0", 0, 4),  # System (PID 4) keeps its listener
        ("ESTABLISHED", "10.0.0.5", 50001, "10.0.0.9", 443, 1234),
        ("TIME_WAIT", "10.0.0.5", 50002, "10.0.0.9", 443, NO_PID),  # PID 0 on TIME_WAIT: nobody
        ("CLOSE_WAIT", "192.168.1.20", 8080, "192.168.1.30", 61000, NO_PID),  # PID 0 anywhere: nobody
        ("SYN_SENT", "10.0.0.5", 65535, "203.0.113.7", 1, 5678),
    ]
    assert (table["family"] == 4).all() and (table["inode"] == 0).all()
    # IPv4 fills the first 4 bytes of the 16-byte slot; the rest stays zero.
    assert bytes(table["laddr"][1]) == bytes([10, 0, 0, 5]) + bytes(12)


@pytest.mark.parametrize(("mib", "ours"), [
    ("CLOSED", "BOUND"), ("LISTEN", "LISTEN"), ("SYN_SENT", "SYN_SENT"), ("SYN_RCVD", "SYN_RECV"),
    ("ESTAB", "ESTABLISHED"), ("FIN_WAIT1", "FIN_WAIT1"), ("FIN_WAIT2", "FIN_WAIT2"),
    ("CLOSE_WAIT", "CLOSE_WAIT"), ("CLOSING", "CLOSING"), ("LAST_ACK", "LAST_ACK"),
    ("TIME_WAIT", "TIME_WAIT"), ("DELETE_TCB", "BOUND"),
])
def test_every_mib_state_maps(mib: str, ours: str) -> None:
    table = win.ipv4_table(table4_bytes([(MIB[mib], "10.0.0.1", 50000, "10.0.0.2", 80, 99)]))
    assert table["state"][0] == STATE_CODE[ours]


def test_undocumented_state_values_count_as_bound() -> None:
    rows: list[Row] = [(state, "10.0.0.1", 50000 + i, "10.0.0.2", 80, 7)
                       for i, state in enumerate((0, 13, 100, 0xFFFFFFFF))]
    assert set(win.ipv4_table(table4_bytes(rows))["state"].tolist()) == {STATE_CODE["BOUND"]}


def test_ipv6_rows_convert_and_drop_scope_ids() -> None:
    rows: list[Row] = [
        (MIB["LISTEN"], "::", 135, "::", 0, 1000),
        (MIB["ESTAB"], "fe80::1", 51000, "fe80::2", 5985, 2000),
        (MIB["TIME_WAIT"], "2001:db8::5", 51001, "2001:db8::9", 443, 0),
        (MIB["ESTAB"], "::ffff:10.0.0.5", 51002, "::ffff:10.0.0.9", 1433, 3000),
    ]
    table = win.ipv6_table(table6_bytes(rows, scope=7))
    assert (table["family"] == 6).all()
    assert described(table) == [
        ("LISTEN", "::", 135, "::", 0, 1000),
        ("ESTABLISHED", "fe80::1", 51000, "fe80::2", 5985, 2000),
        ("TIME_WAIT", "2001:db8::5", 51001, "2001:db8::9", 443, NO_PID),
        ("ESTABLISHED", "::ffff:a00:5", 51002, "::ffff:a00:9", 1433, 3000),
    ]


def test_rows_past_dwnumentries_are_ignored() -> None:
    rows: list[Row] = [(MIB["ESTAB"], "10.0.0.5", 50001, "10.0.0.9", 443, 1)]
    # A buffer larger than the table, as GetExtendedTcpTable leaves it: junk after the rows.
    table = win.ipv4_table(table4_bytes(rows, trailing=b"\xff" * 100))
    assert len(table) == 1 and table["lport"][0] == 50001


def test_empty_and_truncated_tables() -> None:
    assert len(win.ipv4_table(table4_bytes([]))) == 0
    assert len(win.ipv6_table(table6_bytes([]))) == 0
    truncated = table4_bytes([(MIB["ESTAB"], "10.0.0.5", 50001, "10.0.0.9", 443, 1)] * 3)[:-10]
    with pytest.raises(SourceError, match="says 3 rows"):
        win.ipv4_table(truncated)
    with pytest.raises(SourceError, match="too short"):
        win.ipv4_table(b"\x01\x00")


def test_conversion_copies_out_of_the_reused_buffer() -> None:
    one_row = table4_bytes([(MIB["ESTAB"], "10.0.0.5", 50001, "10.0.0.9", 443, 1)])
    buffer = ctypes.create_string_buffer(one_row)
    table = win.ipv4_table(buffer)
    ctypes.memset(buffer, 0, len(buffer))  # the next GetExtendedTcpTable call overwrites it
    assert table["lport"][0] == 50001 and table["pid"][0] == 1


def stats_struct(active: int, passive: int, fails: int, resets: int, estab: int) -> win.MIB_TCPSTATS:
    values = [4, 300, 120000, 0xFFFFFFFF, active, passive, fails, resets, estab, 10, 11, 12, 13, 14, 15]
    return win.MIB_TCPSTATS.from_buffer_copy(np.array(values, dtype="<u4").tobytes())


def test_counters_sum_ipv4_and_ipv6() -> None:
    counters = win.counters_from_stats([stats_struct(100, 20, 3, 4, 50), stats_struct(10, 2, 1, 0, 5)], 12.5)
    assert counters.monotonic == 12.5
    assert counters.time_wait is None  # Windows has no TIME_WAIT counter
    assert (counters.active_opens, counters.passive_opens, counters.attempt_fails,
            counters.established_resets, counters.current_established) == (110, 22, 4, 4, 55)


# -- GetExtendedTcpTable stand-in and the retry loop -------------------------------------------
class FakeIpHelper:
    """iphlpapi.dll in memory, answering as documented: when *pdwSize is too small it
    returns ERROR_INSUFFICIENT_BUFFER and writes the needed size; otherwise it copies the
    table and returns NO_ERROR. Each call takes the next snapshot (the last one repeats),
    so the table can grow between calls the way it does on a busy server."""

    def __init__(self, tables: dict[int, list[bytes]], stats: dict[int, win.MIB_TCPSTATS] | None = None,
                 errors: dict[int, int] | None = None) -> None:
        self.tables = tables
        self.stats = stats or {}
        self.errors = errors or {}
        self.calls: list[tuple[int, int]] = []

    def tcp_table(self, family: int, buffer: ctypes.Array[ctypes.c_char], size: ctypes.c_uint32) -> int:
        self.calls.append((family, int(size.value)))
        if family in self.errors:
            return self.errors[family]
        snapshots = self.tables[family]
        data = snapshots.pop(0) if len(snapshots) > 1 else snapshots[0]
        if size.value < len(data):
            size.value = len(data)
            return win.ERROR_INSUFFICIENT_BUFFER
        ctypes.memmove(buffer, data, len(data))
        return win.NO_ERROR

    def tcp_statistics(self, family: int, stats: win.MIB_TCPSTATS) -> int:
        if family not in self.stats:
            return win.ERROR_NOT_SUPPORTED
        ctypes.memmove(ctypes.byref(stats), ctypes.byref(self.stats[family]), ctypes.sizeof(stats))
        return win.NO_ERROR


def established(n: int, first_port: int = 50000) -> bytes:
    return table4_bytes([(MIB["ESTAB"], "10.0.0.5", first_port + i, "10.0.0.9", 443, 4242) for i in range(n)])


def calling(api: FakeIpHelper, family: int) -> win.TableCall:
    return lambda buffer, size: api.tcp_table(family, buffer, size)


def test_buffer_grows_while_the_table_grows_between_calls() -> None:
    # 10 rows at the size question, then 1000 and 2000 by the time the bigger buffer arrives.
    api = FakeIpHelper({win.AF_INET: [established(10), established(1000), established(2000)]})
    buffer = win.TableBuffer(initial_bytes=16)
    table = win.ipv4_table(buffer.fill(calling(api, win.AF_INET)))
    assert len(table) == 2000
    assert table["lport"].tolist() == list(range(50000, 52000))
    sizes = [size for _, size in api.calls]
    assert len(sizes) == 4 and sizes[0] == 16 and sizes == sorted(sizes)
    # Each retry asked with more than the previous answer: headroom for further growth.
    assert sizes[1] > 4 + 24 * 10 and sizes[2] > 4 + 24 * 1000


def test_buffer_is_kept_between_reads() -> None:
    api = FakeIpHelper({win.AF_INET: [established(100)]})
    buffer = win.TableBuffer(initial_bytes=16)
    buffer.fill(calling(api, win.AF_INET))
    grown = buffer.size
    api.calls.clear()
    assert len(win.ipv4_table(buffer.fill(calling(api, win.AF_INET)))) == 100
    assert len(api.calls) == 1 and buffer.size == grown


def test_gives_up_when_the_table_outruns_every_retry() -> None:
    api = FakeIpHelper({win.AF_INET: [established(1000 * 2**k) for k in range(4)]})
    with pytest.raises(SourceError, match="kept growing"):
        win.TableBuffer(initial_bytes=16).fill(calling(api, win.AF_INET), attempts=3)
    assert len(api.calls) == 3


def test_other_errors_are_named() -> None:
    api = FakeIpHelper({win.AF_INET: [established(1)]}, errors={win.AF_INET: win.ERROR_INVALID_PARAMETER})
    with pytest.raises(win.TcpTableError, match="error 87 \\(ERROR_INVALID_PARAMETER\\)") as caught:
        win.TableBuffer().fill(calling(api, win.AF_INET))
    assert caught.value.code == 87


def test_absurd_size_answers_are_refused() -> None:
    def liar(buffer: ctypes.Array[ctypes.c_char], size: ctypes.c_uint32) -> int:
        size.value = 0xFFFFFFF0
        return win.ERROR_INSUFFICIENT_BUFFER

    with pytest.raises(SourceError, match="refusing"):
        win.TableBuffer().fill(liar)


# -- recorded netsh output ----------------------------------------------------------------------
# Windows Server 2019, English, defaults (netsh prints a blank line first; CRLF endings).
DYNAMIC_2019 = ("\r\nProtocol tcp Dynamic Port Range\r\n---------------------------------\r\n"
                "Start Port      : 49152\r\nNumber of Ports : 16384\r\n\r\n")
# A server set back to the Server 2003 range (netsh int ipv4 set dynamicport tcp start=1025 num=3976).
DYNAMIC_2003_STYLE = ("\r\nProtocol tcp Dynamic Port Range\r\n---------------------------------\r\n"
                      "Start Port      : 1025\r\nNumber of Ports : 3976\r\n\r\n")
DYNAMIC_GERMAN = ("\r\nProtokoll tcp Dynamischer Portbereich\r\n---------------------------------\r\n"
                  "Startport       : 49152\r\nAnzahl der Ports : 16384\r\n\r\n")
DYNAMIC_JAPANESE_FULLWIDTH = ("\ufeffプロトコル tcp 動的ポートの範囲\n---------------------------------\n"
                              "開始ポート      ： 49152\nポート数        ： 16384\n")
# Windows Server 2019 with Hyper-V and a SQL Server exclusion; the starred row was added
# by an administrator (netsh int ipv4 add excludedportrange).
EXCLUDED_2019 = ("\r\nProtocol tcp Port Exclusion Ranges\r\n\r\nStart Port    End Port\r\n"
                 "----------    --------\r\n      1433        1433\r\n      5357        5357\r\n"
                 "     50000       50059     *\r\n     50060       50159\r\n     63000       63099\r\n"
                 "\r\n* - Administered port exclusions.\r\n\r\n")
EXCLUDED_NONE = ("\r\nProtocol tcp Port Exclusion Ranges\r\n\r\nStart Port    End Port\r\n"
                 "----------    --------\r\n\r\n* - Administered port exclusions.\r\n\r\n")
EXCLUDED_GERMAN = ("\r\nProtokoll tcp Portausschlussbereiche\r\n\r\nStartport    Endport\r\n"
                   "----------    --------\r\n     50000       50059     *\r\n\r\n"
                   "* - Verwaltete Portausschlüsse.\r\n\r\n")
GARBAGE = "The following command was not found: interface ipv4 show dynamicport tcp.\r\n"


@pytest.mark.parametrize(("text", "expected"), [
    (DYNAMIC_2019, (49152, 65535)),
    (DYNAMIC_2003_STYLE, (1025, 5000)),
    (DYNAMIC_GERMAN, (49152, 65535)),
    (DYNAMIC_JAPANESE_FULLWIDTH, (49152, 65535)),
    (DYNAMIC_2019.replace("\r\n", "\n"), (49152, 65535)),
])
def test_parse_dynamic_port(text: str, expected: tuple[int, int]) -> None:
    assert parse_dynamic_port(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    (GARBAGE, "found 0 numbered"),
    ("", "empty output"),
    (EXCLUDED_2019, "found 0 numbered"),
    (DYNAMIC_2019.replace("16384", "1000").replace("49152", "65000"), "impossible range"),
    (DYNAMIC_2019 + "Extra Line : 7\r\n", "found 3 numbered"),
])
def test_parse_dynamic_port_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_dynamic_port(text)
    assert "\n" not in str(caught.value)


def test_parse_excluded_ranges() -> None:
    assert parse_excluded_ranges(EXCLUDED_2019) == (
        (1433, 1433), (5357, 5357), (50000, 50059), (50060, 50159), (63000, 63099))
    assert parse_excluded_ranges(EXCLUDED_NONE) == ()
    assert parse_excluded_ranges(EXCLUDED_GERMAN) == ((50000, 50059),)
    assert parse_excluded_ranges(EXCLUDED_2019.replace("\r\n", "\n")) == parse_excluded_ranges(EXCLUDED_2019)


@pytest.mark.parametrize(("text", "message"), [
    (GARBAGE, "no table found"),
    ("", "no table found"),
    (DYNAMIC_2019, "unexpected line 'Start Port      : 49152'"),
    (EXCLUDED_2019.replace("63000       63099", "63000       abc"), "unexpected line"),
    (EXCLUDED_2019.replace("63000       63099", "63099       63000"), "impossible range 63099-63000"),
])
def test_parse_excluded_ranges_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_excluded_ranges(text)


# -- PortConfig assembly ------------------------------------------------------------------------
class FakeMachine:
    """netsh and the registry as recorded; an entry may be an exception to raise."""

    def __init__(self, outputs: dict[tuple[str, ...], str | BaseException],
                 delay: int | None | BaseException = None) -> None:
        self.outputs = outputs
        self.delay = delay
        self.netsh_runs: list[tuple[str, ...]] = []
        self.now = 1000.0

    def run_netsh(self, args: Sequence[str]) -> str:
        self.netsh_runs.append(tuple(args))
        out = self.outputs.get(tuple(args), OSError("netsh exited with status 1"))
        if isinstance(out, BaseException):
            raise out
        return out

    def read_delay(self) -> int | None:
        if isinstance(self.delay, BaseException):
            raise self.delay
        return self.delay

    def config(self, version: tuple[int, int] = (10, 0)) -> win.WindowsPortConfig:
        return win.WindowsPortConfig(self.run_netsh, self.read_delay, version, clock=lambda: self.now)


SERVER_2019 = {win.NETSH_DYNAMIC_V4: DYNAMIC_2019, win.NETSH_DYNAMIC_V6: DYNAMIC_2019,
               win.NETSH_EXCLUDED_V4: EXCLUDED_2019}


def test_port_config_from_recorded_server_2019() -> None:
    config = FakeMachine(dict(SERVER_2019)).config().read()
    assert config.os_name == "Windows" and config.pool_scope == "per_local_address"
    assert config.dynamic_range == (49152, 65535)
    assert config.excluded[2] == (50000, 50059)
    assert config.capacity == 16384 - 60 - 100 - 100  # 1433 and 5357 lie outside the range
    assert config.time_wait_seconds == 120.0 and config.notes == ()


def test_port_config_registry_delay_and_its_range() -> None:
    assert FakeMachine(dict(SERVER_2019), delay=30).config().read().time_wait_seconds == 30.0
    odd = FakeMachine(dict(SERVER_2019), delay=1).config((6, 3)).read()
    assert odd.time_wait_seconds == 1.0
    assert any("outside the documented range 2-300" in note for note in odd.notes)
    old = FakeMachine(dict(SERVER_2019), delay=10).config((6, 1)).read()
    assert any("range 30-300" in note for note in old.notes)
    broken = FakeMachine(dict(SERVER_2019), delay=ValueError("TcpTimedWaitDelay has registry type 1"))
    config = broken.config().read()
    assert config.time_wait_seconds == 120.0
    assert any("not read (TcpTimedWaitDelay has registry type 1)" in note for note in config.notes)


def test_port_config_uses_the_delay_in_effect_until_the_reboot(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # `tune set TcpTimedWaitDelay 10` in this boot, from "not set": Windows keeps its default
    # 120 s until the restart, and the live view's forecasts must too.
    monkeypatch.setenv(BACKUP_DIR_ENV, str(tmp_path))
    write_backup(tmp_path, "TcpTimedWaitDelay", None, 10, "registry")
    machine = FakeMachine(dict(SERVER_2019), delay=10)
    pending = win.WindowsPortConfig(machine.run_netsh, machine.read_delay, (10, 0),
                                    delay_in_effect=win.time_wait_delay_in_effect).read()
    assert pending.time_wait_seconds == 120.0
    assert any("set to 10 s, but 120 s stays in effect until the next restart" in note
               for note in pending.notes)
    # The same change made in an earlier boot has taken effect.
    for backup in tmp_path.iterdir():
        backup.unlink()
    write_backup(tmp_path, "TcpTimedWaitDelay", None, 10, "registry", boot=boot_time() - 3600)
    rebooted = win.WindowsPortConfig(machine.run_netsh, machine.read_delay, (10, 0),
                                     delay_in_effect=win.time_wait_delay_in_effect).read()
    assert rebooted.time_wait_seconds == 10.0 and rebooted.notes == ()


@pytest.mark.parametrize("failure", [
    OSError("netsh exited with status 1"),
    subprocess.TimeoutExpired(["netsh"], 10),
    GARBAGE,
])
def test_port_config_falls_back_when_netsh_fails(failure: str | BaseException) -> None:
    machine = FakeMachine({win.NETSH_DYNAMIC_V4: failure, win.NETSH_EXCLUDED_V4: failure})
    config = machine.config().read()
    assert config.dynamic_range == (49152, 65535) and config.excluded == ()
    assert len(config.notes) == 2
    assert "assuming the Windows default 49152-65535" in config.notes[0]
    assert "capacity may be overstated" in config.notes[1]
    assert win.NETSH_DYNAMIC_V6 not in machine.netsh_runs  # nothing to compare with


def test_port_config_before_vista_assumes_the_old_defaults() -> None:
    config = FakeMachine({}).config((5, 2)).read()
    assert config.dynamic_range == (1025, 5000) and config.time_wait_seconds == 240.0


def test_port_config_notes_a_different_ipv6_range() -> None:
    outputs: dict[tuple[str, ...], str | BaseException] = dict(SERVER_2019)
    outputs[win.NETSH_DYNAMIC_V6] = DYNAMIC_2003_STYLE
    config = FakeMachine(outputs).config().read()
    assert config.dynamic_range == (49152, 65535)
    assert config.notes == ("IPv6 dynamic port range is 1025-5000, IPv4 49152-65535; "
                            "the pool figures use the IPv4 range",)


def test_port_config_is_cached_for_30_seconds() -> None:
    machine = FakeMachine(dict(SERVER_2019))
    reader = machine.config()
    first = reader.get()
    machine.now += 29.0
    assert reader.get() is first
    assert len(machine.netsh_runs) == 3
    machine.outputs[win.NETSH_DYNAMIC_V4] = DYNAMIC_2003_STYLE
    machine.now += 1.0
    assert reader.get().dynamic_range == (1025, 5000)
    assert len(machine.netsh_runs) == 6


# -- WindowsSource over the stand-ins -----------------------------------------------------------
def source_over(api: FakeIpHelper) -> win.WindowsSource:
    return win.WindowsSource(api=api, config=FakeMachine(dict(SERVER_2019)).config())


def test_windows_source_reads_both_families_and_counters() -> None:
    v4 = table4_bytes([(MIB["LISTEN"], "0.0.0.0", 80, "0.0.0.0", 0, 4),
                       (MIB["TIME_WAIT"], "10.0.0.5", 50002, "10.0.0.9", 443, 0)])
    v6 = table6_bytes([(MIB["ESTAB"], "::1", 50003, "::1", 443, 777)])
    stats = {win.AF_INET: stats_struct(5, 6, 7, 8, 9), win.AF_INET6: stats_struct(1, 1, 1, 1, 1)}
    api = FakeIpHelper({win.AF_INET: [v4], win.AF_INET6: [v6]}, stats=stats)
    source = source_over(api)
    read = source.read()
    assert source.name == "GetExtendedTcpTable"
    assert [(s, la, lp, pid) for s, la, lp, _, _, pid in described(read.table)] == [
        ("LISTEN", "0.0.0.0", 80, 4),
        ("TIME_WAIT", "10.0.0.5", 50002, NO_PID),
        ("ESTABLISHED", "::1", 50003, 777),
    ]
    assert read.counters.active_opens == 6 and read.counters.current_established == 10
    assert read.config.dynamic_range == (49152, 65535) and read.complete
    assert any("TIME_WAIT" in limit for limit in read.limits)
    cheap = source.read(with_table=False)
    assert len(cheap.table) == 0 and cheap.counters.attempt_fails == 8
    source.close()
    source.close()  # idempotent
    assert len(source.read().table) == 3  # buffers grow again after close


def test_windows_source_without_ipv6() -> None:
    api = FakeIpHelper({win.AF_INET: [established(2)]}, stats={win.AF_INET: stats_struct(5, 6, 7, 8, 9)},
                       errors={win.AF_INET6: win.ERROR_NOT_SUPPORTED})
    source = source_over(api)
    read = source.read()
    assert len(read.table) == 2 and read.counters.active_opens == 5
    assert any("IPv6 is not available" in limit for limit in read.limits)
    api.calls.clear()
    source.read()
    assert [family for family, _ in api.calls] == [win.AF_INET]  # IPv6 is not asked again


def test_windows_source_reports_a_failing_call() -> None:
    api = FakeIpHelper({win.AF_INET: [established(2)]}, stats={},
                       errors={win.AF_INET: win.ERROR_NOT_ENOUGH_MEMORY})
    with pytest.raises(SourceError, match="ERROR_NOT_ENOUGH_MEMORY"):
        source_over(api).read()
    with pytest.raises(SourceError, match="GetTcpStatisticsEx\\(AF_INET\\) failed: error 50"):
        source_over(FakeIpHelper({win.AF_INET: [established(1)]})).read_counters()


@pytest.mark.skipif(win.sys.platform == "win32", reason="checks the behaviour off Windows")
def test_real_source_off_windows_says_why() -> None:
    with pytest.raises(SourceError, match="only on Windows"):
        win.WindowsSource()
    assert win.read_tcp_timed_wait_delay() is None
    with pytest.raises(OSError, match="only on Windows"):
        win.run_netsh(win.NETSH_DYNAMIC_V4)
