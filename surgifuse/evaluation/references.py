"""Reference fusions that bracket an engine on stacks with truth: the best single frame (the floor
any fusion must beat) and the depth oracle (the ceiling of per-pixel frame selection).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

from ..engines.base import validate_stack
from .metrics import psnr

__all__ = ["best_single_frame", "depth_oracle", "oracle_index"]


def best_single_frame(frames: Sequence[np.ndarray], gt: np.ndarray, *, border: int = 8) -> tuple[int, np.ndarray]:
    """The stack frame closest to the truth by PSNR: what "no fusion at all" achieves at best.

    Parameters
    ----------
    frames : sequence of ndarray
        The K frames of the stack (same shape and dtype).
    gt : ndarray
        The all-in-focus truth, the shape and dtype of one frame.
    border : int, optional
        Border excluded from the PSNR, as in ``metrics.psnr``. Default 8.

    Returns
    -------
    index : int
        Index of the best frame (the lowest index among ties).
    image : ndarray
        That frame.
    """
    frames = validate_stack(frames)
    gt = np.asarray(gt)
    if gt.shape != frames[0].shape or gt.dtype != frames[0].dtype:
        raise InputError(
            f"gt has shape {gt.shape} and dtype {gt.dtype}, frames have {frames[0].shape} and {frames[0].dtype}"
        )
    scores = [psnr(gt, f, border=border) for f in frames]
    index = int(np.argmax(scores))  # argmax keeps the first of equal maxima
    return index, frames[index]


def oracle_index(depth: np.ndarray, focus_positions: Sequence[float]) -> np.ndarray:
    """Per pixel, the index of the frame whose focus position is nearest the true depth.

    Parameters
    ----------
    depth : ndarray of float, HxW
        True depth per pixel, in the units of ``focus_positions``.
    focus_positions : sequence of float
        The K focus positions of the frames, in stack order.

    Returns
    -------
    ndarray of int64, HxW
        Values in 0..K-1; among equally near focus positions the lowest index wins.
    """
    depth = np.asarray(depth)
    positions = np.asarray(focus_positions, dtype=np.float64)
    if depth.ndim != 2:
        raise InputError(f"depth must be HxW, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise InputTypeError(f"depth must be a float array, got dtype {depth.dtype}")
    if positions.ndim != 1 or positions.size < 1:
        raise InputError(f"focus_positions must be a 1-D list of K >= 1 values, got shape {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise InputError("focus_positions must be finite")
    # (H, W, K) distances, built per frame to keep memory at one HxW float per frame at 1080p.
    best = np.zeros(depth.shape, np.int64)
    best_dist = np.abs(depth.astype(np.float64) - positions[0])
    for k in range(1, positions.size):
        dist = np.abs(depth - positions[k])
        closer = dist < best_dist  # strict: ties keep the lower index
        best[closer] = k
        best_dist = np.where(closer, dist, best_dist)
    return best


def depth_oracle(frames: Sequence[np.ndarray], depth: np.ndarray, focus_positions: Sequence[float]) -> np.ndarray:
    """Fuse by taking each pixel from the frame focused nearest to that pixel's true depth.

    The ceiling for methods that select one frame per pixel: they can at best guess the right
    frame everywhere. (Selecting the frame closest to the *truth* pixel by pixel would be a
    higher but meaningless ceiling: it picks whichever frame's noise happens to match.)

    Parameters
    ----------
    frames : sequence of ndarray
        The K frames, in the order of ``focus_positions``.
    depth : ndarray of float, HxW
        True depth per pixel, in the frames' (unaligned) coordinates.
    focus_positions : sequence of float
        K focus positions, same units as ``depth``.

    Returns
    -------
    ndarray
        The oracle fusion, the shape and dtype of one frame.

    Notes
    -----
    With focus breathing or motion the synthetic truth lies in the middle frame's coordinates
    and the oracle runs on the frames as given, so its score includes the misregistration a
    fusion without alignment also suffers.
    """
    frames = validate_stack(frames)
    if len(focus_positions) != len(frames):
        raise InputError(f"focus_positions has {len(focus_positions)} values for {len(frames)} frames")
    depth = np.asarray(depth)
    if depth.shape != frames[0].shape[:2]:
        raise InputError(f"depth has shape {depth.shape}, frames are {frames[0].shape[:2]}")
    index = oracle_index(depth, focus_positions)
    stack = np.stack(frames)  # (K, H, W[, C])
    rows, cols = np.indices(index.shape)
    return stack[index, rows, cols]
