"""The classical decision at the image scale it was tuned at, for frames larger than that.

The decision's windows (the majority filter's and the blend's, in pixels) were tuned on 512 px
stacks (docs/classical-engine.md). A 1080p frame of the same field shows every structure, and every
defocus disc, twice as wide: the same windows then see half the context, and the fused 1080p image
scored 0.8-0.9 dB below a guided-filter fusion that the 512 px one matched (issue 13). So from
``TUNED_SIDE`` up the focus maps are summed over ``factor`` x ``factor`` blocks, the arg-max and the
majority filter run on those (with the tuned radius: ``factor`` times wider in frame pixels, and
``factor``² times cheaper), the labels are brought back to full size, and the frames are blended
at full resolution with the blend window ``factor`` times wider (at most ``MAX_RADIUS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from . import decision
from .errors import InputError

__all__ = ["BLOCK_SIDE", "TUNED_SIDE", "StackDecision", "auto_factor", "blend_stack_decision", "decide_stack", "enlarge_blocks",
           "fuse_stack_scaled", "on_block_grid", "reduce_focus_map"]

#: Frames whose shorter side is at least this are decided on focus maps summed over blocks
#: (``auto_factor``); below it (720p and less) at full scale, where the radii were tuned.
TUNED_SIDE = 1080
#: From ``TUNED_SIDE`` up, one block per this many pixels of the shorter side: 4x4 blocks at 1080p,
#: i.e. the decision sees a 1080p frame at 270 px. On our generator's 1080p tuning stacks (seeds
#: 3100-3102, K = 5, threshold 0) n = 1/2/3/4/6/8 scored 40.38/40.80/41.08/41.56/41.47/41.16 dB
#: noise-free and 35.52/36.95/37.39/37.53/37.89/37.66 dB noisy (JPEG 90); at 720p n = 2 lost 0.56 dB
#: noise-free for 0.75 dB noisy, so 720p stays at full scale.
BLOCK_SIDE = 270


def auto_factor(shape: tuple[int, ...]) -> int:
    """The reduction ``fuse_stack_scaled`` uses for frames of ``shape`` by default: 1 below
    ``TUNED_SIDE`` (shorter side), else shorter side // ``BLOCK_SIDE`` (1080p: 4, 4K: 8)."""
    side = min(int(shape[0]), int(shape[1]))
    return 1 if side < TUNED_SIDE else side // BLOCK_SIDE


def reduce_focus_map(focus_map: np.ndarray, factor: int, *, threads: int = 0) -> np.ndarray:
    """Sum an HxW uint32 focus map over ``factor`` x ``factor`` blocks -> ceil(H/f) x ceil(W/f) uint32.

    A partial block at the right or bottom edge counts its edge pixels again for each missing
    one, so every block sums ``factor``² values; sums saturate at 2^32 - 1 (C++ core, one pass).
    """
    from . import _core

    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise InputError(f"factor must be an int >= 1, got {factor!r}")
    m = np.asarray(focus_map)
    if m.ndim != 2 or m.dtype != np.uint32:
        raise InputError(f"focus_map must be an HxW uint32 map, got shape {m.shape} dtype {m.dtype}")
    if factor == 1:
        return m
    return _core.reduce_focus_map(np.ascontiguousarray(m), factor=factor, threads=threads)


def on_block_grid(transform, factor: float):
    """``transform`` (a ``surgifuse.align.SimilarityTransform`` in pixels) as the same motion on the
    grid of ``factor`` x ``factor`` blocks, with the pixel-centre convention of ``cv2.resize`` that
    ``enlarge_blocks`` and ``reduce_focus_map``'s block sums follow; a non-integer ``factor`` gives
    it on an image resized by ``1 / factor`` (the focus curve's working copy)."""
    from .align import SimilarityTransform, _rescale

    # align's own conversion between a reduced image and the larger one, the other way round
    return SimilarityTransform.from_matrix(_rescale(transform.matrix3, 1.0 / factor))


def enlarge_blocks(values: np.ndarray, factor: int, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    """Back to ``shape`` (H, W) from a ``factor`` times smaller grid of blocks."""
    h, w = shape
    big = cv2.resize(values, (values.shape[1] * factor, values.shape[0] * factor), interpolation=interpolation)
    return np.ascontiguousarray(big[:h, :w])


@dataclass
class StackDecision:
    """The decision of a stack before its frames are blended, at the scale it was made.

    ``labels`` (uint8: 0..K-1 a frame, K the average of all), ``depth_index`` and ``confidence``
    (float32) are ``factor`` times smaller than the frames (``shape``, H x W); a caller may change
    ``labels`` and ``depth_index`` in place before ``blend_stack_decision`` (the live motion guard
    gives the newest frame the regions where the scene moved).
    """

    labels: np.ndarray
    depth_index: np.ndarray
    confidence: np.ndarray
    factor: int
    shape: tuple[int, int]


def decide_stack(
    focus_maps: Sequence[np.ndarray],
    *,
    factor: int,
    shape: tuple[int, int],
    filter_radius: int = decision.DEFAULT_FILTER_RADIUS,
    flat_threshold: int = 0,
    threads: int = 0,
    reduced: bool = False,
) -> StackDecision:
    """The arg-max and majority filter of ``fuse_stack_scaled`` without the blend: on the focus
    maps summed over ``factor`` x ``factor`` blocks (``reduced``: the maps already are)."""
    maps = list(focus_maps)
    if factor > 1 and not reduced:
        maps = [reduce_focus_map(np.asarray(m), factor) for m in maps]
    expected = (math.ceil(shape[0] / factor), math.ceil(shape[1] / factor))
    if maps and np.asarray(maps[0]).shape != expected:
        raise InputError(f"{'reduced ' if factor > 1 else ''}focus maps are {np.asarray(maps[0]).shape}, frames "
                         f"{tuple(shape)} reduced by {factor} give {expected}")
    labels, depth, confidence = decision.stack_decision(maps, filter_radius=filter_radius,
                                                        flat_threshold=flat_threshold, threads=threads)
    return StackDecision(labels, depth, confidence, factor, (int(shape[0]), int(shape[1])))


def blend_stack_decision(frames: Sequence[np.ndarray], decided: StackDecision, *,
                         blend_radius: int = decision.DEFAULT_BLEND_RADIUS, threads: int = 0,
                         full_maps: bool = True) -> decision.DecisionResult:
    """Blend the frames by ``decided``'s labels at full resolution over a window of radius
    ``min(MAX_RADIUS, blend_radius * factor)``; the labels are enlarged by repetition (each block's
    label to its pixels), the depth index and the confidence by linear interpolation (with
    ``full_maps``; otherwise they stay at the decision's scale)."""
    f, shape = decided.factor, decided.shape
    labels, depth, confidence = decided.labels, decided.depth_index, decided.confidence
    if f > 1:
        labels = enlarge_blocks(labels, f, shape, cv2.INTER_NEAREST)
        if full_maps:
            depth = enlarge_blocks(depth, f, shape, cv2.INTER_LINEAR)
            confidence = enlarge_blocks(confidence, f, shape, cv2.INTER_LINEAR)
    image = decision.stack_blend(frames, labels, blend_radius=min(decision.MAX_RADIUS, blend_radius * f),
                                 threads=threads)
    return decision.DecisionResult(image=image, depth_index=depth, confidence=confidence, labels=labels)


def fuse_stack_scaled(
    frames: Sequence[np.ndarray],
    focus_maps: Sequence[np.ndarray],
    *,
    factor: int,
    filter_radius: int = decision.DEFAULT_FILTER_RADIUS,
    blend_radius: int = decision.DEFAULT_BLEND_RADIUS,
    flat_threshold: int = 0,
    threads: int = 0,
    reduced_maps: Sequence[np.ndarray] | None = None,
) -> decision.DecisionResult:
    """``decision.fuse_stack`` with the arg-max and the majority filter on focus maps summed over
    ``factor`` x ``factor`` blocks (see the module docstring); ``factor`` 1 is ``fuse_stack`` itself.

    ``reduced_maps``: the maps already reduced by ``reduce_focus_map`` (a live buffer keeps them
    with its frames); ``flat_threshold`` applies to the block sums. The labels are enlarged by
    repetition (each block's label to its pixels), the depth index and the confidence by linear
    interpolation; the frames are blended at full resolution over a window of radius
    ``min(MAX_RADIUS, blend_radius * factor)``.
    """
    if factor == 1:
        return decision.fuse_stack(frames, focus_maps, filter_radius=filter_radius, blend_radius=blend_radius,
                                   flat_threshold=flat_threshold, threads=threads)
    maps = list(reduced_maps) if reduced_maps is not None else list(focus_maps)
    if len(maps) != len(frames):
        raise InputError(f"got {len(frames)} frames but {len(maps)} focus maps: K must match")
    decided = decide_stack(maps, factor=factor, shape=np.asarray(frames[0]).shape[:2], filter_radius=filter_radius,
                           flat_threshold=flat_threshold, threads=threads, reduced=reduced_maps is not None)
    return blend_stack_decision(frames, decided, blend_radius=blend_radius, threads=threads)
