"""Recording and replay: real samples from the real sampler (in private network
namespaces, under real churn), written through the Recorder, killed, cut, filled up,
and loaded back."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.history import sample_values
from core.model import PortConfig, Sample, Verdict
from core.recording import (
    MEMBER_HEADER,
    RECORD_TOP,
    Recorder,
    RecordingError,
    history_row,
    load_recording,
    record_json,
    sample_from_json,
)
from tests.support.netns import netns_unavailable_reason, requires_netns, run_in_netns, wait_until
from tests.support.traffic import Churner, Listener

ROOT = Path(__file__).resolve().parents[1]


# -- real samples ---------------------------------------------------------------------

def _sample_under_churn(count: int, path: str | None) -> list[Sample]:
    """`count` real samples of a namespace with three named churners, a listener that
    never closes (CLOSE_WAIT) and a narrow port range; recorded to `path` if given."""
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Listener("127.0.0.1", 9001), \
            Listener("127.0.0.1", 9002, mode="never_close"), \
            Churner("127.0.0.1", 9000, hold_s=0.002, name="churn-a") as a, \
            Churner("127.0.0.1", 9001, hold_s=0.004, name="churn-b") as b, \
            Churner("127.0.0.1", 9002, hold_s=0.01, name="leaky-c"):
        wait_until(lambda: a.ok >= 100 and b.ok >= 50, 30, "churn to start")
        sampler = Sampler()
        recorder = None
        if path:
            recorder = Recorder(path, port_config=sampler.port_config, source=sampler.source_name)
        samples = []
        try:
            for _ in range(count):
                sample = sampler.sample()
                samples.append(sample)
                if recorder is not None:
                    recorder.append(sample)
        finally:
            sampler.close()
            if recorder is not None:
                recorder.close()
                assert recorder.error is None, recorder.error
    return samples


NARROW = {"net.ipv4.ip_local_port_range": "40000 40999", "net.ipv4.tcp_tw_reuse": "0"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[Sample]]:
    """A recording of 12 real samples, and the samples as the sampler made them."""
    if (reason := netns_unavailable_reason()) is not None:
        pytest.skip(reason)
    path = tmp_path_factory.mktemp("recorded") / "churn.jsonl.gz"
    samples = run_in_netns(_sample_under_churn, 12, str(path), sysctls=NARROW)
    return path, samples


def real_samples() -> list[Sample]:
    """Six real samples under churn (for other test modules)."""
    return run_in_netns(_sample_under_churn, 6, None, sysctls=NARROW)


def contract(obj: dict) -> dict:
    return {k: obj[k] for k in ("time", "states", "ports", "rates", "forecast", "processes", "remotes",
                                "verdict", "sample_ms")}


# -- replay fidelity ----------------------------------------------------------------------

def test_sample_from_json_inverts_to_json_for_real_samples(recorded):
    _, samples = recorded
    assert any(s.processes and s.remotes and s.states["TIME_WAIT"] for s in samples)
    for sample in samples:
        for obj in (sample.to_json(), record_json(sample), record_json(sample, top=3)):
            rebuilt = sample_from_json(json.loads(json.dumps(obj)))
            assert rebuilt.to_json() == {k: obj[k] for k in rebuilt.to_json()}
        rebuilt = sample_from_json(json.loads(json.dumps(record_json(sample, top=None))))
        assert record_json(rebuilt, top=None) == record_json(sample, top=None)
        assert rebuilt.ports.pools == sample.ports.pools
        assert rebuilt.limits == sample.limits
        assert dict(rebuilt.extra) == json.loads(json.dumps(dict(sample.extra)))
        assert abs(rebuilt.timestamp - sample.timestamp) < 0.001
        for mine, theirs in zip(rebuilt.processes, sample.processes, strict=True):
            assert dataclasses.astuple(mine) == dataclasses.astuple(theirs)[:6] + (
                round(theirs.opens_per_s, 3), dict(theirs.states), theirs.close_wait,
                dict(theirs.time_wait_toward), theirs.exited, theirs.instances,
                None if theirs.parent is None else dataclasses.astuple(theirs.parent))


def test_replay_gives_exactly_the_recorded_values(recorded):
    path, samples = recorded
    recording = load_recording(path)
    assert len(recording) == len(samples) == len(recording.history)
    assert recording.skipped_lines == recording.truncated_lines == 0 and recording.warnings == ()
    for i, sample in enumerate(samples):
        replayed = recording.samples[i]
        assert replayed.to_json() == sample.to_json(top=RECORD_TOP)
        assert replayed.ports.pools == sample.ports.pools[:3]
        written = json.dumps(record_json(sample), separators=(",", ":"), default=str)
        assert recording.samples.line(i).decode() == written
    # The plot's series are the recorded values, in order.
    snapshot = recording.snapshot()
    for i in range(len(samples)):
        replayed = recording.samples[i]
        assert snapshot.times[i] == replayed.timestamp
        assert snapshot.values[i].tolist() == pytest.approx(sample_values(replayed), rel=1e-6)
        assert recording.index_at(replayed.timestamp) == i
        assert recording.sample_at(replayed.timestamp + 0.0001).to_json() == replayed.to_json()
    assert recording.index_at(recording.start - 100) == 0
    assert recording.index_at(recording.end + 100) == len(samples) - 1
    assert recording.samples[-1].to_json() == samples[-1].to_json(top=RECORD_TOP)
    assert [s.time_iso for s in recording.samples[2:5]] == [s.time_iso for s in samples[2:5]]
    header = recording.header
    assert header is not None and header["portpressure_recording"] == 1 and header["host"]
    assert recording.port_config is not None and recording.port_config.dynamic_range == (40000, 40999)


def test_history_row_matches_the_rebuilt_sample(recorded):
    _, samples = recorded
    for sample in samples:
        obj = json.loads(json.dumps(record_json(sample)))
        timestamp, row = history_row(obj)
        rebuilt = sample_from_json(obj)
        assert timestamp == rebuilt.timestamp
        assert row == sample_values(rebuilt)


def test_a_finished_recording_is_plain_gzip(recorded):
    """Standard tools (zcat, Python's gzip) read it: the header line, then one sample per line."""
    path, samples = recorded
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert json.loads(lines[0])["portpressure_recording"] == 1
    assert [contract(json.loads(line)) for line in lines[1:]] == [contract(s.to_json(top=RECORD_TOP))
                                                                   for s in samples]
    zcat = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True)
    assert zcat.stdout.decode().splitlines() == lines


def _watch_record(path: str) -> str:
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.002, name="churn-w") as churner:
        wait_until(lambda: churner.ok >= 50, 30, "churn to start")
        code = "import sys; from gui.launcher import main; sys.exit(main())"
        result = subprocess.run([sys.executable, "-c", code, "watch", "--count", "4", "--interval", "0.2",
                                 "--json", "--record", path], capture_output=True, text=True, cwd=ROOT,
                                timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout


BOTH_NAMES = pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])


@requires_netns
@BOTH_NAMES
def test_watch_record_writes_what_watch_json_prints(tmp_path, name):
    path = tmp_path / name
    stdout = run_in_netns(_watch_record, str(path), sysctls=NARROW)
    printed = [json.loads(line) for line in stdout.splitlines()]
    recording = load_recording(path)
    assert len(recording) == len(printed) == 4
    for i, obj in enumerate(printed):
        assert contract(recording.samples[i].to_json()) == contract(obj)
    assert any(p["name"] == "churn-w" for obj in printed for p in obj["processes"])
    # The encoding follows the name: gzip for *.gz, text that `tail | json.tool` reads otherwise.
    assert path.read_bytes().startswith(b"\x1f\x8b") == name.endswith(".gz")
    if not name.endswith(".gz"):
        tail = subprocess.run(f"tail -n1 {path} | {sys.executable} -m json.tool", shell=True,
                              capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(tail.stdout)["time"] == printed[-1]["time"]


# -- crashes, cuts and garbage ----------------------------------------------------------------

def _record_until_killed(path: str, reference: str, counter: object) -> None:
    """Child: record real samples as fast as the sampler goes; after each append, note
    the sample in a plain reference file (so the parent knows what was handed over)."""
    from core.sampler import Sampler

    sampler = Sampler()
    recorder = Recorder(path)
    with open(reference, "a") as ref:
        ref.write("# session\n")
        ref.flush()
        while True:
            sample = sampler.sample()
            recorder.append(sample)
            ref.write(json.dumps(sample.to_json(top=RECORD_TOP)) + "\n")
            ref.flush()
            counter.value += 1  # type: ignore[attr-defined]


def _kill_recorders(path: str, reference: str, rounds: int) -> None:
    """Start a recording child under churn, SIGKILL it mid-run; `rounds` times, appending
    to the same file (a crashed recording is reopened and appended to)."""
    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.002, name="churn-k") as churner:
        wait_until(lambda: churner.ok >= 50, 30, "churn to start")
        rng = random.Random(11)
        fork = multiprocessing.get_context("fork")
        for _ in range(rounds):
            counter = fork.Value("q", 0, lock=False)
            child = fork.Process(target=_record_until_killed, args=(path, reference, counter))
            child.start()
            target = rng.randint(5, 25)
            wait_until(lambda c=counter, t=target: c.value >= t, 60, f"{target} samples recorded")
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
            assert child.exitcode == -signal.SIGKILL


@requires_netns
@BOTH_NAMES
def test_sigkill_mid_run_loses_at_most_the_last_sample(tmp_path, name):
    path, reference = tmp_path / name, tmp_path / "reference.txt"
    run_in_netns(_kill_recorders, str(path), str(reference), 3, sysctls=NARROW)
    sessions: list[list[dict]] = []
    for line in reference.read_text().splitlines():
        if line == "# session":
            sessions.append([])
        elif line.endswith("}"):  # the kill may cut the reference file's last line too
            sessions[-1].append(json.loads(line))
    recording = load_recording(path)
    assert len(recording.headers) == len(sessions) == 3  # each session cut off by a kill
    replayed = {recording.samples[i].time_iso: recording.samples[i].to_json() for i in range(len(recording))}
    for noted in sessions:
        assert len(noted) >= 5
        missing = [obj["time"] for obj in noted if obj["time"] not in replayed]
        # Only the sample being written when the kill landed may be lost.
        assert missing in ([], [noted[-1]["time"]]), missing
        for obj in noted:
            if obj["time"] in replayed:
                assert replayed[obj["time"]] == obj
    # At most one more per session: appended and written, not yet noted in the reference.
    assert len(recording) <= sum(map(len, sessions)) + 3
    assert recording.truncated_lines <= 3
    assert all("\n" not in w for w in recording.warnings)


def test_every_cut_of_the_file_still_loads_its_complete_lines(recorded):
    """A power loss can cut the file anywhere: whatever is left loads, holding every
    sample whose line was complete, in order and exact."""
    path, samples = recorded
    raw = path.read_bytes()
    expected = [s.to_json(top=RECORD_TOP) for s in samples]
    rng = random.Random(5)
    start = len(MEMBER_HEADER)
    # Random cuts, plus one inside the last line (random ones can all miss it: lines differ in size).
    cuts = sorted({start + 200, len(raw) - 1, *(rng.randrange(start, len(raw)) for _ in range(30))})
    previous = 0
    for cut in cuts:
        cut_file = path.with_name(f"cut-{cut}.gz")
        cut_file.write_bytes(raw[:cut])
        try:
            recording = load_recording(cut_file)
        except RecordingError as exc:
            assert "no samples" in str(exc)  # cut inside the header line's session start
            continue
        n = len(recording)
        assert n >= previous  # a longer prefix never loads fewer samples
        previous = n
        assert [recording.samples[i].to_json() for i in range(n)] == expected[:n]
        assert recording.truncated_lines <= 1
    assert previous >= len(samples) - 1


def test_zero_filled_tail_and_garbage_between_sessions(recorded, tmp_path):
    path, samples = recorded
    raw = path.read_bytes()
    damaged = tmp_path / "damaged.gz"
    # ext4 after a power loss can leave the size grown and the tail zero-filled; then a
    # later session appended; and junk between sessions.
    damaged.write_bytes(raw[:-40] + bytes(300) + raw + b"junk that is not a recording\n" + raw)
    recording = load_recording(damaged)
    n = len(samples)
    assert 3 * n - 2 <= len(recording) <= 3 * n
    assert len(recording.headers) == 3
    assert any("damaged" in w for w in recording.warnings)
    assert any("not part of a recording" in w for w in recording.warnings)
    assert recording.samples[len(recording) - 1].to_json() == samples[-1].to_json(top=RECORD_TOP)


def test_plain_json_lines_with_garbage_and_a_cut_last_line(recorded, tmp_path):
    """`watch --json > FILE` output loads too; bad lines are skipped and counted."""
    _, samples = recorded
    lines = [json.dumps(s.to_json()) for s in samples]
    good = lines[:4] + ["not json at all", "{}", '{"time": "yesterday"}', "[1, 2, 3]", "\x00\x01binary"] \
        + lines[4:8] + ["", "   "] + [lines[8][: len(lines[8]) // 2]]
    plain = tmp_path / "watch.jsonl"
    plain.write_text("\n".join(good))  # the last line is cut and has no newline
    recording = load_recording(plain)
    assert len(recording) == 8
    assert recording.skipped_lines == 5 and recording.truncated_lines == 1
    assert len(recording.warnings) == 2 and all("\n" not in w for w in recording.warnings)
    assert [recording.samples[i].to_json() for i in range(8)] == [s.to_json() for s in samples[:8]]
    assert recording.headers == ()
    # A hand-edited line that still feeds the plot but not the tables: a one-line error
    # when that moment is shown, never a crash of the loader.
    broken = json.loads(lines[0])
    broken["processes"] = [{"pid": "not a pid"}]
    plain.write_text("\n".join([json.dumps(broken)] + lines[1:3]) + "\n")
    recording = load_recording(plain)
    assert len(recording) == 3 and recording.samples[1].to_json() == samples[1].to_json()
    with pytest.raises(RecordingError, match="sample 0 of the recording cannot be read"):
        recording.samples[0]
    # A complete last line without its newline is a sample, not a cut.
    plain.write_text("\n".join(lines[:3]))
    assert len(load_recording(plain)) == 3


def test_samples_out_of_time_order_are_shown_in_time_order(recorded, tmp_path):
    _, samples = recorded
    lines = [json.dumps(s.to_json()) for s in samples]
    shuffled = tmp_path / "clock.jsonl"
    shuffled.write_text("\n".join(lines[6:] + lines[:6]) + "\n")
    recording = load_recording(shuffled)
    assert [recording.samples[i].time_iso for i in range(len(recording))] == [s.time_iso for s in samples]
    assert list(recording.times) == sorted(recording.times)
    assert any("clock went backwards" in w for w in recording.warnings)


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"),
    (b"\n\n", "is empty"),
    (b"hello\nworld\n", "not a PortPressure recording"),
    (b'{"portpressure_recording": 1, "version": "0.1.0"}\n', "holds no samples"),
    (gzip.compress(b"just some text\n"), "not a PortPressure recording"),
])
def test_files_without_samples_are_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=needle) as info:
        load_recording(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_folder_are_one_line_errors(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        load_recording(tmp_path / "nope.gz")
    with pytest.raises(RecordingError, match="is a folder"):
        load_recording(tmp_path)


# -- writing: refusals, rotation, disk full -----------------------------------------------------

def test_recorder_refuses_bad_targets_and_never_touches_a_foreign_file(tmp_path):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes\n")
    with pytest.raises(RecordingError, match="not a PortPressure recording"):
        Recorder(foreign)
    assert foreign.read_text() == "my notes\n"
    with pytest.raises(RecordingError, match="is a folder"):
        Recorder(tmp_path)
    with pytest.raises(RecordingError, match="does not exist"):
        Recorder(tmp_path / "missing" / "rec.gz")


def _noisy(sample: Sample, i: int, rng: random.Random, size: int = 1500) -> Sample:
    """A real sample with an incompressible reason, so a few lines fill a small disk."""
    noise = f"{rng.getrandbits(size * 4):x}"
    return dataclasses.replace(sample, time_iso=f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}.000+00:00",
                               verdict=Verdict(sample.verdict.level, sample.verdict.title, (noise,)))


def test_a_plain_name_records_plain_lines_readable_while_recording(recorded, tmp_path):
    """`rec.jsonl` is text: every appended sample is a complete line on disk at once (what
    `tail -f` shows), and a session cut off mid-line by a crash is continued cleanly."""
    _, samples = recorded
    path = tmp_path / "rec.jsonl"
    recorder = Recorder(path)
    for sample in samples[:3]:
        recorder.append(sample)
    assert recorder.flush(10)
    lines = path.read_text().splitlines()  # still recording
    assert "portpressure_recording" in json.loads(lines[0])
    assert [json.loads(line)["time"] for line in lines[1:]] == [s.time_iso for s in samples[:3]]
    recorder.close()
    with open(path, "a") as crashed:  # what a crash mid-write leaves
        crashed.write(json.dumps(samples[3].to_json())[:100])
    with Recorder(path) as again:
        for sample in samples[4:6]:
            again.append(sample)
    recording = load_recording(path)
    assert [recording.samples[i].time_iso for i in range(len(recording))] == \
        [s.time_iso for s in samples[:3] + samples[4:6]]
    assert len(recording.headers) == 2 and recording.skipped_lines == 1


def test_the_name_and_the_content_must_agree_to_append(recorded, tmp_path):
    _, samples = recorded
    compressed = tmp_path / "rec.jsonl.gz"
    with Recorder(compressed) as recorder:
        recorder.append(samples[0])
    misnamed = tmp_path / "rec.jsonl"
    misnamed.write_bytes(compressed.read_bytes())
    with pytest.raises(RecordingError, match=r"name it \*\.gz"):
        Recorder(misnamed)
    plain = tmp_path / "plain.gz"
    plain.write_text(json.dumps(samples[0].to_json()) + "\n")
    with pytest.raises(RecordingError, match="not a compressed PortPressure recording"):
        Recorder(plain)
    watch_output = tmp_path / "watch.jsonl"  # `watch --json > FILE` can be recorded onto
    watch_output.write_text(json.dumps(samples[0].to_json()) + "\n")
    with Recorder(watch_output) as recorder:
        recorder.append(samples[1])
    assert len(load_recording(watch_output)) == 2


def test_rotation_keeps_the_newest_files_and_each_loads(recorded, tmp_path):
    _, samples = recorded
    path = tmp_path / "rot.jsonl.gz"
    rng = random.Random(3)
    recorder = Recorder(path, max_bytes=8_000, keep=2, durable=False)
    written = [_noisy(samples[i % len(samples)], i, rng) for i in range(40)]
    for sample in written:
        recorder.append(sample)
    recorder.close()
    assert recorder.error is None and recorder.rotations >= 3
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rot.jsonl.gz", "rot.jsonl.gz.1", "rot.jsonl.gz.2"]
    loaded = []
    for name in reversed(names):  # oldest first
        recording = load_recording(tmp_path / name)
        assert recording.warnings == ()
        loaded += [recording.samples[i].to_json() for i in range(len(recording))]
    # The newest samples, contiguous and exact; older ones were dropped with FILE.3.
    assert loaded == [s.to_json(top=RECORD_TOP) for s in written[len(written) - len(loaded):]]


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at `path` (e.g. "size=64k" for a disk that fills up, "ro" for a
    folder even root cannot write: root ignores permission bits); skips the test where
    mounting is not permitted."""
    if not sys.platform.startswith("linux"):
        pytest.skip("a tmpfs mount (read-only or full disk) is Linux's")
    path.mkdir(exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    with tmpfs(tmp_path / "tiny", "size=64k") as mount_point:
        yield mount_point


@BOTH_NAMES
def test_disk_full_stops_cleanly_and_the_file_still_loads(recorded, tiny_disk, name):
    _, samples = recorded
    path = tiny_disk / f"full-{name}"
    recorder = Recorder(path)
    rng = random.Random(9)
    appended = 0
    while recorder.error is None and appended < 500:
        recorder.append(_noisy(samples[appended % len(samples)], appended, rng, size=3000))
        appended += 1
        recorder.flush(10)
    recorder.close()
    assert recorder.error is not None, "64 KB should have filled up"
    assert "disk is full" in recorder.error and "recording stopped" in recorder.error
    assert "\n" not in recorder.error
    recorder.append(samples[0])  # after the error: ignored, never raises
    recording = load_recording(path)
    assert len(recording) == recorder.samples_written > 5
    assert recording.truncated_lines == 0  # the failed write was cut back: no half line
    # A full disk at the start is refused at once, and no empty file is left behind.
    filler = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while os.write(filler, b"\xff" * 512):
            pass
    os.close(filler)
    with pytest.raises(RecordingError, match="disk is full"):
        Recorder(tiny_disk / f"second-{name}")
    assert not (tiny_disk / f"second-{name}").exists()


def test_recording_header_carries_the_port_config(tmp_path, recorded):
    _, samples = recorded
    config = PortConfig("Windows", (49152, 65535), excluded=((50000, 50099),), time_wait_seconds=120.0,
                        pool_scope="per_local_address", notes=("read from netsh",))
    path = tmp_path / "cfg.jsonl.gz"
    with Recorder(path, port_config=config, source="test") as recorder:
        recorder.append(samples[0])
    recording = load_recording(path)
    assert recording.port_config == config
    assert recording.header is not None and recording.header["source"] == "test"
