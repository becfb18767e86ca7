"""A real headless Chromium opens the display page, receives frames, and shows a non-blank picture.

Debian's /usr/bin/chromium driven by Playwright (no browser download). Skipped when Chromium or
Playwright is missing, unless SURGIFUSE_REQUIRE_BROWSER=1 (then missing means failure).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from live_support import make_app, running_server

CHROMIUM = os.environ.get("SURGIFUSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _browser_or_skip():
    required = os.environ.get("SURGIFUSE_REQUIRE_BROWSER") == "1"
    problem = None
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        problem = "playwright is not installed"
    if problem is None and not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        problem = f"chromium not found at {CHROMIUM}"
    if problem:
        if required:
            pytest.fail(f"SURGIFUSE_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def page_url():
    with running_server(make_app()) as base:
        yield base


def test_page_shows_live_frames_and_read_out(page_url, tmp_path):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 500})
            page.goto(page_url + "/")
            page.wait_for_function("window.surgifuse && window.surgifuse.framesShown >= 10", timeout=20_000)
            page.wait_for_function("document.getElementById('fps').textContent !== '–'", timeout=5_000)
            stats = page.evaluate("window.surgifuse")
            latency_text = page.inner_text("#latency")
            fps_text = page.inner_text("#fps")
            state = page.inner_text("#state")
            shot = tmp_path / "display.png"
            page.screenshot(path=str(shot))
            if os.environ.get("SURGIFUSE_SCREENSHOT"):
                page.screenshot(path=os.environ["SURGIFUSE_SCREENSHOT"])

            page.keyboard.press("d")
            page.wait_for_function("window.surgifuse.lastHeader && window.surgifuse.lastHeader.view === 'depth'",
                                   timeout=10_000)
            assert "?view=depth" in page.url or "view=depth" in page.url
            assert page.get_attribute("button[data-view=depth]", "class") == "active"
            page.keyboard.press("r")
            page.wait_for_function("window.surgifuse.lastHeader.view === 'raw'", timeout=10_000)
        finally:
            browser.close()

    assert state == "live"
    assert stats["state"] == "live" and stats["lastHeader"]["width"] == 320
    assert latency_text.lstrip("-").isdigit() and int(latency_text) < 60_000
    assert int(fps_text) >= 1
    import cv2

    image = cv2.imread(str(shot))
    assert image.shape[:2] == (500, 800)
    # the video occupies the middle of the window (aspect kept: 320x240 in 800x500 -> 667x500)
    centre = image[150:350, 250:550].astype(np.float32)
    assert centre.std() > 20, "the picture is flat: blank or not drawn"
    assert centre.mean() > 20, "the picture is black"
    # letterbox columns at the sides stay black
    assert image[:, :40].mean() < 40


def test_page_reconnects_when_the_server_comes_back():
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    from live_support import free_port

    port = free_port()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 640, "height": 400})
            with running_server(make_app(), port=port) as base:
                page.goto(base + "/")
                page.wait_for_function("window.surgifuse.framesShown >= 3", timeout=20_000)
            page.wait_for_function("window.surgifuse.state !== 'live'", timeout=10_000)
            banner = page.inner_text("#banner").lower()
            shown_while_down = page.evaluate("window.surgifuse.framesShown")
            with running_server(make_app(), port=port):
                page.wait_for_function(f"window.surgifuse.state === 'live' && "
                                       f"window.surgifuse.framesShown > {shown_while_down + 3}", timeout=20_000)
            reconnects = page.evaluate("window.surgifuse.reconnects")
        finally:
            browser.close()
    assert "reconnect" in banner or "retrying" in banner
    assert reconnects >= 1
