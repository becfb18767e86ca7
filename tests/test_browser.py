"""A real headless Chromium opens the display page, receives frames, and shows a non-blank picture.

Debian's /usr/bin/chromium driven by Playwright (no browser download). Skipped when Chromium or
Playwright is missing, unless SURGIFUSE_REQUIRE_BROWSER=1 (then missing means failure).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from live_support import DeadCamera, make_app, running_server

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
    from live_support import free_port
    from playwright.sync_api import sync_playwright

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


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_api_docs_render_with_other_hosts_unreachable(page_url):
    # Operating-room networks are often offline: /docs and /redoc must not need a CDN.
    _browser_or_skip()
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    own = urlsplit(page_url).netloc
    elsewhere = []

    def this_server_only(route):
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 700})
            context.route("**/*", this_server_only)
            page = context.new_page()
            page.goto(page_url + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            swagger_title = page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".opblock-summary-path[data-path='/v1/fuse']", timeout=10_000)
            swagger_elsewhere = list(elsewhere)
            page.goto(page_url + "/redoc")
            page.wait_for_selector("h1:has-text('SurgiFuse')", timeout=20_000)
            redoc_text = page.inner_text("body")
        finally:
            browser.close()
    assert swagger_title.startswith("SurgiFuse")
    assert swagger_elsewhere == [], f"/docs asked other hosts for {swagger_elsewhere}"
    assert "/v1/fuse" in redoc_text
    # ReDoc's bundle links its "powered by" logo from its CDN: a missing logo, the page is whole
    assert [u for u in elsewhere if not u.startswith("https://cdn.redoc.ly/redoc/logo")] == [], elsewhere


class _CameraThatDies:
    """Delivers ``frames`` images, then fails for good (unplugged)."""

    description = "camera:8"
    fps = 30.0
    paced = True

    def __init__(self, frames, count: int = 20):
        self.frames, self.left, self.dead = frames, count, False

    def open(self):
        if self.dead:
            raise OSError("camera unplugged")

    def read(self):
        if self.left <= 0:
            self.dead = True
            raise OSError("camera unplugged")
        self.left -= 1
        return self.frames[self.left % len(self.frames)]

    def close(self):
        pass


def _app_on(source):
    from live_support import maxfocus_factory

    from surgifuse.service.app import create_app
    from surgifuse.service.settings import ServiceSettings

    settings = ServiceSettings(_env_file=None, align=False, motion_guard=False, budget_ms=2000.0, k=5)
    return create_app(settings, source=source, engine_factory=maxfocus_factory)


def _banner_when_source_down(base: str) -> str:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 640, "height": 400})
            page.goto(base + "/")
            page.wait_for_function("window.surgifuse.state === 'source-down'", timeout=20_000)
            return page.inner_text("#banner")
        finally:
            browser.close()


def test_a_source_that_never_delivered_shows_no_signal():
    _browser_or_skip()
    with running_server(_app_on(DeadCamera())) as base:
        banner = _banner_when_source_down(base).lower()
    # the screen is black: there is no "last frame" to show
    assert "no signal" in banner and "last frame" not in banner
    assert "reconnecting" in banner and "no camera at index 9" in banner


def test_a_source_that_died_shows_the_last_frame():
    _browser_or_skip()
    from live_support import focus_sweep

    with running_server(_app_on(_CameraThatDies(focus_sweep(240, 320, k=5), count=60))) as base:
        banner = _banner_when_source_down(base).lower()
    assert "showing the last frame" in banner and "no signal" not in banner
    assert "camera unplugged" in banner


class _FocusSweepSource:
    """The test sweep, saying where the focus was: frame i of K at focus position i/(K-1)."""

    description = "test sweep with focus positions"
    fps = 30.0
    paced = True

    def __init__(self, frames):
        self.frames, self.index, self.last_focus = frames, 0, None

    def open(self):
        self.index = 0

    def read(self):
        i, k = self.index % len(self.frames), len(self.frames)
        self.index += 1
        self.last_focus = i / (k - 1)
        return self.frames[i]

    def close(self):
        pass


def _turbo(entry: int) -> np.ndarray:
    import cv2

    return cv2.applyColorMap(np.array([[entry]], np.uint8), cv2.COLORMAP_TURBO)[0, 0].astype(np.float32)  # BGR


def _legend_after_switching_to_depth(base: str, tmp_path):
    """Open the page, check the legend is hidden in the fused view, switch to depth: what the legend shows."""
    import cv2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 500})
            page.goto(base + "/")
            page.wait_for_function("window.surgifuse.framesShown >= 3", timeout=20_000)
            hidden_fused = not page.is_visible("#legend")
            page.keyboard.press("d")
            page.wait_for_function("window.surgifuse.lastHeader.view === 'depth' && window.surgifuse.lastHeader.k === 5",
                                   timeout=10_000)
            shown = {"visible": page.is_visible("#legend"), "title": page.inner_text("#legend-title"),
                     "lo": page.inner_text("#legend-lo"), "hi": page.inner_text("#legend-hi"),
                     "scale": page.evaluate("window.surgifuse.lastHeader.depth_scale")}
            page.locator("#legend-bar").screenshot(path=str(tmp_path / "bar.png"))
            page.keyboard.press("f")
            page.wait_for_function("window.surgifuse.lastHeader.view === 'fused'", timeout=10_000)
            hidden_again = not page.is_visible("#legend")
        finally:
            browser.close()
    bar = cv2.imread(str(tmp_path / "bar.png")).astype(np.float32)
    row = bar[bar.shape[0] // 2, 2:-2]  # inside the border
    shown["bar_ends"] = (row[0], row[len(row) // 2], row[-1])
    return hidden_fused, shown, hidden_again


def test_depth_view_shows_its_colour_scale_in_stack_order(page_url, tmp_path):
    _browser_or_skip()
    hidden_fused, shown, hidden_again = _legend_after_switching_to_depth(page_url, tmp_path)
    assert hidden_fused and shown["visible"] and hidden_again
    # the test source knows no focus positions: the colours are the stack index, 0 .. K-1 (K=5)
    assert shown["scale"] == {"colormap": "turbo", "quantity": "stack", "range": [0, 4]}
    assert "frame in the stack" in shown["title"]
    assert shown["lo"] == "0 oldest" and shown["hi"] == "4 newest"
    first, middle, last = shown["bar_ends"]
    assert np.abs(first - _turbo(0)).max() < 25 and np.abs(last - _turbo(255)).max() < 25
    assert np.abs(middle - _turbo(128)).max() < 25


def test_depth_view_shows_its_colour_scale_in_focus_positions(tmp_path):
    _browser_or_skip()
    from live_support import focus_sweep

    with running_server(_app_on(_FocusSweepSource(focus_sweep(240, 320, k=5)))) as base:
        hidden_fused, shown, hidden_again = _legend_after_switching_to_depth(base, tmp_path)
    assert hidden_fused and shown["visible"] and hidden_again
    assert shown["scale"] == {"colormap": "turbo", "quantity": "focus", "range": [0, 1]}
    assert "focus position" in shown["title"]
    assert shown["lo"] == "0 near" and shown["hi"] == "1 far"


def test_the_page_shows_a_warning_when_the_engine_is_too_slow_for_the_budget():
    _browser_or_skip()
    import httpx
    from live_support import MaxFocusEngine
    from playwright.sync_api import sync_playwright

    def factory(name, **options):
        return MaxFocusEngine(delay_s=0.2 if name == "msmfm" else 0.0)

    with running_server(make_app(engine_factory=factory, budget_ms=50.0)) as base:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 800, "height": 500})
                page.goto(base + "/")
                page.wait_for_function("window.surgifuse && window.surgifuse.framesShown >= 2", timeout=20_000)
                assert not page.is_visible("#warnings")
                r = httpx.put(f"{base}/v1/settings", json={"engine": "msmfm"})
                assert r.status_code == 200 and r.json()["warnings"]
                page.wait_for_selector("#warnings", state="visible", timeout=10_000)
                shown = page.inner_text("#warnings")
                httpx.put(f"{base}/v1/settings", json={"engine": "classical"})
                page.wait_for_selector("#warnings", state="hidden", timeout=10_000)
            finally:
                browser.close()
    assert shown == r.json()["warnings"][0] and "50 ms budget" in shown
