"""One live processing step: push the new frame into the rolling focal stack, fuse, guard against motion.

Synchronous and single-threaded on purpose: the pipeline runs it in its fusion worker under a time
budget, and the motion-guard evaluation runs it frame by frame against the generator's truth.
"""

from __future__ import annotations

import time

import numpy as np

from surgifuse.engines.base import Engine
from surgifuse.errors import InputError, InputTypeError

from .frames import CapturedFrame, ProcessedFrame
from .motion_guard import MotionGuard


class FrameProcessor:
    """Rolling focal stack (``surgifuse.buffer.FocalStackBuffer``) + engine + optional motion guard.

    Parameters
    ----------
    engine : Engine
    k : int
        Stack size: the last ``k`` frames are fused.
    align : bool
        Align each frame of the stack to the newest (global shift and scale) in the buffer.
    guard : MotionGuard, optional
        None turns the motion guard off.
    """

    def __init__(self, engine: Engine, *, k: int = 5, align: bool = True, guard: MotionGuard | None = None) -> None:
        if not isinstance(engine, Engine):
            raise InputTypeError(f"engine must be a surgifuse Engine, got {type(engine).__name__}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"k must be an int >= 1, got {k!r}")
        from surgifuse.buffer import FocalStackBuffer

        self.engine, self.k, self.align, self.guard = engine, k, align, guard
        self.buffer = FocalStackBuffer(k, engine=engine, align=align)
        self._shape: tuple | None = None
        self._dtype: np.dtype | None = None

    def process(self, captured: CapturedFrame) -> ProcessedFrame:
        """Push ``captured`` and return the fused (and guarded) result for the stack that ends with it."""
        if captured.image.shape != self._shape or captured.image.dtype != self._dtype:
            if self.engine.spec is not None:
                # A camera that delivers what the engine cannot take (16-bit to fn, say) fails here,
                # once per frame, clearly, and the pipeline's fail-safe shows the raw frames.
                self.engine.spec.check_frame(captured.image.shape, captured.image.dtype)
            if self._shape is not None:
                self.buffer.clear()  # the source changed size (re-opened with other settings): start a new stack
            self._shape, self._dtype = captured.image.shape, captured.image.dtype
        t0 = time.perf_counter()
        self.buffer.push(captured.image, meta={"seq": captured.seq, "capture_ms": captured.capture_ms,
                                               "focus": captured.focus})
        t1 = time.perf_counter()
        frames, metas = list(self.buffer.frames), list(self.buffer.metas)
        seqs = [int(m["seq"]) if m else -1 for m in metas]
        newest = int(np.argmax(seqs))
        guarding = self.guard is not None and len(frames) > 1
        guarded_in_decision = guarding and getattr(self.engine, "relabels", False)
        fraction = 0.0
        if guarded_in_decision:
            # The guard changes the decision before the blend: one full-size pass instead of two.
            override: list[float] = []
            result = self.buffer.fuse(relabel=lambda decided: override.append(
                self.guard.relabel(frames, newest, decided)[0]), full_maps=False)
            fraction = override[0] if override else 0.0
        else:
            result = self.buffer.fuse()
        t2 = time.perf_counter()
        image, depth = result.image, result.depth_index
        if guarding and not guarded_in_decision:
            # In place unless the engine handed back memory of a buffered frame (it would be changed).
            owned = not any(np.may_share_memory(image, f) for f in frames)
            guarded = self.guard.apply(frames, newest, image, depth, in_place=owned)
            image, depth, fraction = guarded.image, guarded.depth_index, guarded.fraction
        t3 = time.perf_counter()
        # The stack is fused in the coordinates of the frame it was anchored on; the display must
        # show where the eye is now: back into the newest frame's coordinates, and where the stack
        # does not cover the current view, the newest frame itself.
        transform = self.buffer.newest_transform
        if transform is not None:
            from surgifuse.align import warp_onto

            image = warp_onto(image, transform.inverse(), captured.image)
        depth = reproject_depth(depth, result.map_factor, transform, newest)
        t4 = time.perf_counter()
        # The guard's time is its own stage wherever it ran (inside the engine's fusion or after it).
        relabel_ms = result.timings.get("relabel", 0.0) if guarded_in_decision else 0.0
        timings = {"prepare": (t1 - t0) * 1000.0, "fuse": (t2 - t1) * 1000.0 - relabel_ms,
                   "guard": (t3 - t2) * 1000.0 + relabel_ms, "reproject": (t4 - t3) * 1000.0}
        return ProcessedFrame(seq=captured.seq, capture_ms=captured.capture_ms, raw=captured.image, image=image,
                              depth=depth, fused=True, engine=self.engine.name, k=len(frames), frame_seqs=seqs,
                              timings=timings, guard_fraction=fraction,
                              frame_focus=[m.get("focus") if m else None for m in metas],
                              depth_factor=result.map_factor)


def reproject_depth(depth: np.ndarray, factor: int, transform, newest: int) -> np.ndarray:
    """The fused depth index in the newest frame's coordinates, on its own grid.

    ``depth`` is in the stack's coordinates, one value per ``factor`` x ``factor`` block; it is
    moved back by ``transform`` (raw -> stack, None: identity) at its own scale: at 1080p a sixteenth
    of the pixels to warp, and no enlargement unless a consumer asks (``ProcessedFrame.depth_map``).
    Nearest for the warp: interpolating between the labels of two frames would invent a depth at
    every boundary. Outside the stack's view the newest frame shows, at its own index.
    """
    from surgifuse.align import warp
    from surgifuse.scaled_decision import on_block_grid

    depth = np.ascontiguousarray(depth, dtype=np.float32)
    if transform is None:
        return depth
    back = transform.inverse() if factor == 1 else on_block_grid(transform.inverse(), factor)
    return warp(depth, back, interpolation="nearest", fill=float(newest))
