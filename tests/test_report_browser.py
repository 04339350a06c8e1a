"""report.html as a ticket reader sees it: opened in a real browser (Debian's chromium,
headless, driven by Playwright; never a downloaded browser) at 1024 px wide and printed
to A4. Made from the worst case the analysis writes (six long reasons), with outbound
tests, settings, events and the window's real screenshot embedded."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from core.history import History
from core.report import Evidence, write_bundle
from tests.support.samples import CONFIG, worst_case_sample

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PAGE_DPI = 40
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RAW_KEYS = {"host", "port", "ok", "phase", "elapsed_ms", "errno", "error", "category", "diagnosis", "name",
            "value", "effective", "default", "unit", "range", "needs_reboot", "writable", "why_not", "kind",
            "text", "time"}
PROBES = (
    {"host": "10.99.0.15", "port": 5432, "ok": False, "phase": "connect", "elapsed_ms": 0.12, "errno": 99,
     "error": "[Errno 99] Cannot assign requested address", "category": "ports_exhausted",
     "diagnosis": "No local port was free for this destination: every port of the range 40000-40199 is "
                  "held toward 10.99.0.15:5432 (most in TIME_WAIT). New connections from every program "
                  "on this host to that destination fail the same way until ports are released."},
    {"host": "db-replica-02.internal.example.com", "port": 5432, "ok": True, "phase": "connect",
     "elapsed_ms": 1.8, "errno": None, "error": None, "category": "ok",
     "diagnosis": "Connected: this destination still has free local ports."},
)
SETTINGS = (
    {"name": "net.ipv4.ip_local_port_range", "value": [40000, 40199], "effective": [40000, 40199],
     "default": [32768, 60999], "unit": "ports", "range": [1024, 65535], "needs_reboot": False,
     "writable": True, "why_not": None},
    {"name": "net.ipv4.tcp_tw_reuse", "value": 0, "effective": 0, "default": 2, "unit": "",
     "range": [0, 2], "needs_reboot": False, "writable": False,
     "why_not": "not root: run as root (sudo) to change kernel settings"},
)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("pdftoppm") is None,
                                reason="needs Debian's chromium and poppler-utils (tools/setup.sh --dev)")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    now = time.time()
    history = History(600)
    for i in range(600):
        history.append(worst_case_sample(now - 600 + i))
    picture = (ROOT / "docs" / "screenshot-critical.png").read_bytes()
    evidence = Evidence(sample=worst_case_sample(now), history=history.snapshot(), probe_results=PROBES,
                        settings=SETTINGS, port_config=CONFIG, window_png=picture, plot_png=picture,
                        host="app-server-07.prod.example.com", source="netlink sock_diag", privileged=False,
                        notes=("Reboot pending: no",))
    folder = write_bundle(tmp_path_factory.mktemp("bundle"), evidence)
    return folder / "report.html"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser, report: Path, width: int, height: int = 768):
    """The page, with every request and console message noted; any request that is not
    the file itself (or a data: URI in it) is failed."""
    page = browser.new_page(viewport={"width": width, "height": height})
    noted: dict[str, list[str]] = {"outside": [], "errors": [], "requests": []}

    def route(r) -> None:
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            noted["outside"].append(url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda request: noted["requests"].append(request.url))
    page.on("console", lambda message: message.type == "error" and noted["errors"].append(message.text))
    page.on("pageerror", lambda error: noted["errors"].append(str(error)))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    return page, noted


def table_headings(page, section: str) -> list[str]:
    return page.evaluate("""(section) => {
        const h2 = [...document.querySelectorAll('h2')].find(h => h.textContent === section);
        let node = h2.nextElementSibling;
        while (node && !(node.tagName === 'TABLE' && node.tHead)) node = node.nextElementSibling;
        return [...node.querySelectorAll('thead th')].map(th => th.textContent);
    }""", section)


def test_the_report_reads_well_at_1024_px(browser, report: Path) -> None:
    page, noted = open_page(browser, report, 1024)
    try:
        width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], f"horizontal overflow at 1024 px: {width}"
        widest = page.evaluate("""() => Math.max(...[...document.querySelectorAll('table, svg, img')]
                                     .map(e => e.getBoundingClientRect().right))""")
        assert widest <= width[1]
        text = page.inner_text("body")
        # Ranges as ranges, never as amounts with thousands separators.
        assert "40000-40199" in text and "32768-60999" in text
        assert not re.search(r"40,000|40,199", text)
        # Human headings, not the JSON's keys.
        probes = table_headings(page, "Outbound connection tests")
        settings = table_headings(page, "Settings in effect")
        events = table_headings(page, "Events during the session")
        assert probes == ["Target", "Result", "Took (ms)", "Error", "Kind of problem", "What it means"]
        assert settings[:2] == ["Setting", "In effect"] and events[:2] == ["Time", "What"]
        assert not RAW_KEYS & set(probes + settings + events)
        assert "ports exhausted" in text and "failed at connect" in text
        # The timeline holds one row per event, each kind said in words.
        kinds = page.evaluate("""() => [...document.querySelectorAll('table.events tbody tr')]
                                     .map(tr => tr.children[1].textContent)""")
        assert sorted(kinds) == ["Note", "Outbound test", "Setting changed"]
        assert "net.ipv4.tcp_tw_reuse: 1 -> 0" in text
        # The settings in effect, the verdict whole, both pictures drawn.
        assert "not root: run as root (sudo) to change kernel settings" in text
        sample = worst_case_sample()
        for reason in sample.verdict.reasons:
            assert reason.split(" 12 s ago")[0].split(" 1")[0] in text
        loaded = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
        assert loaded == [True, True]
        assert noted["errors"] == [] and noted["outside"] == []
        assert all(url.startswith(("file:", "data:")) for url in noted["requests"])
    finally:
        page.close()


def test_the_report_prints_on_a_few_a4_pages(browser, report: Path, tmp_path: Path) -> None:
    page, noted = open_page(browser, report, 1024)
    try:
        page.emulate_media(media="print")
        # A4 less the page margins is about 718 CSS px wide: nothing may stick out of it.
        page.set_viewport_size({"width": 718, "height": 1000})
        width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], f"horizontal overflow on paper: {width}"
        pdf = tmp_path / "report.pdf"
        page.pdf(path=str(pdf), format="A4", print_background=True, prefer_css_page_size=True)
    finally:
        page.close()
    assert noted["errors"] == [] and noted["outside"] == []
    subprocess.run(["pdftoppm", "-r", str(PAGE_DPI), "-png", str(pdf), str(tmp_path / "page")], check=True,
                   timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 2 <= len(pages) <= 6, f"{len(pages)} pages"
    for picture in pages:  # every page A4 portrait: 210 x 297 mm
        width_px, height_px = struct.unpack(">II", picture.read_bytes()[16:24])
        assert abs(width_px - 210 / 25.4 * PAGE_DPI) <= 1 and abs(height_px - 297 / 25.4 * PAGE_DPI) <= 1, \
            (picture.name, width_px, height_px)
