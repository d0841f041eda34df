"""report.html in a real headless Chromium: every figure loads, no console errors, a screenshot."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs /usr/bin/chromium (Debian package 'chromium'; `make browser` "
                              "installs it where apt-get runs as root)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="needs the python 'playwright' package (pip install playwright)"),
]


def test_report_opens_offline_with_every_figure_loaded(multi_report, tmp_path):
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    failed_requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed_requests.append(r.url))
            # any request that leaves the file (network, other files) is a failure of the page
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(("file://", "data:")) else route.abort())
            page.goto(multi_report.resolve().as_uri(), wait_until="load")
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert title == "prunescope report: synthetic"
    assert len(widths) == 6 and all(w > 0 for w in widths), widths
    assert console_errors == []
    assert failed_requests == []
    assert shot.stat().st_size > 10_000
