"""The instrument's height above the retina, from the fused frame and its depth from focus (issue 15,
part 2; paper 002: "how far the instrument tip is above the retina").

Four steps, on a copy reduced to ``work_size`` px (the live read-out must stay cheap):

1. **Retina surface.** The refined depth (``surgifuse.depth.refine_depth``) with a quadratic surface
   fitted by iteratively reweighted least squares (Cauchy weights): the eye's curvature and tilt,
   with the instrument and other outliers weighed out. Pixels of saturated colour (the orange
   retina) count more than grey ones.
2. **Instrument.** Where the depth is nearer than that surface by more than ``min_height_steps``
   *and* the colour is grey (low saturation: steel against an orange retina): connected regions,
   of which the largest that enters from the image border (an instrument reaches in from outside)
   and is elongated.
3. **Tip.** The end of that region farthest along its axis from where it enters; the axis runs
   from the entry point (the region's pixels on the border) to its farthest pixel. The tip is the
   middle of the region's last pixels along the axis (between the jaws of a forceps).
4. **Height.** The instrument's depth at the tip: a robust straight-line fit of depth along the
   axis over the region (a straight shaft rises linearly towards the microscope), evaluated at the
   tip, which is steadier than the few pixels of a thin tip. The retina's depth beneath it: a
   robust quadratic fit of the retina's depth in a disc around the tip, the instrument and its
   rim left out, evaluated at the tip. The height is the difference, in focus steps; with the focus
   step in mm, also in millimetres.

Depth is in focus steps, increasing away from the microscope (frame 0 of the stack focused
nearest), as ``surgifuse synth`` writes stacks and the live sources report focus positions.
docs/depth.md has the accuracy on generated stacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .depth import refine_depth, resolve_params

__all__ = ["DEFAULT_MAX_SATURATION", "DEFAULT_MIN_HEIGHT_STEPS", "InstrumentReading", "measure_instrument"]

#: Nearer than the retina's surface by at least this (focus steps) to count as instrument. The
#: refined retina departs from a quadratic by up to about 0.4 steps (99th percentile, tuning
#: stacks); the instrument rises 0.6-2.5 steps above it there.
DEFAULT_MIN_HEIGHT_STEPS = 0.35
#: Grey: saturation (max - min) / max below this. Steel measured 0.07-0.12 (90th percentile
#: 0.15), a fundus 0.7-0.85.
DEFAULT_MAX_SATURATION = 0.22
#: Smallest instrument region, as a fraction of the image area.
MIN_AREA_FRACTION = 0.002
#: A region enters from the border when it has pixels within this fraction of the size of it.
BORDER_FRACTION = 0.02
#: Radius of the disc around the tip where the retina beneath it is fitted (fraction of the longer side).
RETINA_RADIUS_FRACTION = 0.2
#: The instrument's depth at its tip is fitted over this much of the shaft next to the tip
#: (fraction of the longer side): far from the tip the shaft leaves the stack's depth range.
SHAFT_FIT_FRACTION = 0.3
#: The instrument's rim left out of the retina fit: the refined depth bleeds across the edge by
#: about the filter's radius scaled down (fraction of the longer side).
RIM_FRACTION = 0.03


@dataclass
class InstrumentReading:
    """What ``measure_instrument`` found.

    Attributes
    ----------
    present : bool
    tip_xy : (float, float) or None
        The tip in pixels of the input image (x right, y down).
    height_steps : float or None
        The tip's height above the retina beneath it, in focus steps (positive: above).
    height_mm : float or None
        The same in millimetres when the focus step was given in mm.
    instrument_depth_steps, retina_depth_steps : float or None
        The instrument's and the retina's depth at the tip (focus steps).
    area_fraction : float
        Share of the image the instrument region covers (0 when absent).
    """

    present: bool
    tip_xy: tuple[float, float] | None = None
    height_steps: float | None = None
    height_mm: float | None = None
    instrument_depth_steps: float | None = None
    retina_depth_steps: float | None = None
    area_fraction: float = 0.0

    def as_dict(self) -> dict:
        """The report's ``instrument`` object: ``present``, ``tip_xy``, ``height_steps``, ``height_mm``."""
        r = lambda v, n=3: None if v is None else round(float(v), n)
        return {"present": bool(self.present),
                "tip_xy": None if self.tip_xy is None else [r(self.tip_xy[0], 1), r(self.tip_xy[1], 1)],
                "height_steps": r(self.height_steps), "height_mm": r(self.height_mm, 4)}


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    top = 255.0 if image.dtype == np.uint8 else 65535.0 if image.dtype == np.uint16 else 1.0
    return image.astype(np.float32) * np.float32(1.0 / top)


def _poly_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _robust_fit(terms: np.ndarray, values: np.ndarray, weights: np.ndarray, iterations: int = 4) -> np.ndarray | None:
    """Weighted least squares, reweighted with Cauchy weights on the residuals (scale from the
    median absolute residual): ``terms`` (N, P), values and weights (N,). None if too few points.
    Normal equations (P <= 6 terms): 20x faster than an SVD for the same answer here."""
    w = weights.astype(np.float64)
    p = terms.shape[1]
    base = w.copy()
    used = base > 0
    if np.count_nonzero(used) < 2 * p:
        return None
    coef = None
    for _ in range(iterations):
        tw = terms * w[:, None]
        try:
            coef = np.linalg.solve(tw.T @ terms + 1e-9 * np.eye(p), tw.T @ values)
        except np.linalg.LinAlgError:
            return coef
        residual = values - terms @ coef
        scale = 1.4826 * float(np.median(np.abs(residual[used]))) + 1e-3
        w = base / (1.0 + (residual / (2.0 * scale)) ** 2)
    return coef


def _retina_surface(depth: np.ndarray, weights: np.ndarray, step: int = 4) -> np.ndarray:
    """A robust quadratic surface through ``depth`` (HxW), evaluated everywhere."""
    h, w = depth.shape
    xs = np.arange(0, w, step) / max(w - 1, 1) * 2 - 1
    ys = np.arange(0, h, step) / max(h - 1, 1) * 2 - 1
    x, y = np.broadcast_to(xs[None, :], (ys.size, xs.size)).ravel(), np.broadcast_to(ys[:, None], (ys.size, xs.size)).ravel()
    coef = _robust_fit(_poly_terms(x, y), depth[::step, ::step].ravel().astype(np.float64),
                       weights[::step, ::step].ravel())
    if coef is None:
        return np.full_like(depth, float(np.median(depth)))
    x = (np.arange(w, dtype=np.float32) / max(w - 1, 1) * 2 - 1)[None, :]
    y = (np.arange(h, dtype=np.float32) / max(h - 1, 1) * 2 - 1)[:, None]
    c = coef.astype(np.float32)
    return (c[0] + c[1] * x + c[3] * x * x) + (c[2] + c[5] * y) * y + c[4] * (x * y)


def _pick_region(candidate: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest connected region of ``candidate`` that holds ``seeds`` (hysteresis: a region
    must rise clearly above the retina somewhere), enters from the border and is elongated;
    returns (region mask, its pixels on the border) or None."""
    h, w = candidate.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=8)
    margin = max(1, round(BORDER_FRACTION * max(h, w)))
    border = np.zeros((h, w), bool)
    border[:margin], border[-margin:], border[:, :margin], border[:, -margin:] = True, True, True, True
    best, best_area = None, MIN_AREA_FRACTION * h * w
    for label in range(1, count):
        area = stats[label, cv2.CC_STAT_AREA]
        if area < best_area:
            continue
        region = labels == label
        if np.count_nonzero(region & seeds) < 0.25 * area:
            continue
        on_border = region & border
        if not on_border.any():
            continue
        ys, xs = np.nonzero(region)
        # Elongation: the ratio of the principal axes of the region's second moments.
        cov = np.cov(np.stack([xs, ys]).astype(np.float64))
        evals = np.linalg.eigvalsh(cov)
        if evals[0] > 0 and evals[1] / evals[0] < 4.0:
            continue
        best, best_area = (region, on_border), area
    return best


def measure_instrument(
    depth_index: np.ndarray,
    image: np.ndarray,
    *,
    confidence: np.ndarray | None = None,
    focus_step_mm: float | None = None,
    k: int | None = None,
    work_size: int = 256,
    min_height_steps: float = DEFAULT_MIN_HEIGHT_STEPS,
    max_saturation: float = DEFAULT_MAX_SATURATION,
) -> InstrumentReading:
    """Find the instrument, its tip, and the tip's height above the retina.

    Parameters
    ----------
    depth_index : ndarray, HxW
        Depth in focus steps, frame 0 focused nearest the microscope (``FusionResult.depth_index``
        of a stack in near-to-far order).
    image : ndarray, HxWx3
        The fused (all-in-focus) frame, RGB uint8/uint16 or float in [0, 1].
    confidence : ndarray, HxW, optional
        ``FusionResult.confidence``; None: every pixel counts the same (the live path).
    focus_step_mm : float, optional
        Distance between neighbouring focus positions in mm: ``height_mm`` is then filled in.
    k : int, optional
        Frames in the stack (depth K-1 is the farthest focus); default: the depth's largest value.
    work_size : int
        Longer side of the reduced copy the measurement runs on.
    min_height_steps, max_saturation : float
        Instrument = nearer than the retina's surface by at least ``min_height_steps`` and of
        saturation below ``max_saturation``.

    Returns
    -------
    InstrumentReading

    Examples
    --------
    >>> import numpy as np
    >>> depth = np.full((120, 160), 3.0, np.float32); image = np.zeros((120, 160, 3), np.uint8)
    >>> image[...] = (200, 90, 40)                            # an orange retina at 3 steps
    >>> depth[56:64, :100] = 1.0; image[56:64, :100] = 150    # a grey shaft at 1 step, from the left
    >>> reading = measure_instrument(depth, image, focus_step_mm=0.5)
    >>> reading.present, round(reading.height_steps, 1), round(reading.height_mm, 1)
    (True, 2.0, 1.0)
    """
    if not isinstance(depth_index, np.ndarray) or depth_index.ndim != 2:
        raise InputTypeError(f"depth_index must be an HxW numpy array, got {getattr(depth_index, 'shape', type(depth_index))}")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != depth_index.shape:
        raise InputError(f"image must be HxWx3 RGB with HxW = {depth_index.shape}, got {getattr(image, 'shape', None)}")
    if focus_step_mm is not None and not (isinstance(focus_step_mm, (int, float)) and math.isfinite(focus_step_mm)
                                          and focus_step_mm > 0):
        raise InputError(f"focus_step_mm must be a number > 0, got {focus_step_mm!r}", field="focus_step_mm")
    h, w = depth_index.shape
    params = resolve_params((h, w), work_size=work_size)
    wh, ww = params.work_shape
    sx, sy = w / ww, h / wh  # work px -> input px

    depth, support = refine_depth(depth_index, confidence, image, work_size=work_size, full_size=False)
    # The fits below use the measured depth itself, weighted by its confidence: the refined map
    # bleeds the instrument's depth into the retina around it by up to the filter's radius.
    size = None if (wh, ww) == (h, w) else (ww, wh)
    raw = np.asarray(depth_index, np.float32)
    raw = raw if size is None else cv2.resize(raw, size, interpolation=cv2.INTER_NEAREST)
    if confidence is None:
        weight = np.ones((wh, ww), np.float32)
    else:
        weight = np.asarray(confidence, np.float32)
        weight = weight if size is None else cv2.resize(weight, size, interpolation=cv2.INTER_NEAREST)
    small = image if (wh, ww) == (h, w) else cv2.resize(image, (ww, wh), interpolation=cv2.INTER_LINEAR)
    r, g, b = cv2.split(_unit_rgb(small))
    top, bottom = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    saturation = (top - bottom) / (top + np.float32(1e-3))
    grey = saturation < max_saturation

    # 1. The retina's surface, from the coloured pixels foremost.
    surface = _retina_surface(depth, support * np.clip(saturation * 3.0, 0.05, 1.0))
    nearer = surface - depth
    # 2. The instrument: nearer than the surface, and grey; cleaned of specks and pinholes.
    candidate = ((nearer > min_height_steps) & grey).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    candidate = cv2.morphologyEx(cv2.morphologyEx(candidate, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    picked = _pick_region(candidate > 0, seeds=(nearer > 2 * min_height_steps) & grey)
    if picked is None:
        return InstrumentReading(present=False)
    region, on_border = picked

    # 3. The tip: the far end along the axis from the entry point.
    ys, xs = np.nonzero(region)
    by, bx = np.nonzero(on_border)
    entry = np.array([bx.mean(), by.mean()])
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    far = points[np.argmax(((points - entry) ** 2).sum(axis=1))]
    axis = far - entry
    length = float(np.hypot(*axis))
    if length < 1.0:
        return InstrumentReading(present=False)
    axis /= length
    along = (points - entry) @ axis  # 0 at the entry .. length at the tip
    end = along.max()
    last = along >= end - max(2.0, 0.03 * max(wh, ww))
    across = np.array([-axis[1], axis[0]])
    tip = entry + axis * end + across * float(((points[last] - entry) @ across).mean())

    # 4a. The instrument's depth at the tip: a straight line along the axis, robust, away from the
    # rim, over the part of the shaft near the tip; depths at the ends of the stack's range are
    # censored (beyond the nearest focus the depth index stays 0) and left out.
    inner = cv2.erode(region.astype(np.uint8), kernel) > 0
    use = inner[ys, xs] if inner.any() else np.ones(len(xs), bool)
    use &= along >= end - SHAFT_FIT_FRACTION * max(wh, ww)
    values = raw[ys, xs]
    uncensored = use & (values > 0.02) & (values < (k - 1 if k else float(raw.max())) - 0.02)
    if np.count_nonzero(uncensored) >= 10:
        use = uncensored
    u = (along[use] - end) / max(wh, ww)
    shaft_values, shaft_weights = values[use].astype(np.float64), weight[ys[use], xs[use]] + 1e-3
    coef = _robust_fit(np.stack([np.ones_like(u), u], axis=1), shaft_values, shaft_weights)
    if coef is not None and coef[1] < 0:
        # A shaft that gets deeper away from its tip would run into the retina: what made the
        # slope is something else grey and near joined to the region. The level near the tip then.
        near_tip = u >= -0.1
        coef = _robust_fit(np.ones((int(near_tip.sum()), 1)), shaft_values[near_tip], shaft_weights[near_tip])
    instrument_depth = float(coef[0]) if coef is not None else float(np.median(values[use]))

    # 4b. The retina beneath it: a robust quadratic in a disc around the tip, without the instrument and its rim.
    rim = max(1, round(RIM_FRACTION * max(wh, ww)))
    around = cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1))) == 0
    radius = RETINA_RADIUS_FRACTION * max(wh, ww)
    x0, x1 = max(0, int(tip[0] - radius)), min(ww, int(tip[0] + radius) + 1)
    y0, y1 = max(0, int(tip[1] - radius)), min(wh, int(tip[1] + radius) + 1)
    gx, gy = np.arange(x0, x1)[None, :], np.arange(y0, y1)[:, None]
    disc = ((gx - tip[0]) ** 2 + (gy - tip[1]) ** 2 <= radius ** 2) & around[y0:y1, x0:x1]
    retina_depth = None
    if np.count_nonzero(disc) >= 20:
        dy_, dx_ = np.nonzero(disc)
        dy_, dx_ = dy_ + y0, dx_ + x0
        if dx_.size > 2000:  # a regular subsample is as good for six coefficients
            keep = slice(None, None, dx_.size // 2000 + 1)
            dy_, dx_ = dy_[keep], dx_[keep]
        dx, dy = (dx_ - tip[0]) / radius, (dy_ - tip[1]) / radius
        coef = _robust_fit(_poly_terms(dx, dy), raw[dy_, dx_].astype(np.float64), weight[dy_, dx_] + 1e-3)
        if coef is not None:
            retina_depth = float(coef[0])
    if retina_depth is None:
        ty, tx = int(np.clip(round(tip[1]), 0, wh - 1)), int(np.clip(round(tip[0]), 0, ww - 1))
        retina_depth = float(surface[ty, tx])

    height = retina_depth - instrument_depth
    tip_xy = ((tip[0] + 0.5) * sx - 0.5, (tip[1] + 0.5) * sy - 0.5)
    return InstrumentReading(
        present=True, tip_xy=(float(tip_xy[0]), float(tip_xy[1])), height_steps=float(height),
        height_mm=None if focus_step_mm is None else float(height * focus_step_mm),
        instrument_depth_steps=instrument_depth, retina_depth_steps=retina_depth,
        area_fraction=float(region.mean()))
