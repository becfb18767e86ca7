"""The depth view's legend says what the server's colours mean: same colour map, same ends."""

from __future__ import annotations

import re

import numpy as np
import pytest

from surgifuse.live.publisher import DEPTH_COLORMAP, colourize_depth, depth_scale
from surgifuse.service.routes.page import STATIC_DIR


def _page_colormap(name: str) -> tuple[list[int], np.ndarray]:
    """The stops of colour map ``name`` in app.js: entry indices (evenly 0..255) and RGB colours."""
    js = (STATIC_DIR / "app.js").read_text()
    block = re.search(r"const COLORMAPS = \{(.*?)\};", js, re.DOTALL).group(1)
    found = re.search(rf"\b{name}:\s*((?:\"[0-9a-f ]*\"\s*\+?\s*)+),", block)
    assert found, f"app.js has no colour map {name!r}"
    hexes = "".join(re.findall(r"\"([0-9a-f ]*)\"", found.group(1))).split()
    colours = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in hexes])
    entries = np.linspace(0, 255, len(hexes))
    assert np.allclose(entries, entries.round()), "stops must fall on entries of the 256-entry map"
    return entries.round().astype(int).tolist(), colours


def _server_colours(k: int, focus=None) -> np.ndarray:
    """RGB colour the server gives each of the depth values 0, (k-1)/255, ..., k-1 (256 values)."""
    depth = (np.arange(256, dtype=np.float32) * (max(1, k - 1) / 255.0))[None, :]
    return colourize_depth(depth, k, focus)[0, :, ::-1].astype(int)


def test_the_page_draws_the_servers_colour_map():
    entries, colours = _page_colormap(DEPTH_COLORMAP)
    server = _server_colours(5)
    assert entries[0] == 0 and entries[-1] == 255
    np.testing.assert_array_equal(colours, server[entries])
    # the page interpolates linearly between its stops: off by at most 2 levels anywhere
    between = np.stack([np.interp(np.arange(256), entries, colours[:, c]) for c in range(3)], axis=1)
    assert np.abs(between - server).max() <= 2.0


def test_depth_scale_stack_order_without_focus_positions():
    assert depth_scale(5) == {"colormap": "turbo", "quantity": "stack", "range": [0, 4]}
    assert depth_scale(5, [0.0, None, 0.5, 0.75, 1.0])["quantity"] == "stack"  # one unknown: stack order
    # the ends of the range are the ends of the colour map
    colours = _server_colours(5)
    first, last = _page_colormap(DEPTH_COLORMAP)[1][[0, -1]]
    np.testing.assert_array_equal(colours[0], first)
    np.testing.assert_array_equal(colours[-1], last)


def test_depth_scale_focus_position_whatever_the_stack_order():
    # a sweep coming back: the oldest frame was focused farthest, the newest nearest
    focus = [1.0, 0.75, 0.5, 0.25, 0.0]
    assert depth_scale(5, focus) == {"colormap": "turbo", "quantity": "focus", "range": [0, 1]}
    _, stops = _page_colormap(DEPTH_COLORMAP)
    colours = colourize_depth(np.array([[0.0, 4.0, 2.0]], np.float32), 5, focus)[0, :, ::-1].astype(int)
    np.testing.assert_array_equal(colours[0], stops[-1])  # focus 1: the far end of the legend
    np.testing.assert_array_equal(colours[1], stops[0])   # focus 0: the near end
    middle = _server_colours(5)[[127, 128]]  # focus 0.5: the middle of the legend (127.5 rounds either way)
    assert any((colours[2] == c).all() for c in middle), (colours[2], middle)


@pytest.mark.parametrize("k", [1, 2, 8])
def test_depth_scale_range_follows_k(k):
    assert depth_scale(k)["range"] == [0, max(1, k - 1)]
