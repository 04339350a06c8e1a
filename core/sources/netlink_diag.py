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

import numpy as np

from core.model import SOCKET_DTYPE, STATE_CODE

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
_SRC_IDX = np.arange(16)


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

    def dump_raw(self, states_mask: int) -> bytes:
        """All response messages of one dump, concatenated (NLMSG_DONE excluded)."""
        self._seq += 1
        self.sock.send(build_request(states_mask, self._seq))
        parts: list[bytes] = []
        view = memoryview(self._chunk)
        while True:
            n = self.sock.recv_into(self._chunk)
            if n <= 0:
                raise NetlinkDiagError(0, "netlink socket closed during a dump")
            # The dump ends with a message of type NLMSG_DONE (or NLMSG_ERROR); it is
            # always the last one of its datagram, so only that datagram needs a look.
            last_type = _last_message_type(view, n)
            if last_type in (NLMSG_DONE, NLMSG_ERROR):
                body_end = _strip_terminal(view, n)
                if body_end:
                    parts.append(bytes(view[:body_end]))
                if last_type == NLMSG_ERROR:
                    _raise_netlink_error(view, n)
                return b"".join(parts)
            parts.append(bytes(view[:n]))


def _last_message_type(view: memoryview, n: int) -> int:
    off = 0
    typ = 0
    while off + _HDR <= n:
        length, typ = struct.unpack_from("=IH", view, off)
        if length < _HDR:
            raise NetlinkDiagError(0, f"malformed netlink message (length {length})")
        off += (length + 3) & ~3
    return typ


def _strip_terminal(view: memoryview, n: int) -> int:
    """Byte length of the datagram without its final DONE/ERROR message."""
    off = 0
    while off + _HDR <= n:
        length, typ = struct.unpack_from("=IH", view, off)
        if typ in (NLMSG_DONE, NLMSG_ERROR):
            return off
        off += (length + 3) & ~3
    return n


def _raise_netlink_error(view: memoryview, n: int) -> None:
    off = 0
    while off + _HDR <= n:
        length, typ = struct.unpack_from("=IH", view, off)
        if typ == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", view, off + _HDR)
            if err:
                raise NetlinkDiagError(-err, f"sock_diag dump refused: errno {-err}")
            return
        off += (length + 3) & ~3


def message_offsets(buf: bytes) -> np.ndarray:
    """Start offsets of the netlink messages in `buf`.

    Offsets depend on the previous message's length, so this is a sequential walk;
    a memoryview cast to u32 keeps it at ~0.1 us a message (10 ms at 100k)."""
    words = memoryview(buf).cast("I")
    n_words = len(words)
    starts: list[int] = []
    append = starts.append
    i = 0
    while i < n_words:
        append(i)
        length = words[i]
        if length < _HDR:
            raise NetlinkDiagError(0, f"malformed netlink message at byte {i * 4}")
        i += (length + 3) >> 2
    return np.asarray(starts, dtype=np.int64) * 4


def parse_dump(buf: bytes) -> np.ndarray:
    """SOCKET_DTYPE table from the concatenated messages of a dump (pid not filled)."""
    if not buf:
        return np.zeros(0, dtype=SOCKET_DTYPE)
    raw = np.frombuffer(buf, dtype=np.uint8)
    offsets = message_offsets(buf)
    if len(offsets) and int(offsets[-1]) + _MSG_MIN > len(buf):
        raise NetlinkDiagError(0, "truncated inet_diag message")
    table = np.zeros(len(offsets), dtype=SOCKET_DTYPE)
    table["pid"] = -1
    family = raw[offsets + _OFF_FAMILY]
    table["family"] = np.where(family == socket.AF_INET6, 6, 4)
    table["state"] = STATE_MAP[raw[offsets + _OFF_STATE]]
    # Ports are big-endian 16-bit.
    table["lport"] = (raw[offsets + _OFF_SPORT].astype(np.uint16) << 8) | raw[offsets + _OFF_SPORT + 1]
    table["rport"] = (raw[offsets + _OFF_DPORT].astype(np.uint16) << 8) | raw[offsets + _OFF_DPORT + 1]
    inode_bytes = raw[offsets[:, None] + _OFF_INODE + np.arange(4)]
    table["inode"] = inode_bytes.copy().view("<u4").ravel()
    src = raw[offsets[:, None] + _OFF_SRC + _SRC_IDX]
    dst = raw[offsets[:, None] + _OFF_DST + _SRC_IDX]
    # The kernel fills all 16 bytes for IPv6 and only the first 4 for IPv4.
    is4 = table["family"] == 4
    src[is4, 4:] = 0
    dst[is4, 4:] = 0
    table["laddr"] = src.view("V16").ravel()
    table["raddr"] = dst.view("V16").ravel()
    return table
