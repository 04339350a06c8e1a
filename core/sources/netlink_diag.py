"""One NETLINK_SOCK_DIAG dump of the TCP table, parsed with numpy.

Why by hand: pyroute2's DiagSocket took 1.37 s for 10k sockets (90x the raw dump),
psutil 1.5-2 s at 100k. Here one legacy TCPDIAG_GETSOCK request walks the kernel's
hash tables once for IPv4 and IPv6 together (25-45% cheaper than one request per
family), a memoryview loop finds the message offsets, and numpy gathers the fields.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys

import numpy as np

from core.model import SOCKET_DTYPE, STATE_CODE

# Linux only: mypy --platform win32 treats the rest of this module as unreachable.
assert sys.platform.startswith("linux")

NETLINK_INET_DIAG = 4
TCPDIAG_GETSOCK = 18
NLM_F_REQUEST = 0x1
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR = 2
NLMSG_DONE = 3

# Linux TCP state numbers (include/net/tcp_states.h) -> our codes.
LINUX_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "BOUND", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "SYN_RECV",  # TCP_NEW_SYN_RECV: a request socket, shown as SYN_RECV like ss does
}
STATE_MAP = np.zeros(256, dtype=np.uint8)
for _linux, _name in LINUX_STATES.items():
    STATE_MAP[_linux] = STATE_CODE[_name]
ALL_STATES_MASK = sum(1 << s for s in LINUX_STATES)
TIME_WAIT_BIT = 1 << 6

# struct nlmsghdr (16) + struct inet_diag_msg (72); offsets relative to the message start.
_HDR = 16
_OFF_FAMILY = _HDR + 0
_OFF_STATE = _HDR + 1
_OFF_SPORT = _HDR + 4
_OFF_DPORT = _HDR + 6
_OFF_SRC = _HDR + 8
_OFF_DST = _HDR + 24
_OFF_INODE = _HDR + 68
_MSG_MIN = _HDR + 72


class NetlinkDiagError(OSError):
    pass


def build_request(states_mask: int, seq: int) -> bytes:
    """nlmsghdr + legacy struct inet_diag_req (family AF_UNSPEC would be rejected by
    the compat path; AF_INET with the legacy type returns both families)."""
    sockid = bytes(48)
    body = struct.pack("=BBBB", socket.AF_INET, 0, 0, 0) + sockid + struct.pack("=II", states_mask, 0)
    header = struct.pack("=IHHII", _HDR + len(body), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


class DiagSocket:
    """A reusable netlink socket for sock_diag dumps."""

    def __init__(self, rcvbuf: int = 4 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_INET_DIAG)
        with contextlib.suppress(OSError):  # a smaller buffer only means more recv calls
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        self._seq = 0
        self._chunk = bytearray(1 << 16)

    def close(self) -> None:
        self.sock.close()

    def dump(self, states_mask: int) -> tuple[bytes, np.ndarray]:
        """One dump: the concatenated response messages (NLMSG_DONE excluded) and the
        byte offset of each message in them."""
        self._seq += 1
        self.sock.send(build_request(states_mask, self._seq))
        parts: list[bytes] = []
        offsets: list[np.ndarray] = []
        base = 0
        while True:
            n = self.sock.recv_into(self._chunk)
            if n <= 0:
                raise NetlinkDiagError(0, "netlink socket closed during a dump")
            data = bytes(memoryview(self._chunk)[:n])
            starts, end, terminal = datagram_offsets(data)
            if end:
                parts.append(data[:end])
                offsets.append(starts + base)
                base += end
            if terminal is not None:
                if terminal:
                    raise NetlinkDiagError(terminal, f"sock_diag dump refused: errno {terminal}")
                buf = b"".join(parts)
                return buf, (np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64))


def datagram_offsets(data: bytes) -> tuple[np.ndarray, int, int | None]:
    """Message offsets in one datagram, the byte length of its diag messages, and
    None or, when the dump ends here, 0 (done) / an errno (NLMSG_ERROR).

    Fast path: a datagram of equally long messages (runs of TIME_WAIT sockets are all
    88 bytes) is checked with numpy in one step instead of walked message by message."""
    n = len(data)
    if n >= _HDR:
        (first,) = struct.unpack_from("=I", data, 0)
        if first >= _MSG_MIN and first % 4 == 0 and n % first == 0:
            words = np.frombuffer(data, dtype="<u4")
            step = first // 4
            lengths = words[::step]
            types = words[1::step] & 0xFFFF
            if (lengths == first).all() and not ((types == NLMSG_DONE) | (types == NLMSG_ERROR)).any():
                return np.arange(0, n, first, dtype=np.int64), n, None
    starts: list[int] = []
    off = 0
    while off + _HDR <= n:
        length, typ = struct.unpack_from("=IH", data, off)
        if length < _HDR:
            raise NetlinkDiagError(0, f"malformed netlink message (length {length})")
        if typ == NLMSG_DONE:
            return np.asarray(starts, dtype=np.int64), off, 0
        if typ == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, off + _HDR)
            return np.asarray(starts, dtype=np.int64), off, -err
        starts.append(off)
        off += (length + 3) & ~3
    return np.asarray(starts, dtype=np.int64), n, None


# nlmsghdr + struct inet_diag_msg as numpy sees it: each message's first 88 bytes.
MSG_DTYPE = np.dtype({
    "names": ["family", "state", "sport", "dport", "src", "dst", "inode"],
    "formats": ["u1", "u1", ">u2", ">u2", "V16", "V16", "<u4"],
    "offsets": [_OFF_FAMILY, _OFF_STATE, _OFF_SPORT, _OFF_DPORT, _OFF_SRC, _OFF_DST, _OFF_INODE],
    "itemsize": _MSG_MIN,
})


def parse_dump(buf: bytes, offsets: np.ndarray) -> np.ndarray:
    """SOCKET_DTYPE table from a dump's messages (pid not filled).

    A sliding-window view of the buffer indexed by the offsets copies each message's
    fixed part in one step (88 bytes a row, one index per row)."""
    table = np.zeros(len(offsets), dtype=SOCKET_DTYPE)
    table["pid"] = -1
    if not len(offsets):
        return table
    if int(offsets[-1]) + _MSG_MIN > len(buf):
        raise NetlinkDiagError(0, "truncated inet_diag message")
    raw = np.frombuffer(buf, dtype=np.uint8)
    rows = np.lib.stride_tricks.sliding_window_view(raw, _MSG_MIN)[offsets]  # a fresh copy
    is4 = rows[:, _OFF_FAMILY] == socket.AF_INET
    # The kernel fills only the first 4 address bytes for IPv4; make the rest compare equal.
    rows[is4, _OFF_SRC + 4:_OFF_SRC + 16] = 0
    rows[is4, _OFF_DST + 4:_OFF_DST + 16] = 0
    msgs = rows.view(MSG_DTYPE).ravel()
    table["family"] = np.where(is4, 4, 6)
    table["state"] = STATE_MAP[msgs["state"]]
    table["lport"] = msgs["sport"]
    table["rport"] = msgs["dport"]
    table["inode"] = msgs["inode"]
    table["laddr"] = msgs["src"]
    table["raddr"] = msgs["dst"]
    return table
