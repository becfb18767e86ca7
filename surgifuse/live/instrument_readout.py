"""The instrument read-out of the live display: the tip and its height above the retina, measured on
each published frame's fused image and depth (``surgifuse.instrument``), for the stream's header.

The live depth is an index into the rolling stack, in capture order; the frames' focus positions
(``ProcessedFrame.frame_focus``, 0 nearest .. 1 farthest) turn it into focus position, and the
spacing of the sweep's positions into focus steps. Without focus positions the order of depth is
unknown and there is no read-out. Runs on a copy reduced to ``WORK_SIZE`` px (its cost at 1080p is
in docs/depth.md), in the encoder thread, once per frame whatever the number of clients.
"""

from __future__ import annotations

import cv2
import numpy as np

from surgifuse.instrument import measure_instrument

from .frames import ProcessedFrame

__all__ = ["WORK_SIZE", "focus_steps", "instrument_header"]

#: Longer side (px) of the copy the read-out is measured on.
WORK_SIZE = 256
#: The stack spans the sweep when its focus positions reach 0 and 1 within this.
SPAN_TOLERANCE = 1e-6


def focus_steps(focus: list[float | None]) -> tuple[np.ndarray, float] | None:
    """Per stack frame its focus position, and the sweep's focus step (the smallest spacing between
    distinct positions), or None when a frame's position is unknown or all are the same."""
    if not focus or any(f is None for f in focus):
        return None
    positions = np.asarray(focus, np.float64)
    distinct = np.unique(np.round(positions, 6))
    if distinct.size < 2:
        return None
    return positions, float(np.diff(distinct).min())


def instrument_header(processed: ProcessedFrame, *, warning_steps: float, focus_step_mm: float | None = None,
                      work_size: int = WORK_SIZE) -> dict | None:
    """The header's ``instrument`` object for a processed frame, or None (unfused, no depth, no
    focus positions, or a stack that does not span the sweep from focus 0 to 1). Keys: ``present``, ``tip_xy`` (px of the published frame), ``height_steps``,
    ``height_mm`` (with ``focus_step_mm``), ``warning`` (height below ``warning_steps``) and
    ``warning_steps``."""
    if not processed.fused or processed.depth is None or processed.k < 2:
        return None
    steps = focus_steps(processed.frame_focus)
    if steps is None:
        return None
    positions, step = steps
    if positions.min() > SPAN_TOLERANCE or positions.max() < 1.0 - SPAN_TOLERANCE:
        # A rolling stack over a back-and-forth sweep often lacks the nearest or the farthest focus
        # positions; depth beyond them is clamped to the ones it holds, and a height from clamped
        # depth is wrong (too small where the retina is clamped: a false warning). Measured on the
        # frames whose stack spans the sweep only (2 in 2(K-1) of a K-position sweep with K frames).
        return None
    image = processed.image
    h, w = image.shape[:2]
    scale = min(1.0, work_size / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # straight from the depth's own grid (full size or the decision's blocks) to the work size
        depth = cv2.resize(processed.depth, size, interpolation=cv2.INTER_NEAREST)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    else:
        depth = processed.depth_map()
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    # stack index -> focus position (piecewise linear, as the depth view's colours) -> focus steps
    lut_index = np.arange(positions.size, dtype=np.float64)
    in_steps = (np.interp(depth.astype(np.float64), lut_index, positions) / step).astype(np.float32)
    k_steps = round(1.0 / step) + 1  # focus positions span 0..1 over the sweep
    reading = measure_instrument(in_steps, image, focus_step_mm=focus_step_mm, k=k_steps, work_size=work_size)
    out = reading.as_dict()
    if reading.tip_xy is not None and scale < 1.0:
        sx, sy = w / depth.shape[1], h / depth.shape[0]
        out["tip_xy"] = [round((reading.tip_xy[0] + 0.5) * sx - 0.5, 1), round((reading.tip_xy[1] + 0.5) * sy - 0.5, 1)]
    out["warning"] = bool(reading.present and reading.height_steps is not None and reading.height_steps < warning_steps)
    out["warning_steps"] = float(warning_steps)
    return out
