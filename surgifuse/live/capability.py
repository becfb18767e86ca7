"""Whether an engine keeps up with the live frame rate on this machine: measured, not declared.

An engine's speed depends on the frame size, K, alignment, the motion guard and the machine (its
cores, its instruction set, what else runs on it), so the live pipeline measures the real step
(``FrameProcessor.process``: push, fuse, guard, reproject) on a synthetic focus sweep of the live
frame size, and warns when it does not fit the budget: the fail-safe would then show raw frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from .frames import CapturedFrame, wall_ms

__all__ = ["LiveCapability", "measure_live_step", "sweep_frames"]

#: Full updates timed after the stack is full; their median is the verdict.
UPDATES = 3


@dataclass(frozen=True)
class LiveCapability:
    """``step_ms``: the measured time of one live update; ``budget_ms``: what it had."""

    step_ms: float
    budget_ms: float
    engine: str
    shape: tuple[int, ...]
    k: int

    @property
    def fits(self) -> bool:
        return self.step_ms <= self.budget_ms

    def warning(self) -> str | None:
        """A line for the operator when the engine does not fit, else None."""
        if self.fits:
            return None
        h, w = self.shape[:2]
        return (f"engine {self.engine!r} needs about {self.step_ms:.0f} ms per frame at {w}x{h} with K={self.k} on "
                f"this machine, over the {self.budget_ms:.0f} ms budget: the display will show raw frames "
                f"(choose a faster engine, a smaller K or frame, or a larger budget)")


def sweep_frames(shape: tuple[int, ...], count: int, *, seed: int = 0) -> list[np.ndarray]:
    """``count`` uint8 frames of one textured scene, each sharp in another band (a focus sweep)."""
    h, w = shape[:2]
    rng = np.random.default_rng(seed)
    scene = cv2.resize(rng.integers(0, 256, (max(1, h // 4), max(1, w // 4), 3), dtype=np.uint8), (w, h),
                       interpolation=cv2.INTER_NEAREST)
    frames = []
    for i in range(count):
        blurred = cv2.GaussianBlur(scene, (0, 0), 2.5)
        band = slice(i * w // max(count, 1), (i + 1) * w // max(count, 1))
        blurred[:, band] = scene[:, band]
        frames.append(blurred if len(shape) == 3 else cv2.cvtColor(blurred, cv2.COLOR_RGB2GRAY))
    return frames


def measure_live_step(processor, shape: tuple[int, ...], *, budget_ms: float, engine: str, k: int) -> LiveCapability:
    """Time ``processor.process`` on a synthetic sweep of ``shape`` until the stack is full and
    ``UPDATES`` more frames went through, and return the median update.

    Stops early when an update after the first (which pays one-off set-up such as ONNX Runtime's
    first run) takes over twice the budget: the verdict is clear, and an engine that needs seconds
    per frame must not hold the caller for K of them.
    """
    times = []
    for seq, frame in enumerate(sweep_frames(shape, k + UPDATES)):
        t0 = time.perf_counter()
        processor.process(CapturedFrame(frame, seq, wall_ms()))
        ms = (time.perf_counter() - t0) * 1000.0
        if seq == 0:
            continue
        if seq >= k or ms > 2 * budget_ms:
            times.append(ms)
        if ms > 2 * budget_ms:
            break
    return LiveCapability(step_ms=float(np.median(times)), budget_ms=budget_ms, engine=engine, shape=tuple(shape), k=k)
