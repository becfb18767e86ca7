"""The display page's instrument read-out in a real headless Chromium: the tip marker and the height
line, and the warning colour below the configured distance (screenshots for docs/depth.md).

Same set-up as tests/test_browser.py (Debian's Chromium through Playwright; skipped without them
unless SURGIFUSE_REQUIRE_BROWSER=1). Real time: the page runs on the live stream as it comes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from live_support import running_server
from test_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

pytestmark = pytest.mark.browser

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
#: Set to 1 to write the screenshots into docs/images (the ones the docs show); otherwise they go
#: to the test's temporary folder, so that a test run leaves the checkout as it was.
UPDATE_DOC_IMAGES = os.environ.get("SURGIFUSE_UPDATE_DOC_IMAGES") == "1"


def _demo_app():
    from surgifuse.live.sources import SyntheticSweepSource
    from surgifuse.service.app import create_app
    from surgifuse.service.settings import ServiceSettings

    source = SyntheticSweepSource(seed=0, height=360, width=640, k=5, instrument_motion=False, eye_motion=False)
    settings = ServiceSettings(_env_file=None, budget_ms=2000.0, k=5, focus_step_mm=0.35)
    return create_app(settings, source=source)


def test_the_page_shows_the_tip_and_its_height_and_warns_when_close(tmp_path):
    _browser_or_skip()
    import cv2
    import httpx
    from playwright.sync_api import sync_playwright

    folder = DOCS_IMAGES if UPDATE_DOC_IMAGES else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shot, warn_shot = folder / "instrument-hud.png", folder / "instrument-hud-warning.png"
    with running_server(_demo_app()) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 960, "height": 560})
            page.goto(base + "/")
            page.wait_for_function("window.surgifuse.instrument && window.surgifuse.instrument.present "
                                   "&& window.surgifuse.framesShown >= 10", timeout=30_000)
            page.wait_for_selector("#instrument", state="visible", timeout=5_000)
            text = page.inner_text("#instrument-text")
            calm_class = page.get_attribute("#instrument", "class")
            reading = page.evaluate("window.surgifuse.instrument")
            page.screenshot(path=str(shot))

            r = httpx.put(f"{base}/v1/settings", json={"instrument_warning_steps": 4.0})
            assert r.status_code == 200
            page.wait_for_function("window.surgifuse.instrument && window.surgifuse.instrument.warning === true",
                                   timeout=20_000)
            page.wait_for_function("document.getElementById('instrument').classList.contains('warning-on')",
                                   timeout=5_000)
            page.wait_for_timeout(300)  # a few more frames drawn with the red marker
            page.screenshot(path=str(warn_shot))
        finally:
            browser.close()

    assert re.fullmatch(r"tip \d+\.\d steps \(\d+\.\d\d mm\) above retina", text), text
    assert "warning-on" not in calm_class
    # the demo's forceps (seed 0, 640x360) is 2.85 focus steps above the retina, its tip at (246, 238)
    assert reading["warning"] is False and abs(reading["height_steps"] - 2.85) < 0.5
    assert np.hypot(reading["tip_xy"][0] - 246.3, reading["tip_xy"][1] - 238.4) < 15

    # the marker is drawn on the picture at the tip: green, then red
    def ring_colour_near_tip(path) -> np.ndarray:
        image = cv2.imread(str(path))
        # 640x360 shown in 960x560: scale 1.5, letterbox rows (560 - 540) / 2 = 10 px
        x, y = 1.5 * reading["tip_xy"][0], 10 + 1.5 * reading["tip_xy"][1]
        patch = image[int(y) - 40:int(y) + 40, int(x) - 40:int(x) + 40].reshape(-1, 3).astype(int)
        return patch

    calm = ring_colour_near_tip(shot)
    warn = ring_colour_near_tip(warn_shot)
    green = (calm[:, 1] > 180) & (calm[:, 2] < 120) & (calm[:, 0] > 80)  # BGR (61, 220, 132)
    red = (warn[:, 2] > 200) & (warn[:, 1] < 90) & (warn[:, 0] < 90)     # BGR (48, 59, 255)
    assert green.sum() > 20, "no green tip marker near the tip"
    assert red.sum() > 20, "no red tip marker near the tip after the warning distance was raised"
