"""Depth accuracy against a generator's truth: depth (mm) converted to focus steps, rank correlation,
mean error in focus steps and the error along the instrument's edges (docs/depth.md).

A focus step is the distance between two neighbouring focus positions of the stack: depth index 0
is the first frame's focus, 1 the next... The truth in mm becomes steps by interpolation over the
focus positions, clamped to [0, K-1]: beyond the first and the last focus a depth from focus can
say nothing more (``depth_in_steps(..., clamp=False)`` extrapolates linearly, for heights).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from surgifuse.errors import InputError

__all__ = ["depth_accuracy", "depth_in_steps", "edge_band"]


def depth_in_steps(depth_mm, focus_positions: Sequence[float], *, clamp: bool = True) -> np.ndarray:
    """Depth (mm) as focus steps: the (fractional) index of the focus position at that depth.

    ``focus_positions`` must be strictly monotonic (either direction). With ``clamp`` the result is
    in [0, K-1]; without, depths outside the focus range continue with the end steps' spacing.

    >>> depth_in_steps(np.array([10.0, 10.25, 11.0]), [10.0, 10.5, 11.0]).tolist()
    [0.0, 0.5, 2.0]
    """
    fp = np.asarray(focus_positions, dtype=np.float64)
    if fp.ndim != 1 or fp.size < 2:
        raise InputError(f"focus_positions must hold at least 2 values, got {fp.size}")
    diffs = np.diff(fp)
    if not (np.all(diffs > 0) or np.all(diffs < 0)):
        raise InputError("focus_positions must be strictly increasing or decreasing")
    if diffs[0] < 0:
        fp = fp[::-1]
        index = np.arange(fp.size - 1, -1, -1, dtype=np.float64)
    else:
        index = np.arange(fp.size, dtype=np.float64)
    z = np.asarray(depth_mm, dtype=np.float64)
    steps = np.interp(z, fp, index)
    if not clamp:
        lo, hi = z < fp[0], z > fp[-1]
        steps = np.where(lo, index[0] + (z - fp[0]) * (index[1] - index[0]) / (fp[1] - fp[0]), steps)
        steps = np.where(hi, index[-1] + (z - fp[-1]) * (index[-1] - index[-2]) / (fp[-1] - fp[-2]), steps)
    return steps.astype(np.float32) if isinstance(steps, np.ndarray) and steps.ndim else float(steps)


def edge_band(mask: np.ndarray, radius: int = 5) -> np.ndarray:
    """Pixels within ``radius`` px of the boundary of ``mask`` (both sides): bool HxW."""
    m = np.asarray(mask, dtype=np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return (cv2.dilate(m, kernel) > 0) & ~(cv2.erode(m, kernel, borderType=cv2.BORDER_REPLICATE) > 0)


def depth_accuracy(estimate: np.ndarray, truth_steps: np.ndarray, *, instrument_mask: np.ndarray | None = None,
                   border: int = 8, edge_radius: int = 5) -> dict:
    """How well ``estimate`` (focus steps) matches ``truth_steps``.

    Returns ``{"rank_correlation", "mean_error_steps", "edge_error_steps"}``: Spearman's rank
    correlation and the mean absolute error over the image less ``border`` px on each side, and the
    mean absolute error within ``edge_radius`` px of the instrument's boundary (NaN without an
    instrument).
    """
    from scipy.stats import spearmanr

    est, truth = np.asarray(estimate, np.float32), np.asarray(truth_steps, np.float32)
    if est.shape != truth.shape or est.ndim != 2:
        raise InputError(f"estimate {est.shape} and truth {truth.shape} must be the same HxW shape")
    inner = (slice(border, est.shape[0] - border), slice(border, est.shape[1] - border))
    e, t = est[inner], truth[inner]
    error = np.abs(e - t)
    rho = float(spearmanr(e.ravel(), t.ravel()).statistic) if e.size > 2 else float("nan")
    edge = float("nan")
    if instrument_mask is not None and np.any(instrument_mask):
        band = edge_band(instrument_mask, edge_radius)[inner]
        if band.any():
            edge = float(error[band].mean())
    return {"rank_correlation": rho, "mean_error_steps": float(error.mean()), "edge_error_steps": edge}
