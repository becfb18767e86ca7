"""Depth from each pixel's focus curve: how sharp every frame of the stack is there, and where
between two frames the sharpness peaks.

The fusion engines pick, per pixel, the frame to take colour from; their depth index is that
choice, and it is a staircase: the classical engine's focus measure is thresholded and summed over
3x3 pixels, so one step away from focus it has fallen to almost nothing and its three-point
parabola puts nearly every pixel on a whole frame (docs/depth.md: a true offset of 0.35 step read
0.07). Depth needs the opposite trade: a focus measure that falls off smoothly across frames, so
that the peak can be placed between them. Here the measure is the squared Laplacian of the grey
frame averaged by a Gaussian a few pixels wide (``SIGMA_FRACTION`` of the image), and the peak is
the vertex of a parabola through the logarithms of the three values around the best frame (exact
for a Gaussian-shaped focus curve). A confidence says where the curve has a clear peak (best well
above the average over the frames) and texture at all (best above a small share of the image's
typical best). ``surgifuse.depth.refine_depth`` then fills and smooths it along the image's edges.

The frames arrive one at a time (``add``), so that a stack of any depth, streamed from disk,
keeps only a few maps of the reduced size; the result is the same as over a list.

On the tuning stacks (``surgifuse.synth`` seeds 3000-3011, 512x512, K=5; never the validation
material), refined: rank correlation 0.917 -> 0.943, mean error 0.291 -> 0.184 steps, error at
instrument edges 0.590 -> 0.591 against the engine's depth index (docs/depth.md); Gaussian widths
of 1, 2, 3, 6 and 8 px at 512 gave 0.899-0.940 and 0.172-0.421 steps, and more edge error above 4.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError, InputTypeError

__all__ = ["FocusCurve", "SIGMA_FRACTION", "WORK_SIZE", "depth_from_focus_curve"]

#: Width of the Gaussian that averages the squared Laplacian, as a share of the working image's
#: longer side: 4 px at 512 (tuning above).
SIGMA_FRACTION = 4 / 512
#: Longer side (px) of the copy the focus curve is measured on: larger frames are area-reduced to
#: it (1080p by 1.9x), which keeps the Gaussian's cost and the maps' memory bounded for deep stacks.
WORK_SIZE = 1024
#: A pixel's best focus below this share of the median best focus over the image has no texture
#: to measure: its confidence falls towards 0 (0.01-0.5 changed the tuning scores by < 0.005 step).
TEXTURE_SHARE = 0.05


class FocusCurve:
    """Accumulates, frame by frame, each pixel's focus curve over a stack in near-to-far order.

    Parameters
    ----------
    shape : (H, W) or (H, W, C)
        The frames' shape; every ``add`` must match it.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sharp = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    >>> import cv2
    >>> frames = [cv2.GaussianBlur(sharp, (0, 0), s) if s else sharp for s in (3.0, 1.5, 0, 1.5, 3.0)]
    >>> curve = FocusCurve(sharp.shape)
    >>> for f in frames:
    ...     curve.add(f)
    >>> depth, confidence = curve.result()
    >>> round(float(np.median(depth)), 1), bool(np.median(confidence) > 0.5)
    (2.0, True)
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape[:2]) < 1:
            raise InputError(f"frames must be HxW or HxWxC, got shape {shape}")
        self.shape = shape
        h, w = shape[:2]
        scale = min(1.0, WORK_SIZE / max(h, w))
        self.work_shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        self.sigma = SIGMA_FRACTION * max(self.work_shape)
        self.count = 0
        self._best = self._index = self._before = self._after = self._previous = self._sum = None

    def add(self, frame: np.ndarray, transform=None) -> None:
        """The next frame of the stack (nearer focus first), registered like the others.

        ``transform`` (``surgifuse.align.SimilarityTransform``, raw frame -> the stack's
        coordinates): the frame is given raw, its sharpness measured as it is and the measure moved
        (linear: it is smooth at the Gaussian's scale). Cheaper than warping the frame whole, and
        resampling does not soften the moved frames' measure.
        """
        frame = np.asarray(frame)
        if frame.shape != self.shape:
            raise InputError(f"frame {self.count} has shape {frame.shape}, the stack {self.shape}")
        f = self._measure(frame)
        if transform is not None:
            from .scaled_decision import on_block_grid

            h, w = self.work_shape
            moved = on_block_grid(transform, self.shape[1] / w)  # in the working copy's pixels
            f = cv2.warpAffine(f, moved.matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.count == 0:
            self._best, self._previous, self._sum = f.copy(), f, f.astype(np.float64)
            self._index = np.zeros(f.shape, np.int32)
            self._before = np.full(f.shape, np.nan, np.float32)
            self._after = np.full(f.shape, np.nan, np.float32)
        else:
            peak_was_last = self._index == self.count - 1
            self._after[peak_was_last] = f[peak_was_last]
            better = f > self._best
            self._before[better] = self._previous[better]
            self._after[better] = np.nan
            self._best[better] = f[better]
            self._index[better] = self.count
            self._previous = f
            self._sum += f
        self.count += 1

    def result(self, *, full_size: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(depth, confidence)``, float32: depth in frames (0..K-1, with the sub-frame peak),
        confidence in [0, 1]; at the frames' size (``full_size``) or the working size."""
        if self.count == 0:
            raise InputError("no frames were added")
        best, before, after = self._best, self._before, self._after
        log0 = np.log(best + _FLOOR)
        with np.errstate(invalid="ignore"):
            logm, logp = np.log(before + _FLOOR), np.log(after + _FLOOR)
            curvature = logm - 2.0 * log0 + logp
            inner = np.isfinite(curvature) & (curvature < -1e-6)  # a peak with a frame on each side
            offset = np.where(inner, 0.5 * (logm - logp) / np.where(inner, curvature, -1.0), 0.0)
        depth = (self._index + np.clip(offset, -0.5, 0.5)).astype(np.float32)
        mean = (self._sum / self.count).astype(np.float32)
        contrast = np.clip(1.0 - mean / np.maximum(best, 1e-12), 0.0, 1.0)
        texture = np.clip(best / (TEXTURE_SHARE * float(np.median(best)) + 1e-12), 0.0, 1.0)
        confidence = (contrast * texture).astype(np.float32)
        if full_size and self.work_shape != self.shape[:2]:
            size = (self.shape[1], self.shape[0])
            depth = cv2.resize(depth, size, interpolation=cv2.INTER_LINEAR)
            confidence = cv2.resize(confidence, size, interpolation=cv2.INTER_LINEAR)
        return depth, confidence

    def _measure(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype == np.uint8:
            scale = 1.0 / 255.0
        elif frame.dtype == np.uint16:
            scale = 1.0 / 65535.0
        elif np.issubdtype(frame.dtype, np.floating):
            scale = 1.0
        else:
            raise InputTypeError(f"frames must be uint8, uint16 or float, got {frame.dtype}")
        grey = frame.astype(np.float32)
        if grey.ndim == 3:
            grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY) if grey.shape[2] == 3 else grey.mean(axis=2)
        grey *= np.float32(scale)
        if grey.shape != self.work_shape:
            grey = cv2.resize(grey, (self.work_shape[1], self.work_shape[0]), interpolation=cv2.INTER_AREA)
        lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
        return cv2.GaussianBlur(lap * lap, (0, 0), self.sigma)


#: Added before the logarithm: a flat pixel's zero focus must not give -inf.
_FLOOR = 1e-9


def depth_from_focus_curve(frames, *, full_size: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``FocusCurve`` over a whole stack (a sequence of frames in near-to-far order)."""
    frames = list(frames)
    if len(frames) < 1:
        raise InputError("a focal stack needs at least one frame, got 0")
    curve = FocusCurve(np.asarray(frames[0]).shape)
    for f in frames:
        curve.add(f)
    return curve.result(full_size=full_size)
