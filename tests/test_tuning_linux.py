"""The Linux sysctl backend for real: every test body runs in a private network
namespace, where net.ipv4.* sysctls belong to that namespace alone, and writes the
real /proc/sys files through core.tuning.linux."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
from pathlib import Path

import psutil
import pytest

from core import __version__
from core.tuning.backups import BACKUP_DIR_ENV, default_backup_dir, load_backup
from core.tuning.base import JSON_KEYS, TuningError, TuningInputError, TuningPermissionError
from core.tuning.linux import FIN_TIMEOUT, PORT_RANGE, TW_REUSE, LinuxSysctlBackend
from tests.support.netns import requires_netns, run_in_netns

NARROW = {"net.ipv4.ip_local_port_range": "40000 40019", "net.ipv4.tcp_tw_reuse": "0"}


def _sysctl(name: str) -> str:
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return " ".join(f.read().split())


def _backups(folder: str) -> list[str]:
    return sorted(p.name for p in Path(folder).glob("*.json")) if Path(folder).exists() else []


# -- set, read back, backup, revert -----------------------------------------------------------
def _set_and_revert_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    before = backend.read(TW_REUSE)
    plan = backend.plan(TW_REUSE, backend.validate(TW_REUSE, "1"))
    applied = backend.apply(plan)
    after_set = _sysctl(TW_REUSE)
    backup_json = json.loads(applied.backup.read_text())
    reverted = backend.revert(applied.backup)
    return {"before": before, "plan": plan, "applied": applied, "after_set": after_set,
            "backup_json": backup_json, "reverted": reverted, "after_revert": _sysctl(TW_REUSE),
            "backups": _backups(folder)}


@requires_netns
@pytest.mark.netns
def test_tw_reuse_set_read_back_backup_and_revert(tmp_path: Path) -> None:
    r = run_in_netns(_set_and_revert_body, str(tmp_path), sysctls=NARROW)
    assert r["before"].value == 0 and r["before"].writable and r["before"].why_not is None
    assert r["plan"].location == "/proc/sys/net/ipv4/tcp_tw_reuse"
    assert (r["plan"].old_value, r["plan"].new_value, r["plan"].needs_reboot) == (0, 1, False)
    assert "sysctl -w net.ipv4.tcp_tw_reuse=1" in r["plan"].describe()
    assert "/etc/sysctl.d/" in r["plan"].describe()
    # Read back from the kernel, both by the backend and by us.
    assert r["after_set"] == "1"
    assert r["applied"].state.value == 1 and r["applied"].state.effective == 1
    # The backup's content.
    b = r["backup_json"]
    assert b["setting"] == TW_REUSE and b["old_value"] == 0 and b["new_value"] == 1
    assert b["host"] == socket.gethostname() and b["os"] == "Linux" and b["tool_version"] == __version__
    assert b["location"] == "/proc/sys/net/ipv4/tcp_tw_reuse"
    assert abs(b["boot_time"] - psutil.boot_time()) < 5
    assert b["time"][:4].isdigit() and ("+" in b["time"][19:] or "-" in b["time"][19:])
    # Revert restored the kernel's value, and was itself backed up (so it can be redone).
    assert r["after_revert"] == "0"
    assert r["reverted"].plan.reverts == r["applied"].backup
    assert len(r["backups"]) == 2
    second = json.loads((tmp_path / r["backups"][1]).read_text())
    assert (second["old_value"], second["new_value"]) == (1, 0)


def _range_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    applied = backend.apply(backend.plan(PORT_RANGE, backend.validate(PORT_RANGE, "40000 40999")))
    widened = _sysctl(PORT_RANGE)
    # Undo restores the 20-port range although a new value that small would be refused.
    backend.revert(applied.backup, setting=PORT_RANGE)
    return {"widened": widened, "restored": _sysctl(PORT_RANGE), "state": applied.state,
            "backup": load_backup(applied.backup)}


@requires_netns
@pytest.mark.netns
def test_port_range_set_and_revert_to_a_range_below_the_minimum(tmp_path: Path) -> None:
    r = run_in_netns(_range_body, str(tmp_path), sysctls=NARROW)
    assert r["widened"] == "40000 40999"
    assert r["state"].value == (40000, 40999)
    assert r["backup"].old_value == (40000, 40019) and r["backup"].new_value == (40000, 40999)
    assert r["restored"] == "40000 40019"


# -- refusals ----------------------------------------------------------------------------------
BAD_INPUTS = [
    (TW_REUSE, "3"), (TW_REUSE, "-1"), (TW_REUSE, "on"), (TW_REUSE, ""), (TW_REUSE, "1 2"),
    (PORT_RANGE, "50000 40000"),  # low > high
    (PORT_RANGE, "40000 40100"),  # 101 ports, below the 255 minimum
    (PORT_RANGE, "1000 2000"),  # below the unprivileged ports
    (PORT_RANGE, "40000 70000"), (PORT_RANGE, "0 100"), (PORT_RANGE, "40000"),
    (PORT_RANGE, "garbage"), (PORT_RANGE, "40000 40999 41000"), (PORT_RANGE, "4e4 5e4"),
    (FIN_TIMEOUT, "30"),  # shown only
    ("net.ipv4.tcp_fin_timeoutx", "1"), ("TcpTimedWaitDelay", "30"),  # unknown names
]


def _refusal_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    errors = {}
    for name, text in BAD_INPUTS:
        try:
            backend.validate(name, text)
        except TuningInputError as exc:
            errors[f"{name}={text}"] = str(exc)
    return {"errors": errors, "range": _sysctl(PORT_RANGE), "reuse": _sysctl(TW_REUSE),
            "backups": _backups(folder), "folder_exists": Path(folder).exists()}


@requires_netns
@pytest.mark.netns
def test_invalid_values_are_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    r = run_in_netns(_refusal_body, str(folder), sysctls=NARROW)
    assert set(r["errors"]) == {f"{n}={t}" for n, t in BAD_INPUTS}, "every bad input must be refused"
    for key, message in r["errors"].items():
        assert "\n" not in message and message, key
    assert "above the last" in r["errors"][f"{PORT_RANGE}=50000 40000"]
    assert "at least 255" in r["errors"][f"{PORT_RANGE}=40000 40100"]
    assert "at least 1024" in r["errors"][f"{PORT_RANGE}=1000 2000"]
    assert "does NOT shorten TIME_WAIT" in r["errors"][f"{FIN_TIMEOUT}=30"]
    unknown = r["errors"]["TcpTimedWaitDelay=30"]
    assert "unknown setting" in unknown and PORT_RANGE in unknown and TW_REUSE in unknown
    assert (r["range"], r["reuse"]) == ("40000 40019", "0")
    assert r["backups"] == [] and not r["folder_exists"]


def _kernel_floor_body(folder: str) -> dict:
    # The kernel refuses a first port below ip_unprivileged_port_start; so do we, in advance.
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
        f.write("2000")
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    try:
        backend.validate(PORT_RANGE, "1500 3000")
    except TuningInputError as exc:
        return {"error": str(exc), "range_text": backend.read(PORT_RANGE).range}
    return {"error": None}


@requires_netns
@pytest.mark.netns
def test_first_port_floor_follows_ip_unprivileged_port_start(tmp_path: Path) -> None:
    r = run_in_netns(_kernel_floor_body, str(tmp_path), sysctls=NARROW)
    assert r["error"] and "at least 2000" in r["error"]
    assert r["range_text"].startswith("LOW HIGH: 2000-65535")


def _parity_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    same = backend.plan(PORT_RANGE, backend.validate(PORT_RANGE, "40000 40998"))
    different = backend.plan(PORT_RANGE, backend.validate(PORT_RANGE, "40000-40999"))
    return {"same": same.warnings, "different": different.warnings}


@requires_netns
@pytest.mark.netns
def test_same_parity_range_is_allowed_with_a_warning(tmp_path: Path) -> None:
    r = run_in_netns(_parity_body, str(tmp_path), sysctls=NARROW)
    assert any("parity" in w for w in r["same"])
    assert not any("parity" in w for w in r["different"])


def _stale_plan_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    plan = backend.plan(TW_REUSE, 1)
    with open("/proc/sys/net/ipv4/tcp_tw_reuse", "w") as f:
        f.write("2")  # someone else changes it while the dialog is open
    try:
        backend.apply(plan)
    except TuningError as exc:
        return {"error": str(exc), "reuse": _sysctl(TW_REUSE), "backups": _backups(folder)}
    return {"error": None}


@requires_netns
@pytest.mark.netns
def test_a_plan_made_before_someone_else_changed_the_value_is_refused(tmp_path: Path) -> None:
    r = run_in_netns(_stale_plan_body, str(tmp_path), sysctls=NARROW)
    assert r["error"] and "changed since the plan" in r["error"]
    assert r["reuse"] == "2" and r["backups"] == []


def _as_nobody(folder: str, conn) -> None:
    os.setgid(65534)
    os.setuid(65534)
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    state = backend.read(TW_REUSE)
    plan = backend.plan(TW_REUSE, 1)
    try:
        backend.apply(plan)
        error = None
    except TuningPermissionError as exc:
        error = str(exc)
    conn.send({"state": state, "blocked": plan.blocked, "error": error})


def _non_root_body(folder: str) -> dict:
    parent, child = multiprocessing.get_context("fork").Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_as_nobody, args=(folder, child))
    proc.start()
    result = parent.recv()
    proc.join(10)
    result["reuse"] = _sysctl(TW_REUSE)
    result["backups"] = _backups(folder)
    return result


@requires_netns
@pytest.mark.netns
def test_not_root_shows_the_exact_sysctl_command_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    r = run_in_netns(_non_root_body, str(folder), sysctls=NARROW)
    state = r["state"]
    assert state.value == 0 and not state.writable
    assert "uid 65534" in state.why_not and "sudo sysctl -w net.ipv4.tcp_tw_reuse=VALUE" in state.why_not
    assert "sudo sysctl -w net.ipv4.tcp_tw_reuse=1" in r["blocked"]
    assert r["error"] == r["blocked"]
    assert r["reuse"] == "0" and r["backups"] == []


def _read_all_body(folder: str) -> list:
    return list(LinuxSysctlBackend(backup_dir=Path(folder)).read_all())


@requires_netns
@pytest.mark.netns
def test_show_rows_have_exactly_the_contract_keys_and_fin_timeout_is_read_only(tmp_path: Path) -> None:
    states = run_in_netns(_read_all_body, str(tmp_path), sysctls=NARROW)
    assert [s.name for s in states] == [PORT_RANGE, TW_REUSE, FIN_TIMEOUT]
    for state in states:
        assert tuple(state.to_json()) == JSON_KEYS
        json.dumps(state.to_json())
    port_range, reuse, fin = states
    assert port_range.to_json()["value"] == [40000, 40019] and port_range.default == (32768, 60999)
    assert reuse.value == 0 and reuse.default == 2 and reuse.needs_reboot is False
    assert not fin.writable and "does NOT shorten TIME_WAIT" in fin.why_not
    assert any("does NOT shorten TIME_WAIT" in note and "60 s" in note for note in fin.notes)
    assert any("network namespace" in note for note in reuse.notes)


# -- revert refusals ---------------------------------------------------------------------------
def _write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _revert_refusal_body(folder: str) -> dict:
    backend = LinuxSysctlBackend(backup_dir=Path(folder))
    good = backend.apply(backend.plan(TW_REUSE, 1)).backup
    record = json.loads(good.read_text())
    cases = {
        "other_host": _write(Path(folder) / "x-other-host.json", {**record, "host": "other-host"}),
        "other_os": _write(Path(folder) / "x-other-os.json", {**record, "os": "Windows"}),
        "shown_only_setting": _write(Path(folder) / "x-fin.json", {**record, "setting": FIN_TIMEOUT}),
        "unknown_setting": _write(Path(folder) / "x-unknown.json",
                                  {**record, "setting": "TcpTimedWaitDelay"}),
        "malformed": _write(Path(folder) / "x-malformed.json", "{not json"),
        "missing_fields": _write(Path(folder) / "x-missing.json", {"setting": TW_REUSE}),
        "bad_value": _write(Path(folder) / "x-bad-value.json", {**record, "old_value": "zero"}),
        "impossible_value": _write(Path(folder) / "x-impossible.json", {**record, "old_value": 7}),
        "bad_time": _write(Path(folder) / "x-bad-time.json", {**record, "time": "yesterday"}),
        "no_file": Path(folder) / "does-not-exist.json",
    }
    errors = {}
    for case, path in cases.items():
        try:
            backend.plan_revert(path)
        except TuningInputError as exc:
            errors[case] = str(exc)
    try:
        backend.plan_revert(good, setting=PORT_RANGE)
    except TuningInputError as exc:
        errors["asked_for_another_setting"] = str(exc)
    return {"errors": errors, "cases": list(cases), "reuse": _sysctl(TW_REUSE)}


@requires_netns
@pytest.mark.netns
def test_revert_refuses_another_hosts_or_settings_backup_and_malformed_files(tmp_path: Path) -> None:
    r = run_in_netns(_revert_refusal_body, str(tmp_path), sysctls=NARROW)
    assert set(r["errors"]) == set(r["cases"]) | {"asked_for_another_setting"}
    for message in r["errors"].values():
        assert "\n" not in message
    assert "other-host" in r["errors"]["other_host"] and socket.gethostname() in r["errors"]["other_host"]
    assert "not of net.ipv4.ip_local_port_range" in r["errors"]["asked_for_another_setting"]
    assert "not JSON" in r["errors"]["malformed"]
    assert r["reuse"] == "1"  # still what the good change set: no refusal wrote anything


# -- backup folder -------------------------------------------------------------------------------
def test_backup_folder_is_per_user_and_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(BACKUP_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_backup_dir() == tmp_path / "state" / "portpressure" / "backups"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_backup_dir() == tmp_path / "home" / ".local" / "state" / "portpressure" / "backups"
    monkeypatch.setenv(BACKUP_DIR_ENV, str(tmp_path / "elsewhere"))
    assert default_backup_dir() == tmp_path / "elsewhere"


class _RefusingWrites(LinuxSysctlBackend):
    """The OS refusing a write that passed every check (e.g. a kernel with stricter rules)."""

    def _write(self, name, value):
        raise OSError(22, "Invalid argument")


def test_a_refused_write_changes_nothing_and_leaves_no_backup(tmp_path: Path) -> None:
    sys_dir = tmp_path / "sys" / "net" / "ipv4"
    sys_dir.mkdir(parents=True)
    (sys_dir / "tcp_tw_reuse").write_text("0\n")
    backend = _RefusingWrites(proc_sys=tmp_path / "sys", backup_dir=tmp_path / "b", euid=lambda: 0)
    with pytest.raises(TuningError, match=r"refused 1 .*Invalid argument.*nothing was changed"):
        backend.apply(backend.plan(TW_REUSE, 1))
    assert list((tmp_path / "b").glob("*.json")) == []
    assert (sys_dir / "tcp_tw_reuse").read_text() == "0\n"
