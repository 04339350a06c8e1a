"""`portpressure serve`: the same facts as `watch --json`, a read-only HTTP side on
loopback, an atomic textfile, and one-line errors for bad input."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import MAX_TOP, sample_families
from tests.support.netns import requires_netns, run_in_netns, wait_until
from tests.support.prometheus import (
    PROMTOOL,
    http_get,
    requires_promtool,
    scrape_when_ready,
    start_serve,
    stop,
)
from tests.support.traffic import Churner, Listener
from tests.test_watch_cli import portpressure

NARROW = "40000 40099"
TOP = 10


def values(exposition: str) -> dict[tuple[str, frozenset], float]:
    """{(series name, labels): value} of a text exposition, parsed by prometheus_client."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def series(metric: str, **labels: str) -> tuple[str, frozenset]:
    return ("portpressure_" + metric, frozenset(labels.items()))


def _exhausted_sample_body() -> dict:
    from core.commands.watch import sample_json
    from core.judgement import JudgedSampler
    from core.metrics import exposition
    from core.sampler import Sampler

    with Listener("127.0.0.1", 9000), Churner("127.0.0.1", 9000, hold_s=0.02, name="churner") as churner:
        wait_until(lambda: churner.addr_not_avail > 0, 30, "the churner to hit EADDRNOTAVAIL")
        sampler = JudgedSampler(Sampler())  # judged as watch and serve judge it
        try:
            taken: dict = {}

            def critical() -> bool:
                taken["sample"] = sampler.sample()
                s = taken["sample"]
                named = bool(s.processes) and s.processes[0].pid == churner.pid
                return s.verdict.level == "critical" and named

            wait_until(critical, 20, "a critical sample naming the churner", poll=0.2)
        finally:
            sampler.close()
        doc = sample_json(taken["sample"], TOP)
        return {"doc": doc, "exposition": exposition(sample_families(doc, TOP)).decode(),
                "churner_pid": churner.pid}


@pytest.fixture(scope="module")
def exhausted() -> dict:
    return run_in_netns(_exhausted_sample_body, sysctls={"net.ipv4.ip_local_port_range": NARROW,
                                                         "net.ipv4.tcp_tw_reuse": "0"})


def assert_same_figures(doc: dict, found: dict) -> None:
    """Every figure of the `watch --json` object is in the exposition, unchanged."""
    for state, count in doc["states"].items():
        assert found[series("sockets", state=state.lower())] == count
    ports = doc["ports"]
    assert found[series("pool_ports_in_use", pool=ports["pool"])] == ports["in_use"]
    assert found[series("pool_ports_capacity", pool=ports["pool"])] == ports["capacity"]
    assert found[series("pool_pressure_ratio", pool=ports["pool"])] == ports["pressure"]
    assert found[series("pressure_ratio")] == ports["pressure"]
    assert found[series("range_ports_capacity")] == ports.get("range_capacity", ports["capacity"])
    assert [found[series("range_first_port")], found[series("range_last_port")]] == ports["range"]
    eta = doc["forecast"]["seconds_to_exhaustion"]
    assert found[series("seconds_to_exhaustion")] == (math.inf if eta is None else eta)
    assert found[series("steady_state_time_wait")] == doc["forecast"]["steady_state_time_wait"]
    for key, value in doc["rates"].items():
        assert found[series(key.removesuffix("_per_s") + "_per_second")] == value
    assert found[series("verdict_level")] == {"ok": 0, "warning": 1, "critical": 2}[doc["verdict"]["level"]]
    assert found[series("sample_duration_seconds")] == pytest.approx(doc["sample_ms"] / 1000.0)
    assert found[series("time_wait_unattributed")] == doc["time_wait_unattributed"]
    for row in doc["processes"]:
        who = {"pid": str(row["pid"]), "name": row["name"]}
        assert found[series("process_time_wait", **who)] == row["time_wait"]
        assert found[series("process_time_wait_exact", **who)] == row["time_wait_exact"]
        assert found[series("process_connections", **who)] == row["connections"]
        assert found[series("process_opens_per_second", **who)] == row["opens_per_s"]
        for state, count in row["states"].items():
            assert found[series("process_sockets", **who, state=state.lower())] == count
    for row in doc["remotes"]:
        remote = f"{row['address']}:{row['port']}"
        assert found[series("remote_time_wait", remote=remote)] == row["time_wait"]
        assert found[series("remote_connections", remote=remote)] == row["connections"]


@requires_netns
def test_one_sample_gives_the_same_figures_in_the_json_and_the_exposition(exhausted):
    doc = exhausted["doc"]
    assert doc["verdict"]["level"] == "critical" and doc["processes"][0]["time_wait"] > 0
    found = values(exhausted["exposition"])
    assert_same_figures(doc, found)
    assert found[series("verdict_level")] == 2
    top = max((k for k in found if k[0] == "portpressure_process_time_wait"), key=found.__getitem__)
    assert dict(top[1]) == {"pid": str(exhausted["churner_pid"]), "name": "churner"}


@requires_netns
def test_keys_added_to_the_json_are_exported_when_present(exhausted):
    doc = copy.deepcopy(exhausted["doc"])
    assert "portpressure_range_ports_in_use" not in exhausted["exposition"] or "range_in_use" in doc["ports"]
    doc["ports"].update(range_in_use=97, range_capacity=100, range_pressure=0.97)
    doc["processes"][0].update(exited=True, instances=3, parent={"pid": 1, "name": "cron"})
    doc["limits"] = ["not root: other users' socket owners hidden"]
    doc["events"] = [{"time": doc["time"], "kind": "probe", "text": "failed"}]
    doc["downstream"] = {"level": "warning"}
    found = values(_render(doc))
    assert_same_figures(doc, found)
    top = {"pid": str(doc["processes"][0]["pid"]), "name": doc["processes"][0]["name"]}
    assert found[series("range_ports_in_use")] == 97
    assert found[series("range_pressure_ratio")] == 0.97
    assert found[series("process_exited", **top)] == 1
    assert found[series("process_instances", **top)] == 3
    assert found[series("process_parent_info", **top, parent_pid="1", parent_name="cron")] == 1
    assert found[series("limit_info", limit="not root: other users' socket owners hidden")] == 1
    assert found[series("downstream_verdict_level")] == 1


def _render(doc: dict, top: int = TOP) -> str:
    from core.metrics import exposition

    return exposition(sample_families(doc, top)).decode()


@requires_netns
def test_top_bounds_the_process_and_remote_series(exhausted):
    doc = copy.deepcopy(exhausted["doc"])
    row = doc["processes"][0]
    doc["processes"] = [dict(row, pid=row["pid"] + i) for i in range(MAX_TOP + 20)]
    found = values(_render(doc, top=3))
    assert sum(1 for k in found if k[0] == "portpressure_process_time_wait") == 3
    found = values(_render(doc, top=10_000))
    assert sum(1 for k in found if k[0] == "portpressure_process_time_wait") == MAX_TOP


@requires_netns
@requires_promtool
def test_the_exposition_passes_promtool_check_metrics(exhausted):
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=exhausted["exposition"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def _http_body(log: Path) -> dict:
    # A second address on this namespace's loopback: the default listen must not answer on it.
    subprocess.run(["ip", "addr", "add", "10.250.0.1/32", "dev", "lo"], check=True)
    serve = start_serve("--interval", "3600", log=log)  # one sample for the whole test
    try:
        url = "http://127.0.0.1:9466"
        first = scrape_when_ready(url + "/metrics", serve)
        scrapes = [http_get(url + "/metrics") for _ in range(20)]
        answers = {
            "index": http_get(url + "/"),
            "head": http_get(url + "/metrics", method="HEAD"),
            "other_path": http_get(url + "/metrics/../admin"),
            "favicon": http_get(url + "/favicon.ico"),
            **{method: http_get(url + "/metrics", method=method) for method in ("POST", "PUT", "DELETE")},
        }
        try:
            http_get("http://10.250.0.1:9466/metrics", timeout=2.0)
            wide = "answered"
        except OSError as exc:
            wide = type(exc).__name__ + str(exc)
    finally:
        stop(serve)
    return {"first": first, "scrapes": scrapes, "answers": answers, "wide": wide, "exit": serve.returncode}


@requires_netns
def test_http_serves_only_get_on_metrics_and_the_index_on_loopback(tmp_path):
    result = run_in_netns(_http_body, tmp_path / "serve.log")
    first = result["first"]
    for status, headers, body in result["scrapes"]:
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        # The pre-rendered sample, not a new one: a scrape never waits on the kernel.
        assert body == first
    assert values(first.decode())[series("samples_total")] == 1
    answers = result["answers"]
    assert answers["index"][0] == 200 and b'href="/metrics"' in answers["index"][2]
    assert answers["head"][0] == 200 and answers["head"][2] == b""
    assert answers["other_path"][0] == 404 and answers["favicon"][0] == 404
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = answers[method]
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert result["wide"] != "answered" and "refused" in result["wide"].lower()
    assert result["exit"] == 0, (tmp_path / "serve.log").read_text()


def test_textfile_is_replaced_atomically_and_always_whole(tmp_path):
    target = tmp_path / "portpressure.prom"
    serve = start_serve("--textfile", str(target), "--interval", "0.05", "--count", "40",
                        log=tmp_path / "log")
    reads = 0
    try:
        deadline = time.monotonic() + 60
        while serve.poll() is None and time.monotonic() < deadline:
            if target.exists():
                try:
                    text = target.read_text()
                except PermissionError:
                    # Windows: opening a file while it is being replaced is a sharing
                    # violation for that moment (never a partial file); read again.
                    if sys.platform != "win32":
                        raise
                    continue
                # Readers see an old file or a new one, never a half-written one.
                assert text.endswith("\n") and "portpressure_samples_total" in text, text[-200:]
                reads += 1
    finally:
        stop(serve)
    assert serve.returncode == 0, (tmp_path / "log").read_text()
    assert reads > 0
    written = values(target.read_text())[series("samples_total")]
    # POSIX rename replaces a file that is open; Windows refuses while our reader holds it
    # (the exporter says so and writes again at the next sample).
    assert written == 40 or (sys.platform == "win32" and 1 <= written <= 40)
    assert sorted(os.listdir(tmp_path)) == ["log", "portpressure.prom"]  # no temporary file left


@pytest.mark.parametrize("args, needle", [
    (["--top", "0"], "--top"),
    (["--top", str(MAX_TOP + 1)], f"at most {MAX_TOP}"),
    (["--listen", "9466"], "HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "out of range"),
    (["--listen", "::1:9466"], "brackets"),
    (["--listen", "127.0.0.1:9466", "--textfile", "x.prom"], "not allowed with"),
    (["--textfile", "metrics.txt"], ".prom"),
    (["--textfile", "/nonexistent-folder/x.prom"], "does not exist"),
    (["--probe", "db.example"], "HOST:PORT"),
    (["--probe", "http://db:80"], "URL"),
    (["--interval", "0"], "--interval"),
    # Huge periods overflow the sampling and canary threads' waits: refused up front.
    (["--interval", "1e10"], "at most 3600 s"),
    (["--probe-every", "1e10"], "at most 3600 s"),
    (["--duration", "1e10"], "at most"),
    (["--probe"] + ["127.0.0.1:1", "--probe"] * 10 + ["127.0.0.1:1"], "at most 10"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    result = portpressure("serve", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert result.stdout == ""


@requires_netns
def test_a_busy_listen_port_is_one_line_and_exit_2():
    def body() -> subprocess.CompletedProcess:
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 9466))
            taken.listen()
            return portpressure("serve", "--count", "1")

    result = run_in_netns(body)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "portpressure serve: cannot listen on 127.0.0.1:9466: Address already in use"]
