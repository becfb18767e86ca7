"""Frame sizes the benchmark accepts: named presets and a custom ``WxH``."""

from __future__ import annotations

import re

from surgifuse.errors import InputError

#: name -> (width, height)
PRESETS = {"512": (512, 512), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}

_CUSTOM = re.compile(r"^(\d+)x(\d+)$")
_MIN_SIDE = 16


def parse_size(text: str) -> tuple[int, int]:
    """``"1080p"`` -> ``(1920, 1080)``; ``"64x48"`` -> ``(64, 48)`` (width x height).

    Raises ``ValueError`` naming the accepted forms for anything else, or a side below 16 pixels.
    """
    key = str(text).strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    m = _CUSTOM.match(key)
    if not m:
        raise InputError(f"unknown size {text!r}: use one of {', '.join(PRESETS)} or WIDTHxHEIGHT such as 64x64")
    width, height = int(m.group(1)), int(m.group(2))
    if width < _MIN_SIDE or height < _MIN_SIDE:
        raise InputError(f"size {width}x{height} too small: each side must be at least {_MIN_SIDE} pixels")
    return width, height
