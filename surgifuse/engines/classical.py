"""Classical fusion engine, the real-time default: FMB focus maps, arg-max decision, majority filter, blend.

Per pixel the frame with the largest sum-modified-Laplacian focus measure wins (Nayar & Nakagawa
1994; the FMB of the Fusion Network paper), the label map is cleaned by a majority filter
(consistency verification, Li, Manjunath & Mitra 1995) and label boundaries are blended by label
fractions. Per new frame a live buffer pays one focus map plus one decision pass.
See docs/classical-engine.md.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .. import decision
from ..focus_measure import FOCUS_MAP_MODES, focus_map
from .base import Engine, FusionResult, validate_stack

# Tuned on synthetic seeds 1000-1029 (scripts/quality_classical.py --tune); see docs.
DEFAULT_FILTER_RADIUS = decision.DEFAULT_FILTER_RADIUS
DEFAULT_BLEND_RADIUS = decision.DEFAULT_BLEND_RADIUS
DEFAULT_FLAT_THRESHOLD = 0


def _int_option(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"classical engine option {name} must be an int, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise InputError(f"classical engine option {name} must be in [{low}, {high}], got {value}")
    return int(value)


class ClassicalEngine(Engine):
    """FMB decision-map fusion.

    Parameters
    ----------
    mode : {"fmb3", "fmb1"}
        Focus per pixel summed over the RGB channels (FMB3) or of the grey image (FMB1).
    step, threshold, window : int
        Focus measure settings (modified-Laplacian spacing, per-pixel threshold T, window
        radius N): the paper's step=1, T=7, 3x3 window (N=1).
    filter_radius : int
        Majority filter of the arg-max labels over (2r+1)^2 pixels, 0..7 (0: off).
    blend_radius : int
        Label-fraction blend over (2r+1)^2 pixels at label boundaries, 0..7 (0: hard seams).
    flat_threshold : int
        Pixels whose best focus value is at or below this carry no information: where they are
        the majority, the output is the average of all frames (noise averages out; any frame would
        do, flat regions look the same in every frame).
    threads : int
        Threads of the native pool; 0 for its default (``SURGIFUSE_NUM_THREADS`` or the CPUs).
    device : {"cpu", "cuda"}
        Where the decision runs (the focus map runs on the CPU either way).

    Notes
    -----
    ``timings`` of a result: ``focus_measure`` is the time spent in ``prepare_frame`` since the
    previous fusion (one frame in a live buffer, K frames in ``fuse``), ``decision`` the decision
    and blend. An instance is not thread-safe (it keeps that time between the two calls).

    Examples
    --------
    >>> import numpy as np
    >>> frames = [np.zeros((32, 32, 3), np.uint8) for _ in range(3)]
    >>> result = ClassicalEngine().fuse(frames)
    >>> result.image.shape, result.depth_index.dtype.name
    ((32, 32, 3), 'float32')
    """

    name = "classical"
    # The prepared data is an HxW focus map: an aligning buffer measures focus on the raw frame and
    # warps the map (surgifuse.buffer.prepare_aligned), since interpolation lowers measured focus.
    prepares_pixel_map = True

    def __init__(
        self,
        *,
        mode: str = "fmb3",
        step: int = 1,
        threshold: int = 7,
        window: int = 1,
        filter_radius: int = DEFAULT_FILTER_RADIUS,
        blend_radius: int = DEFAULT_BLEND_RADIUS,
        flat_threshold: int = DEFAULT_FLAT_THRESHOLD,
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        if mode not in FOCUS_MAP_MODES:
            raise InputError(f"classical engine option mode must be one of {', '.join(FOCUS_MAP_MODES)}, got {mode!r}")
        if device not in ("cpu", "cuda"):
            raise InputError(f"classical engine option device must be 'cpu' or 'cuda', got {device!r}")
        self.mode = mode
        self.step = _int_option("step", step, 1, 64)
        self.threshold = _int_option("threshold", threshold, 0, 2**20)
        self.window = _int_option("window", window, 0, 16)
        self.filter_radius = _int_option("filter_radius", filter_radius, 0, decision.MAX_RADIUS)
        self.blend_radius = _int_option("blend_radius", blend_radius, 0, decision.MAX_RADIUS)
        self.flat_threshold = _int_option("flat_threshold", flat_threshold, 0, 2**32 - 1)
        self.threads = _int_option("threads", threads, 0, 4096)
        if device == "cuda":
            from .. import _core

            if not hasattr(_core, "fuse_stack_cuda"):
                raise InputError("classical engine option device='cuda' needs surgifuse built with CUDA")
            if _core.cuda_device_count() < 1:
                raise InputError("classical engine option device='cuda' but no CUDA device is visible")
        self.device = device
        self._prepare_ms = 0.0

    @property
    def options(self) -> dict:
        """The options this engine was built with (``ClassicalEngine(**engine.options)`` rebuilds it)."""
        return {
            "mode": self.mode,
            "step": self.step,
            "threshold": self.threshold,
            "window": self.window,
            "filter_radius": self.filter_radius,
            "blend_radius": self.blend_radius,
            "flat_threshold": self.flat_threshold,
            "threads": self.threads,
            "device": self.device,
        }

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """The frame's focus map (uint32 HxW): the per-frame work a live buffer caches."""
        t0 = time.perf_counter()
        fm = focus_map(
            frame, mode=self.mode, step=self.step, threshold=self.threshold, window=self.window, threads=self.threads
        )
        self._prepare_ms += (time.perf_counter() - t0) * 1000.0
        return fm

    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared: Sequence[Any]) -> FusionResult:
        """Fuse K frames given their focus maps (``prepare_frame``), in the same order."""
        frames = validate_stack(frames)
        prepared = list(prepared)
        if len(prepared) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(prepared)} prepared focus maps: K must match")
        t0 = time.perf_counter()
        out = decision.fuse_stack(
            frames,
            prepared,
            filter_radius=self.filter_radius,
            blend_radius=self.blend_radius,
            flat_threshold=self.flat_threshold,
            threads=self.threads,
            device=self.device,
        )
        decision_ms = (time.perf_counter() - t0) * 1000.0
        timings = {"focus_measure": self._prepare_ms, "decision": decision_ms}
        self._prepare_ms = 0.0
        return FusionResult(image=out.image, depth_index=out.depth_index, confidence=out.confidence, timings=timings)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"ClassicalEngine({opts})"
