"""Recording samples to disk (`watch --record`, the window's Record toggle) and loading
them back for replay.

Format: JSON lines; the file name picks the encoding. `*.gz`: gzip, each recording
session one gzip member (`zcat FILE | jq` reads it); any other name: plain text, one line
per sample, flushed as it is written (`tail -f FILE`, `tail -n1 FILE | jq`). A session's
first line is a header ({"portpressure_recording": 1, "version", "host", ...}) and every
further line is one sample: the `watch --json` contract keys (top lists trimmed) plus
"pools", "limits" and "extra". The loader tells the two apart by their first bytes.

Why compress: a realistic line is ~3 KB, 260 MB a day at 1 Hz; compressed with a sync
flush after every line it is ~250 bytes (~21 MB a day, benchmarks/load_recording.py).
Both encodings put every complete line on disk in decodable form (the gzip writer
sync-flushes the compressor) and fsync after every sample, so a crash or power loss
loses at most the sample being written. A writer thread does the disk work; append() waits for it only up to
APPEND_WAIT_S, so a slow or hung disk never stalls sampling.

Loading keeps the compressed bytes plus decoder checkpoints about every megabyte of
text, and rebuilds a Sample only when asked (86,400 Sample objects would take ~750 MB).
"""

from __future__ import annotations

import bisect
import errno
import json
import os
import platform
import queue
import socket
import struct
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, overload

import numpy as np

from core import __version__
from core.history import History, HistorySnapshot
from core.model import (
    LEVEL_ORDER,
    STATE_NAMES,
    Event,
    Forecast,
    PoolUsage,
    PortConfig,
    PortsSummary,
    ProcessRow,
    Rates,
    RemoteRow,
    Sample,
    Verdict,
)

FORMAT_VERSION = 1
RECORD_TOP = 10  # processes and remotes kept per line
RECORD_POOLS = 3
MAX_BYTES = 100_000_000  # per file, then FILE -> FILE.1 (about four days at 1 Hz)
KEEP_ROTATED = 3  # FILE.1 .. FILE.3; the oldest is dropped
QUEUE_LIMIT = 600  # samples waiting for the disk before recording gives up
# append() waits this long for the sample to reach the disk: long enough for any healthy
# disk (an fsync costs ~0.2 ms on this machine's virtio disk), short enough that a hung
# one never stalls sampling; past it the writer thread catches up in the background.
APPEND_WAIT_S = 0.1
COMPRESS_LEVEL = 6
# A constant gzip member header (MTIME 0, FNAME set) so a loader can find where each
# session starts even after an unfinished one (a crash leaves no gzip trailer).
MEMBER_HEADER = b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\xff" + b"portpressure-recording.jsonl\x00"
GZIP_MAGIC = b"\x1f\x8b"
FEED_BYTES = 16 * 1024  # input handed to the decoder at a time
CHECKPOINT_TEXT_BYTES = 1 << 20  # decoded text between checkpoints: the cost of one random access
CACHED_BLOCKS = 4


class RecordingError(Exception):
    """A recording cannot be written or read; the message is one line for the user."""


# -- JSON <-> values ----------------------------------------------------------------

def port_config_json(config: PortConfig) -> dict[str, Any]:
    return {
        "os": config.os_name,
        "dynamic_range": list(config.dynamic_range),
        "excluded": [list(r) for r in config.excluded],
        "capacity": config.capacity,
        "time_wait_seconds": config.time_wait_seconds,
        "pool_scope": config.pool_scope,
        "tw_reuse": config.tw_reuse,
        "notes": list(config.notes),
    }


def port_config_from_json(obj: Mapping[str, Any]) -> PortConfig:
    lo, hi = obj["dynamic_range"]
    scope = obj.get("pool_scope", "per_destination")
    if scope not in ("per_destination", "per_local_address"):
        raise ValueError(f"unknown pool scope {scope!r}")
    tw_reuse = obj.get("tw_reuse")
    return PortConfig(
        os_name=str(obj["os"]),
        dynamic_range=(int(lo), int(hi)),
        excluded=tuple((int(a), int(b)) for a, b in obj.get("excluded", ())),
        time_wait_seconds=float(obj.get("time_wait_seconds", 60.0)),
        pool_scope=scope,
        tw_reuse=None if tw_reuse is None else int(tw_reuse),
        notes=tuple(str(n) for n in obj.get("notes", ())),
    )


def pool_json(pool: PoolUsage) -> dict[str, Any]:
    return {"pool": pool.label, "capacity": pool.capacity, "in_use": pool.in_use,
            "time_wait": pool.time_wait, "pressure": round(pool.pressure, 4),
            "reusable_time_wait": pool.reusable_time_wait}


def record_json(sample: Sample, top: int | None = RECORD_TOP) -> dict[str, Any]:
    """One recording line: the watch contract plus what replay shows besides it."""
    obj = sample.to_json(top=top)
    obj["pools"] = [pool_json(p) for p in sample.ports.pools[:RECORD_POOLS]]
    if sample.limits:
        obj["limits"] = list(sample.limits)
    if sample.extra:
        obj["extra"] = dict(sample.extra)
    return obj


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO-8601 time; one without an offset counts as local time."""
    if not isinstance(text, str):
        raise TypeError("time is not text")
    return datetime.fromisoformat(text).timestamp()


def sample_from_json(obj: Mapping[str, Any]) -> Sample:
    """The inverse of Sample.to_json (and of record_json): to_json() of the result
    equals the input for every contract key. Raises KeyError/TypeError/ValueError on a
    line that is not a sample. The timestamp comes from "time" (millisecond precision)."""
    ports = obj["ports"]
    rates = obj["rates"]
    fc = obj["forecast"]
    verdict = obj["verdict"]
    if verdict["level"] not in LEVEL_ORDER:
        raise ValueError(f"unknown verdict level {verdict['level']!r}")
    states = obj["states"]
    lo, hi = ports["range"]
    eta = fc["seconds_to_exhaustion"]
    return Sample(
        time_iso=obj["time"],
        timestamp=parse_time(obj["time"]),
        states={name: int(states.get(name, 0)) for name in STATE_NAMES},
        ports=PortsSummary(
            range=(int(lo), int(hi)),
            capacity=int(ports["capacity"]),
            in_use=int(ports["in_use"]),
            pressure=float(ports["pressure"]),
            pool=str(ports["pool"]),
            range_in_use=int(ports.get("range_in_use", 0)),
            range_capacity=int(ports.get("range_capacity", 0)),
            pools=tuple(PoolUsage(str(p["pool"]), int(p["capacity"]), int(p["in_use"]), int(p["time_wait"]),
                                  bool(p["reusable_time_wait"])) for p in obj.get("pools", ())),
        ),
        rates=Rates(float(rates["active_opens_per_s"]), float(rates["passive_opens_per_s"]),
                    float(rates["attempt_fails_per_s"])),
        forecast=Forecast(int(fc["steady_state_time_wait"]), None if eta is None else float(eta),
                          open_rate_per_s=float(fc.get("open_rate_per_s", 0.0))),
        processes=tuple(_process_from_json(p) for p in obj["processes"]),
        remotes=tuple(RemoteRow(str(r["address"]), int(r["port"]), int(r["connections"]), int(r["time_wait"]))
                      for r in obj["remotes"]),
        verdict=Verdict(verdict["level"], str(verdict["title"]), tuple(str(r) for r in verdict["reasons"])),
        sample_ms=float(obj["sample_ms"]),
        time_wait_unattributed=int(obj.get("time_wait_unattributed", 0)),
        time_wait_seconds=float(obj.get("time_wait_seconds", 60.0)),
        os_name=str(obj.get("os", "")),
        limits=tuple(str(x) for x in obj.get("limits", ())),
        extra=dict(obj.get("extra", {})),
        events=tuple(event_from_json(e) for e in obj.get("events", ())),
    )


def event_from_json(obj: Mapping[str, Any]) -> Event:
    """The inverse of Event.to_json."""
    kind = obj["kind"]
    if kind not in ("setting", "probe", "note"):
        raise ValueError(f"unknown event kind {kind!r}")
    details = {k: v for k, v in obj.items() if k not in ("time", "kind", "text")}
    parse_time(obj["time"])  # checked: markers are placed by it
    return Event(str(obj["time"]), kind, str(obj["text"]), details)


def _process_from_json(p: Mapping[str, Any]) -> ProcessRow:
    return ProcessRow.from_json(p)


def history_row(obj: Mapping[str, Any]) -> tuple[float, list[float]]:
    """(timestamp, History row) straight from a line, without building the Sample:
    equal to (sample.timestamp, core.history.sample_values(sample)) for
    sample = sample_from_json(obj). Also checks the structure replay relies on."""
    states = obj["states"]
    ports = obj["ports"]
    rates = obj["rates"]
    if obj["verdict"]["level"] not in LEVEL_ORDER:
        raise ValueError("unknown verdict level")
    if not isinstance(obj["processes"], list) or not isinstance(obj["remotes"], list):
        raise TypeError("processes and remotes must be lists")
    values = [float(int(states.get(name, 0))) for name in STATE_NAMES]
    values += [float(ports["pressure"]), float(int(ports["capacity"])), float(int(ports["in_use"])),
               float(rates["active_opens_per_s"]), float(rates["attempt_fails_per_s"]),
               float(int(obj.get("time_wait_unattributed", 0))), float(obj["sample_ms"])]
    return parse_time(obj["time"]), values


def recording_header(port_config: PortConfig | None = None, source: str = "",
                     top: int | None = RECORD_TOP) -> dict[str, Any]:
    return {
        "portpressure_recording": FORMAT_VERSION,
        "version": __version__,
        "host": socket.gethostname(),
        "os": platform.platform(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "source": source,
        "top": top,
        "port_config": None if port_config is None else port_config_json(port_config),
    }


# -- writing ------------------------------------------------------------------------

def _describe(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "the disk is full"
    return exc.strerror or str(exc)


class _AppendFile:
    """Lines appended to a file, each written whole and fsynced (when durable).

    After a failed write the file is cut back to the last complete line and nothing
    more is written to it."""

    def __init__(self, path: Path, durable: bool) -> None:
        self.path = path
        self.durable = durable
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self._fd: int | None = os.open(path, flags, 0o644)
        self.size = os.fstat(self._fd).st_size

    def write_line(self, text: bytes) -> None:
        self._write(text)

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        good = self.size
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.size += written
            if self.durable:
                os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, good)  # no half line, and the space is given back
                self.size = good
            except OSError:
                pass  # the loader skips a cut-off line anyway
            self.close()
            raise


class _PlainLines(_AppendFile):
    """Plain JSON lines. A line cut off by an earlier crash is ended first, so the new
    session's header starts a line of its own (the cut line is then skipped and counted)."""

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        if self.size and not _ends_with_newline(path, self.size):
            self._write(b"\n")


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as existing:
        existing.seek(size - 1)
        return existing.read(1) == b"\n"


class _GzipMember(_AppendFile):
    """One gzip member appended to a file, sync-flushed after every line. After a failed
    write the compressor's state no longer matches the disk: the member ends there."""

    def __init__(self, path: Path, durable: bool) -> None:
        super().__init__(path, durable)
        self._compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._length = 0
        self._write(MEMBER_HEADER)

    def write_line(self, text: bytes) -> None:
        self._crc = zlib.crc32(text, self._crc)
        self._length += len(text)
        self._write(self._compressor.compress(text) + self._compressor.flush(zlib.Z_SYNC_FLUSH))

    def finish(self) -> None:
        """Write the gzip trailer (standard tools then read the file without complaint)."""
        if self._fd is None:
            return
        try:
            self._write(self._compressor.flush(zlib.Z_FINISH)
                        + struct.pack("<II", self._crc, self._length & 0xFFFFFFFF))
        finally:
            self.close()


def compressed_name(path: Path) -> bool:
    """A recording's encoding follows its name: `*.gz` is gzip, anything else plain text."""
    return path.suffix.lower() == ".gz"


def _check_appendable(path: Path) -> None:
    if path.is_dir():
        raise RecordingError(f"{path} is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise RecordingError(f"folder {parent} does not exist")
    try:
        with open(path, "rb") as existing:
            start = existing.read(SNIFF_FILE_BYTES if not compressed_name(path) else len(MEMBER_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {_describe(exc)}") from None
    if not start:
        return
    if compressed_name(path):
        if start != MEMBER_HEADER:
            raise RecordingError(f"{path} exists and is not a compressed PortPressure recording; "
                                 "not appending to it")
    elif start.startswith(GZIP_MAGIC):
        raise RecordingError(f"{path} is a compressed recording: name it *.gz to append to it")
    elif not _starts_like_a_recording(start):
        raise RecordingError(f"{path} exists and is not a PortPressure recording; not appending to it")


def _starts_like_a_recording(head: bytes) -> bool:
    """The first line of a plain file is a recording header or a sample."""
    first = head.split(b"\n", 1)[0]
    try:
        obj = json.loads(first)
        if isinstance(obj, dict) and "portpressure_recording" in obj:
            return True
        history_row(obj)
        return True
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return False


class Recorder:
    """Appends samples to a recording file from a writer thread of its own.

    `append` returns once the sample is on disk, or after `wait_s` at the most (the
    thread then writes it in the background); it never raises. When writing fails (disk
    full, file gone) recording stops, the file keeps every sample written so far and
    still loads, and `error` says what happened in one line."""

    def __init__(self, path: str | os.PathLike[str], *, port_config: PortConfig | None = None,
                 source: str = "", top: int | None = RECORD_TOP, max_bytes: int = MAX_BYTES,
                 keep: int = KEEP_ROTATED, durable: bool = True, wait_s: float = APPEND_WAIT_S) -> None:
        self.path = Path(path)
        self.wait_s = wait_s
        self.top = top
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        self.error: str | None = None
        self.samples_written = 0
        self.rotations = 0
        self._header = recording_header(port_config, source, top)
        self._durable = durable
        self._closed = False
        self._queue: queue.Queue[Sample | None] = queue.Queue()
        self._pending = 0  # appended, not yet on disk (or given up)
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        _check_appendable(self.path)
        existed = self.path.exists()
        try:
            self._file: _AppendFile | None = self._open_member()
        except OSError as exc:
            if not existed:
                self.path.unlink(missing_ok=True)  # leave no empty file behind
            raise RecordingError(f"cannot write {self.path}: {_describe(exc)}") from None
        self._thread = threading.Thread(target=self._run, name="portpressure-recorder", daemon=True)
        self._thread.start()

    def _open_member(self) -> _AppendFile:
        encoding = _GzipMember if compressed_name(self.path) else _PlainLines
        member = encoding(self.path, self._durable)
        member.write_line(json.dumps(self._header, separators=(",", ":")).encode() + b"\n")
        return member

    def append(self, sample: Sample) -> None:
        with self._lock:
            if self._closed or self.error is not None:
                return
            if self._pending >= QUEUE_LIMIT:
                self.error = (f"writing {self.path} fell {self._pending} samples behind (the disk is too "
                              "slow or hung); recording stopped")
                return
            self._pending += 1
        self._queue.put(sample)
        if self.wait_s > 0:
            self.flush(self.wait_s)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every sample appended so far is on disk (or recording stopped).
        False if that took longer than `timeout`."""
        with self._written:
            return self._written.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, finish the file and stop the writer thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            sample = self._queue.get()
            if sample is None:
                break
            if self._file is not None:
                self._write(sample)
            with self._written:
                self._pending -= 1
                self._written.notify_all()
        if self._file is not None:
            try:
                self._file.finish()
            except OSError as exc:
                self._fail(exc)

    def _write(self, sample: Sample) -> None:
        assert self._file is not None
        line = json.dumps(record_json(sample, self.top), separators=(",", ":"), default=str).encode() + b"\n"
        try:
            self._file.write_line(line)
            self.samples_written += 1
            if self._file.size >= self.max_bytes:
                self._rotate()
        except OSError as exc:
            self._fail(exc, sample.time_iso)

    def _rotate(self) -> None:
        """FILE -> FILE.1 -> ... -> FILE.keep (the oldest is dropped); a new FILE starts."""
        assert self._file is not None
        self._file.finish()
        self._file = None
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open_member()
        self.rotations += 1

    def _fail(self, exc: OSError, last_time: str | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        kept = f"; it holds every sample written before {last_time}" if last_time else ""
        self.error = (f"cannot write {self.path}: {_describe(exc)}; recording stopped after "
                      f"{self.samples_written} samples{kept}")


# -- reading ------------------------------------------------------------------------

class _PlainText:
    """Stands in for a decompressor on an uncompressed file (e.g. `watch --json > FILE`)."""

    eof = False
    unused_data = b""

    def decompress(self, data: bytes | memoryview) -> bytes:
        return bytes(data)

    def copy(self) -> _PlainText:
        return self


@dataclass(frozen=True)
class _Checkpoint:
    line: int  # number of the first line completed after this point
    offset: int  # where feeding resumes
    end: int  # end of this segment's bytes
    decoder: Any  # decompressor state at `offset` (copied before use)
    tail: bytes  # partial line decoded before `offset`


class _LineReader:
    """Complete lines of one segment (a gzip member, or a whole plain file), numbered
    consistently for the loader and for random access later."""

    def __init__(self, raw: bytes, offset: int, end: int, decoder: Any, line: int, tail: bytes = b"") -> None:
        self.raw = raw
        self.offset = offset
        self.end = end
        self.decoder = decoder
        self.line = line
        self.tail = tail
        self.damaged_at: int | None = None

    def lines(self, checkpoints: list[_Checkpoint] | None = None) -> Iterator[tuple[int, bytes, bool]]:
        """Yield (line number, text, terminated). An unterminated last piece is yielded
        with terminated=False: it is a sample only if it parses."""
        view = memoryview(self.raw)
        since = CHECKPOINT_TEXT_BYTES
        while self.offset < self.end and not self.decoder.eof:
            if checkpoints is not None and since >= CHECKPOINT_TEXT_BYTES:
                checkpoints.append(
                    _Checkpoint(self.line, self.offset, self.end, self.decoder.copy(), self.tail))
                since = 0
            chunk = view[self.offset:min(self.offset + FEED_BYTES, self.end)]
            self.offset += len(chunk)
            try:
                text = self.decoder.decompress(chunk)
            except zlib.error:
                self.damaged_at = self.offset - len(chunk)
                break
            since += len(text)
            if not text:
                continue
            pieces = (self.tail + text).split(b"\n")
            self.tail = pieces.pop()
            for piece in pieces:
                yield self.line, piece, True
                self.line += 1
        if self.tail.strip():
            yield self.line, self.tail, False
            self.line += 1
        self.tail = b""

    @property
    def consumed_to(self) -> int:
        """Where the compressed data of a finished member ends (its trailer starts)."""
        return self.offset - len(self.decoder.unused_data)


def _gzip_header_length(raw: bytes, pos: int) -> int | None:
    """Length of the gzip member header at `pos` (RFC 1952), or None if there is none."""
    if raw[pos:pos + 3] != b"\x1f\x8b\x08" or len(raw) < pos + 10:
        return None
    flags = raw[pos + 3]
    at = pos + 10
    if flags & 4:  # FEXTRA
        if len(raw) < at + 2:
            return None
        at += 2 + int.from_bytes(raw[at:at + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            zero = raw.find(b"\x00", at)
            if zero < 0:
                return None
            at = zero + 1
    if flags & 2:  # FHCRC
        at += 2
    return at - pos if at <= len(raw) else None


@dataclass
class _LoadProblems:
    garbage_lines: int = 0
    truncated_lines: int = 0
    garbage_bytes: int = 0
    damaged_at: list[int] = field(default_factory=list)


def _segments(raw: bytes, problems: _LoadProblems) -> Iterator[_LineReader]:
    """One reader per gzip member (resynchronising on MEMBER_HEADER after an unfinished
    one), or one reader over a plain file. Line numbers run on across segments."""
    line = 0
    if not raw.startswith(GZIP_MAGIC):
        reader = _LineReader(raw, 0, len(raw), _PlainText(), line)
        yield reader
        return
    pos = 0
    while pos < len(raw):
        following = raw.find(MEMBER_HEADER, pos + 1)
        limit = len(raw) if following < 0 else following
        header = _gzip_header_length(raw, pos)
        if header is None:
            problems.garbage_bytes += limit - pos
            pos = limit
            continue
        reader = _LineReader(raw, pos + header, limit, zlib.decompressobj(-zlib.MAX_WBITS), line)
        yield reader
        line = reader.line
        if reader.damaged_at is not None:
            problems.damaged_at.append(reader.damaged_at)
        if reader.decoder.eof:
            pos = min(reader.consumed_to + 8, limit)  # past the trailer: another member may follow
        else:
            pos = limit


class RecordedSamples(Sequence[Sample]):
    """The samples of a recording, rebuilt from their lines when asked for. Thread-safe;
    the few most recently decoded blocks (about 1 MB of text each) are cached."""

    def __init__(self, raw: bytes, checkpoints: list[_Checkpoint], line_numbers: np.ndarray) -> None:
        self._raw = raw
        self._checkpoints = checkpoints
        self._checkpoint_lines = [c.line for c in checkpoints]
        self._line_numbers = line_numbers
        self._blocks: OrderedDict[int, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._line_numbers)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | Sequence[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("sample index out of range")
        try:
            return sample_from_json(json.loads(self.line(index)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Only a hand-edited line gets here: loading already checked what the plot needs.
            raise RecordingError(f"sample {index} of the recording cannot be read: "
                                 f"{type(exc).__name__}: {exc}") from None

    def line(self, index: int) -> bytes:
        """The recorded text of sample `index`, exactly as written."""
        number = int(self._line_numbers[index])
        block_index = bisect.bisect_right(self._checkpoint_lines, number) - 1
        with self._lock:
            block = self._blocks.get(block_index)
            if block is None:
                block = self._decode_block(block_index)
                self._blocks[block_index] = block
                while len(self._blocks) > CACHED_BLOCKS:
                    self._blocks.popitem(last=False)
            else:
                self._blocks.move_to_end(block_index)
        return block[number - self._checkpoints[block_index].line]

    def _decode_block(self, block_index: int) -> list[bytes]:
        start = self._checkpoints[block_index]
        stop = (self._checkpoint_lines[block_index + 1] if block_index + 1 < len(self._checkpoints)
                else None)
        reader = _LineReader(self._raw, start.offset, start.end, start.decoder.copy(), start.line, start.tail)
        block: list[bytes] = []
        for number, text, _terminated in reader.lines():
            if stop is not None and number >= stop:
                break
            block.append(text)
        return block


@dataclass(frozen=True, eq=False)
class Recording:
    """A loaded recording, ready for replay. `samples[i]` is the Sample at `times[i]`;
    `history` holds every sample's series in time order for the plot."""

    path: Path
    samples: RecordedSamples
    times: np.ndarray  # float64 epoch seconds, ascending, read-only
    history: History
    headers: tuple[Mapping[str, Any], ...]  # one per recording session; none for `watch --json` output
    skipped_lines: int  # lines that are not samples (garbage, foreign text)
    truncated_lines: int  # lines cut short (the recorder stopped mid-write)
    warnings: tuple[str, ...]  # one line per kind of problem found
    load_seconds: float
    events: tuple[Event, ...] = ()  # every sample's events, in time order (plot markers, report)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def header(self) -> Mapping[str, Any] | None:
        return self.headers[0] if self.headers else None

    @property
    def port_config(self) -> PortConfig | None:
        """The port settings the last session recorded, when it knew them."""
        for header in reversed(self.headers):
            if header.get("port_config"):
                try:
                    return port_config_from_json(header["port_config"])
                except (KeyError, TypeError, ValueError):
                    continue
        return None

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def index_at(self, timestamp: float) -> int:
        """The sample showing at `timestamp`: the last one taken at or before it (the
        first one for a time before the recording)."""
        return max(int(np.searchsorted(self.times, timestamp, side="right")) - 1, 0)

    def sample_at(self, timestamp: float) -> Sample:
        return self.samples[self.index_at(timestamp)]

    def snapshot(self) -> HistorySnapshot:
        return self.history.snapshot()


def _read_file(path: Path, limit: int = -1) -> bytes:
    """The file's bytes (its first `limit` bytes if given), or a one-line RecordingError."""
    if path.is_dir():
        raise RecordingError(f"{path} is a folder, not a recording")
    try:
        with open(path, "rb") as file:
            raw = file.read(limit)
    except FileNotFoundError:
        raise RecordingError(f"{path} does not exist") from None
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        raise RecordingError(f"{path} is empty")
    return raw


def load_recording(path: str | os.PathLike[str]) -> Recording:
    """Load a recording (or `watch --json` output). Cut-off and garbage lines are
    skipped and counted, never fatal; a file without a single sample is a RecordingError."""
    started = time.perf_counter()
    path = Path(path)
    raw = _read_file(path)
    problems = _LoadProblems()
    checkpoints: list[_Checkpoint] = []
    headers: list[Mapping[str, Any]] = []
    times = array("d")
    values_flat = array("d")  # a list of row lists would take ~55 MB for a day
    line_numbers = array("q")
    events: list[Event] = []
    for reader in _segments(raw, problems):
        for number, text, terminated in reader.lines(checkpoints):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                if isinstance(obj, dict) and "portpressure_recording" in obj:
                    headers.append(obj)
                    continue
                timestamp, row = history_row(obj)
                if obj.get("events"):
                    events.extend(event_from_json(e) for e in obj["events"])
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                if terminated:
                    problems.garbage_lines += 1
                else:
                    problems.truncated_lines += 1
                continue
            times.append(timestamp)
            values_flat.extend(row)
            line_numbers.append(number)
    if not times:
        if headers or raw.startswith(MEMBER_HEADER):
            raise RecordingError(f"{path} holds no samples (recording started but no sample was written)")
        raise RecordingError(f"{path} is not a PortPressure recording (no sample lines found)")
    time_array = np.frombuffer(times, dtype=np.float64).copy()
    numbers = np.frombuffer(line_numbers, dtype=np.int64).copy()
    values = np.frombuffer(values_flat, dtype=np.float64).reshape(len(time_array), -1).astype(np.float32)
    warnings = _warnings(path, problems)
    if np.any(np.diff(time_array) < 0):
        order = np.argsort(time_array, kind="stable")
        time_array, numbers, values = time_array[order], numbers[order], values[order]
        warnings.append(f"{path}: the clock went backwards during recording; samples are shown in time order")
    history = History(len(time_array))
    for timestamp, series_row in zip(time_array.tolist(), values, strict=True):
        history.append_row(timestamp, series_row)
    time_array.flags.writeable = False
    return Recording(
        path=path,
        samples=RecordedSamples(raw, checkpoints, numbers),
        times=time_array,
        history=history,
        headers=tuple(headers),
        skipped_lines=problems.garbage_lines,
        truncated_lines=problems.truncated_lines,
        warnings=tuple(warnings),
        load_seconds=time.perf_counter() - started,
        events=tuple(sorted(events, key=lambda e: parse_time(e.time_iso))),
    )


def _warnings(path: Path, problems: _LoadProblems) -> list[str]:
    warnings = []
    if problems.truncated_lines:
        warnings.append(f"{path}: skipped {problems.truncated_lines} line(s) cut short (the recorder stopped "
                        "mid-write, e.g. a crash or power loss)")
    if problems.garbage_lines:
        warnings.append(f"{path}: skipped {problems.garbage_lines} line(s) that are not PortPressure samples")
    if problems.damaged_at:
        places = ", ".join(str(p) for p in problems.damaged_at[:3])
        warnings.append(f"{path}: compressed data damaged at byte {places}; the rest of that session "
                        "could not be read")
    if problems.garbage_bytes:
        warnings.append(f"{path}: skipped {problems.garbage_bytes} byte(s) that are not part of a recording")
    return warnings


SNIFF_FILE_BYTES = 1 << 20  # read at most this much of the file to check it
SNIFF_TEXT_BYTES = 1 << 20  # and decode at most this much text from it


def _sniffed_text(path: Path, head: bytes) -> bytes:
    """The text at the start of a file: decoded member after member if compressed (an
    empty session may come before one with samples), up to SNIFF_TEXT_BYTES."""
    if not head.startswith(GZIP_MAGIC):
        return head
    text = b""
    pos = 0
    while pos < len(head) and len(text) < SNIFF_TEXT_BYTES:
        header = _gzip_header_length(head, pos)
        if header is None:
            if not text:
                raise RecordingError(f"{path} is not a PortPressure recording (a damaged gzip header)")
            break
        decoder = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            text += decoder.decompress(head[pos + header:], SNIFF_TEXT_BYTES - len(text))
        except zlib.error:
            if not text:
                raise RecordingError(
                    f"{path} is not a PortPressure recording (damaged compressed data)") from None
            break
        if not decoder.eof:
            break
        pos = len(head) - len(decoder.unused_data) + 8  # past the trailer
    return text


def check_recording(path: str | os.PathLike[str]) -> None:
    """A quick look at the start of `path` (milliseconds, whatever its size): raises the
    same one-line RecordingError as load_recording when it is missing, a folder, empty or
    plainly not a recording (no sample in its first megabyte), before a window spends
    seconds loading it. Passing does not promise a full load: the loader still decides."""
    path = Path(path)
    head = _read_file(path, SNIFF_FILE_BYTES)
    saw_header = False
    for line in _sniffed_text(path, head).split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and "portpressure_recording" in obj:
                saw_header = True
                continue
            history_row(obj)
            return
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            continue
    if saw_header or head.startswith(MEMBER_HEADER):
        raise RecordingError(f"{path} holds no samples (recording started but no sample was written)")
    raise RecordingError(f"{path} is not a PortPressure recording (no sample lines found)")
