"""Pure-NumPy reference of the Focus Measure Block, written straight from the equations (tests only).

ML(x,y) = |2I(x,y) - I(x-s,y) - I(x+s,y)| + |2I(x,y) - I(x,y-s) - I(x,y+s)|
FM(x,y) = sum over the (2N+1)^2 window of ML * [ML >= T]      (reflect-101 borders everywhere)
"""

from __future__ import annotations

import numpy as np


def reference_focus_measure(image: np.ndarray, *, step: int = 1, threshold: int = 7, window: int = 1) -> np.ndarray:
    """Per-channel FM as int64, same shape as ``image``; borders by np.pad(mode="reflect") (reflect-101)."""
    img = np.asarray(image).astype(np.int64)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    h, w, _ = img.shape
    pad = step + window
    # Padding the image by step+N and computing ML on the padded image equals ML at the reflected
    # pixel (the reflect-101 extension is symmetric about every border pixel).
    p = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = slice(step, p.shape[0] - step)
    cols = slice(step, p.shape[1] - step)
    centre = p[rows, cols]
    left = p[rows, : p.shape[1] - 2 * step]
    right = p[rows, 2 * step :]
    up = p[: p.shape[0] - 2 * step, cols]
    down = p[2 * step :, cols]
    ml = np.abs(2 * centre - left - right) + np.abs(2 * centre - up - down)
    ml = np.where(ml >= threshold, ml, 0)
    # ml covers the image padded by N on each side: sum the (2N+1)^2 shifted copies.
    fm = np.zeros((h, w, img.shape[2]), dtype=np.int64)
    for dy in range(2 * window + 1):
        for dx in range(2 * window + 1):
            fm += ml[dy : dy + h, dx : dx + w]
    return fm[:, :, 0] if squeeze else fm


def reference_focus_map(image: np.ndarray, *, step: int = 1, threshold: int = 7, window: int = 1) -> np.ndarray:
    """FM summed over channels (FMB3 focus map), int64 HxW."""
    fm = reference_focus_measure(image, step=step, threshold=threshold, window=window)
    return fm if fm.ndim == 2 else fm.sum(axis=2)


def reference_luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 integer luma (77R + 150G + 29B + 128) >> 8, in the input's dtype."""
    rgb = np.asarray(image)[..., :3].astype(np.int64)
    return ((77 * rgb[..., 0] + 150 * rgb[..., 1] + 29 * rgb[..., 2] + 128) >> 8).astype(image.dtype)
