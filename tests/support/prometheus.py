"""Real Prometheus parts for the exporter tests: `portpressure serve` as a child process,
Debian's `prometheus` and `promtool` binaries (tools/setup.sh --dev installs them), and
a Prometheus instance of our own (temporary storage, a loopback port; never the
packaged service), always stopped at the end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import wait_until

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources" / "prometheus"
RULES = RESOURCES / "portpressure-rules.yml"
RULE_TESTS = RESOURCES / "portpressure-rules.test.yml"
DASHBOARD = RESOURCES / "portpressure-dashboard.json"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
requires_promtool = pytest.mark.skipif(PROMTOOL is None,
                                       reason="promtool not installed (tools/setup.sh --dev)")
requires_prometheus = pytest.mark.skipif(PROMETHEUS is None,
                                         reason="prometheus not installed (tools/setup.sh --dev)")


def http_get(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def start_serve(*args: str, log: Path) -> subprocess.Popen:
    """`portpressure serve ARGS` as a child process, stderr to `log`."""
    code = "import sys; from gui.launcher import main; sys.exit(main())"
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-c", code, "serve", *args], cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def scrape_when_ready(url: str, process: subprocess.Popen, timeout: float = 30.0) -> bytes:
    """The first 200 answer of `url` (the exporter answers 503 until its first sample)."""
    def ready() -> bytes | None:
        if process.poll() is not None:
            raise RuntimeError(f"the exporter exited with status {process.returncode}")
        try:
            status, _, body = http_get(url, timeout=2.0)
        except OSError:
            return None
        return body if status == 200 else None

    return wait_until(ready, timeout, f"{url} to answer 200", poll=0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def rules_with_short_for(destination: Path, for_: str = "1s") -> Path:
    """The alert rules with every `for:` shortened, so a test sees alerts within seconds."""
    text = re.sub(r"(?m)^(\s*for:\s*)\S+", rf"\g<1>{for_}", RULES.read_text())
    destination.write_text(text)
    return destination


class PrometheusServer:
    """Our own Prometheus: scrapes `targets` every second and evaluates `rule_file` every second."""

    def __init__(self, targets: list[str], rule_file: Path, port: int = 9090) -> None:
        assert PROMETHEUS is not None
        self.dir = Path(tempfile.mkdtemp(prefix="portpressure-prometheus-"))
        self.url = f"http://127.0.0.1:{port}"
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [{"job_name": "portpressure", "static_configs": [{"targets": targets}]}],
        }))
        self.log = self.dir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_until(self._ready, 30, "Prometheus to be ready", poll=0.1)
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            return http_get(self.url + "/-/ready", timeout=1.0)[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, _, body = http_get(url)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"{path} {params}: HTTP {status}: {answer.get('error', answer)}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector: [{"metric": {labels}, "value": [time, "text"]}, ...]."""
        data = self.api("query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [data]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def close(self) -> None:
        stop(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, with its variables filled in as
    Grafana would for "all servers"."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    filled = [e.replace("$instance", ".*").replace("$__rate_interval", "1m") for e in exprs]
    return [re.sub(r"^label_values\((\w+), \w+\)$", r"\1", e) for e in filled]


def metric_names(exposition: str) -> set[str]:
    """Names of the series in an exposition (a counter's samples carry `_total`)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name + "_total" if kind == "counter" else name)
    return names
