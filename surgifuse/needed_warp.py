"""Resample of a moved frame only the parts the blend will read.

A decision-map fusion takes each output pixel from the frames whose labels lie in the pixel's
blend window (``surgifuse.decision``: frame i weighs K * count_i + count_K). A frame of a deep or
well-spread stack wins a small part of the image, yet aligning it used to resample all of it: on
focus-stack's pcb-macro example (7 frames of 2048x1536, Lanczos) the warps took 0.63 of the command's
1.45 s. Once the decision is known (it needs only the focus maps, which are warped by nearest
neighbour), each moved frame is resampled tile by tile where some window around a tile's pixels
holds its label or the "no information" label K, and nowhere else; the blend never reads the rest
with a weight above zero.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from .errors import InputError

__all__ = ["TILE_PX", "needed_tiles", "warp_needed"]

#: Side of the square tiles (pixels, rounded to whole decision blocks) that are resampled or skipped.
#: Smaller tiles skip more pixels but cost more OpenCV calls (one per run of tiles in a row): on
#: pcb-macro the warps took 150, 143, 155, 190, 234 ms with 20, 32, 40, 64, 100 px tiles.
TILE_PX = 32


def needed_tiles(labels: np.ndarray, label: int, *, k: int, factor: int, blend_radius: int,
                 tile_blocks: int) -> np.ndarray:
    """Which tiles of ``tile_blocks`` x ``tile_blocks`` decision blocks the blend reads frame ``label`` in.

    ``labels``: the decision (uint8, one label per ``factor`` x ``factor`` pixels; ``k`` = no
    information, which weighs every frame). ``blend_radius``: the blend window's radius in frame
    pixels. A pixel's window reaches ``ceil(blend_radius / factor)`` blocks from its own.
    """
    if labels.ndim != 2:
        raise InputError(f"labels must be a 2-D label map, got shape {labels.shape}")
    if not 0 <= label < k:
        raise InputError(f"label must be a frame index in 0..{k - 1}, got {label}")
    mask = ((labels == label) | (labels == k)).astype(np.uint8)
    reach = math.ceil(blend_radius / factor)
    if reach > 0:
        mask = cv2.dilate(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    rows, cols = -(-mask.shape[0] // tile_blocks), -(-mask.shape[1] // tile_blocks)
    padded = np.zeros((rows * tile_blocks, cols * tile_blocks), np.uint8)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    return padded.reshape(rows, tile_blocks, cols, tile_blocks).max(axis=(1, 3)) > 0


def warp_needed(frame: np.ndarray, transform, tiles: np.ndarray, tile_px: int, *,
                interpolation: str = "lanczos") -> np.ndarray:
    """``surgifuse.align.warp(frame, transform, interpolation=...)`` on the tiles marked in ``tiles``
    (a bool grid of ``tile_px``-pixel squares from the top-left corner); zeros elsewhere.

    Each run of marked tiles along a row of tiles is one OpenCV call onto that rectangle of the
    output, with the warp shifted into the rectangle's own pixel grid. The values equal the whole
    frame's warp except where OpenCV's fixed-point coordinates (1/32 px) round the shifted origin
    the other way: a few grey levels at a fraction of a percent of the pixels, on sharp detail.
    """
    from .align import _warp_flags, into_window

    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    if tiles.shape != (-(-h // tile_px), -(-w // tile_px)):
        raise InputError(f"tiles grid {tiles.shape} does not cover a {h}x{w} frame in {tile_px}-px tiles")
    flags = _warp_flags(transform, interpolation)
    m = transform.matrix
    out = np.zeros_like(frame)
    rects = []
    for row in range(tiles.shape[0]):
        marked = np.flatnonzero(tiles[row])
        if marked.size == 0:
            continue
        # runs of consecutive marked tiles: one call each
        breaks = np.flatnonzero(np.diff(marked) > 1)
        starts = np.concatenate(([marked[0]], marked[breaks + 1]))
        ends = np.concatenate((marked[breaks], [marked[-1]])) + 1
        y0, y1 = row * tile_px, min(h, (row + 1) * tile_px)
        rects.extend((int(c0) * tile_px, y0, min(w, int(c1) * tile_px), y1) for c0, c1 in zip(starts, ends))

    def warp_rects(part: list) -> None:
        for x0, y0, x1, y1 in part:
            cv2.warpAffine(frame, into_window(m, x0, y0), (x1 - x0, y1 - y0), dst=out[y0:y1, x0:x1], flags=flags,
                           borderMode=cv2.BORDER_REPLICATE)

    # OpenCV splits one small rectangle poorly across threads: the rectangles are shared out instead.
    workers = min(len(rects), cv2.getNumThreads())
    if workers <= 1:
        warp_rects(rects)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(warp_rects, [rects[i::workers] for i in range(workers)]))
    return out
