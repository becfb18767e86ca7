"""Stack decision: from K focus maps to a label map, a depth index and a fused image (the C++ core).

Arg-max of the sum-modified-Laplacian focus measure (Nayar & Nakagawa 1994) with a parabolic
sub-frame fit of the peak, a majority (mode) filter of the labels as consistency verification
(Li, Manjunath & Mitra 1995; Li, Kwok & Wang 2001), and a blend by label fractions where the
filtered labels change, so that region boundaries show no seam. See docs/classical-engine.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .engines.base import validate_stack

# Limits of the C++ core: labels are uint8 window counts in 8-bit lanes (decision.hpp).
MAX_STACK_SIZE = 31
MAX_RADIUS = 7
# Tuned on synthetic seeds 1000-1029 (scripts/quality_classical.py --tune) against speed: see
# docs/classical-engine.md. Larger blend radii score higher PSNR (noise averages at boundaries)
# but cost more per boundary pixel.
DEFAULT_FILTER_RADIUS = 5
DEFAULT_BLEND_RADIUS = 4

__all__ = [
    "DecisionResult",
    "fuse_stack",
    "stack_decision",
    "stack_blend",
    "MAX_STACK_SIZE",
    "MAX_RADIUS",
    "DEFAULT_FILTER_RADIUS",
    "DEFAULT_BLEND_RADIUS",
]


@dataclass
class DecisionResult:
    """Outputs of ``fuse_stack``.

    Attributes
    ----------
    image : ndarray
        The fused image, shape and dtype of one frame.
    depth_index : ndarray of float32, HxW
        Filtered label plus the parabolic sub-frame offset, in [0, K-1].
    confidence : ndarray of float32, HxW
        In [0, 1]: window agreement times the pixel's focus contrast (best - second) / best.
    labels : ndarray of uint8, HxW
        The filtered label map: 0..K-1, or K where the window holds mostly no focus information
        (those pixels are the average of all frames).
    """

    image: np.ndarray
    depth_index: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray


def _core():
    from . import _core

    return _core


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise InputError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_focus_maps(focus_maps) -> list[np.ndarray]:
    if isinstance(focus_maps, np.ndarray) and focus_maps.ndim == 2:
        raise InputError("focus_maps must be a sequence of K HxW maps, got one 2-D array")
    maps = [np.asarray(m) for m in focus_maps]
    if not maps:
        raise InputError("focus_maps is empty: a focal stack needs at least one frame")
    if len(maps) > MAX_STACK_SIZE:
        raise InputError(f"got {len(maps)} focus maps: at most {MAX_STACK_SIZE} frames are supported")
    for i, m in enumerate(maps):
        if m.dtype != np.uint32:
            raise InputTypeError(f"focus_maps[{i}] must be uint32, got {m.dtype}")
        if m.ndim != 2 or m.shape != maps[0].shape:
            raise InputError(f"focus_maps[{i}] has shape {m.shape}, focus_maps[0] has {maps[0].shape}: all must be one HxW")
    return [np.ascontiguousarray(m) for m in maps]


def _check_frames(frames) -> list[np.ndarray]:
    stack = validate_stack(frames)
    if stack[0].dtype not in (np.uint8, np.uint16):
        raise InputTypeError(f"frames must be uint8 or uint16, got {stack[0].dtype}")
    if len(stack) > MAX_STACK_SIZE:
        raise InputError(f"got {len(stack)} frames: at most {MAX_STACK_SIZE} are supported")
    return stack


def fuse_stack(
    frames: Sequence[np.ndarray],
    focus_maps: Sequence[np.ndarray],
    *,
    filter_radius: int = DEFAULT_FILTER_RADIUS,
    blend_radius: int = DEFAULT_BLEND_RADIUS,
    flat_threshold: int = 0,
    threads: int = 0,
    device: str = "cpu",
) -> DecisionResult:
    """Fuse K frames given their focus maps.

    Parameters
    ----------
    frames : sequence of ndarray
        K frames, HxW or HxWxC, uint8 or uint16, one shape and dtype.
    focus_maps : sequence of ndarray
        K HxW uint32 focus maps (``surgifuse.focus_measure.focus_map``), in the order of ``frames``.
    filter_radius : int
        Majority filter window (2r+1)^2 on the arg-max labels, 0..7; 0 turns the filter off.
    blend_radius : int
        Blend window (2r+1)^2 on the filtered labels, 0..7; 0 copies every pixel from one frame.
    flat_threshold : int
        A pixel whose best focus value is at or below this carries no information (label K).
    threads : int
        Threads of the core pool; 0 for its default (``SURGIFUSE_NUM_THREADS`` or the CPU count).
    device : {"cpu", "cuda"}
        ``"cuda"`` runs the same rules on the first CUDA device (build with CUDA needed).

    Returns
    -------
    DecisionResult

    Examples
    --------
    >>> import numpy as np
    >>> frames = [np.full((4, 4), v, np.uint8) for v in (10, 20)]
    >>> maps = [np.zeros((4, 4), np.uint32), np.full((4, 4), 9, np.uint32)]
    >>> r = fuse_stack(frames, maps)
    >>> int(r.image[0, 0]), float(r.depth_index[0, 0]), float(r.confidence[0, 0])
    (20, 1.0, 1.0)
    """
    stack = _check_frames(frames)
    maps = _check_focus_maps(focus_maps)
    if len(stack) != len(maps):
        raise InputError(f"got {len(stack)} frames but {len(maps)} focus maps: K must match")
    if maps[0].shape != stack[0].shape[:2]:
        raise InputError(f"focus maps are {maps[0].shape} but frames are {stack[0].shape[:2]}: sizes must match")
    opts = dict(
        filter_radius=_check_int("filter_radius", filter_radius, 0, MAX_RADIUS),
        blend_radius=_check_int("blend_radius", blend_radius, 0, MAX_RADIUS),
        flat_threshold=_check_int("flat_threshold", flat_threshold, 0, 2**32 - 1),
    )
    core = _core()
    if device == "cpu":
        out = core.fuse_stack(stack, maps, threads=_check_int("threads", threads, 0, 4096), **opts)
    elif device == "cuda":
        if not hasattr(core, "fuse_stack_cuda"):
            raise InputError("device='cuda' needs surgifuse built with CUDA (this build has no CUDA kernels)")
        out = core.fuse_stack_cuda(stack, maps, **opts)
    else:
        raise InputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return DecisionResult(*out)


def stack_decision(
    focus_maps: Sequence[np.ndarray], *, filter_radius: int = DEFAULT_FILTER_RADIUS, flat_threshold: int = 0, threads: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The decision alone: ``(labels uint8, depth_index float32, confidence float32)``, see ``fuse_stack``."""
    maps = _check_focus_maps(focus_maps)
    return _core().stack_decision(
        maps,
        filter_radius=_check_int("filter_radius", filter_radius, 0, MAX_RADIUS),
        flat_threshold=_check_int("flat_threshold", flat_threshold, 0, 2**32 - 1),
        threads=_check_int("threads", threads, 0, 4096),
    )


def stack_blend(
    frames: Sequence[np.ndarray], labels: np.ndarray, *, blend_radius: int = DEFAULT_BLEND_RADIUS, threads: int = 0
) -> np.ndarray:
    """Blend K frames by a uint8 label map (0..K-1 a frame, K the average of all), see ``fuse_stack``."""
    stack = _check_frames(frames)
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        raise InputTypeError(f"labels must be uint8, got {labels.dtype}")
    if labels.shape != stack[0].shape[:2]:
        raise InputError(f"labels has shape {labels.shape}, frames are {stack[0].shape[:2]}")
    return _core().stack_blend(
        stack,
        np.ascontiguousarray(labels),
        blend_radius=_check_int("blend_radius", blend_radius, 0, MAX_RADIUS),
        threads=_check_int("threads", threads, 0, 4096),
    )
