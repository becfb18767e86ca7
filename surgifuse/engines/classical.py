"""Classical fusion engine, the real-time default: FMB focus maps, arg-max decision, majority filter, blend.

Per pixel the frame with the largest sum-modified-Laplacian focus measure wins (Nayar & Nakagawa
1994; the FMB of the Fusion Network paper), the label map is cleaned by a majority filter
(consistency verification, Li, Manjunath & Mitra 1995) and label boundaries are blended by label
fractions. Per new frame a live buffer pays one focus map plus one decision pass.
See docs/classical-engine.md.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from surgifuse.errors import InputError

from .. import decision
from ..focus_measure import FOCUS_MAP_MODES, focus_map
from ..scaled_decision import (StackDecision, auto_factor, blend_stack_decision, decide_stack, fuse_stack_scaled,
                               reduce_focus_map)
from .base import Engine, FusionResult, validate_stack
from .spec import EngineLimits, EngineOption, EngineSpec

# Tuned on synthetic seeds 1000-1029 (scripts/quality_classical.py --tune); see docs.
DEFAULT_FILTER_RADIUS = decision.DEFAULT_FILTER_RADIUS
DEFAULT_BLEND_RADIUS = decision.DEFAULT_BLEND_RADIUS
DEFAULT_FLAT_THRESHOLD = 0


SPEC = EngineSpec(
    name="classical",
    summary="FMB focus maps, arg-max decision, majority filter, boundary blend (real-time default)",
    options=(
        EngineOption("mode", str, "fmb3", "focus per pixel summed over RGB (fmb3) or of the grey image (fmb1)",
                     choices=FOCUS_MAP_MODES),
        EngineOption("step", int, 1, "modified-Laplacian spacing in pixels", minimum=1, maximum=64),
        # 0, not the paper's 7: T = 7 zeroes the weak modified Laplacian of noise-free frames at 1080p,
        # where every structure and defocus disc is twice as wide as at 512 px (tuning stacks of our
        # generator, seeds 3100-3102 at 1080p and 3000-3005 at 512: noise-free 1080p 34.37 -> 40.80 dB,
        # 512 42.03 -> 42.77; noisy 32.06 -> 32.06 and 38.03 -> 38.00; docs/classical-engine.md).
        EngineOption("threshold", int, 0, "focus-measure threshold T (the paper's 7 loses detail of noise-free 1080p "
                     "frames)", minimum=0, maximum=2**20),
        EngineOption("window", int, 1, "focus-measure window radius N (1: the paper's 3x3)", minimum=0, maximum=16),
        EngineOption("filter_radius", int, DEFAULT_FILTER_RADIUS, "majority filter of the labels over (2r+1)^2 px "
                     "(0: off)", minimum=0, maximum=decision.MAX_RADIUS),
        EngineOption("blend_radius", int, DEFAULT_BLEND_RADIUS, "label-fraction blend at boundaries over (2r+1)^2 px "
                     "(0: hard seams)", minimum=0, maximum=decision.MAX_RADIUS),
        EngineOption("decision_scale", int, 0, "decide on focus maps summed over n x n blocks, filter and blend "
                     "windows n times wider (0: by frame size, 1 below 1080 px, 4 at 1080p, 8 at 4K)", minimum=0,
                     maximum=8),
        EngineOption("flat_threshold", int, DEFAULT_FLAT_THRESHOLD, "pixels whose best focus is at or below this "
                     "carry no information: their majority takes the average of all frames", minimum=0,
                     maximum=2**32 - 1),
        EngineOption("threads", int, 0, "threads of the native pool (0: SURGIFUSE_NUM_THREADS or the CPUs)",
                     minimum=0, maximum=64),
        EngineOption("device", str, "cpu", "where the decision runs (the focus map runs on the CPU)",
                     choices=("cpu", "cuda")),
    ),
    # A tie in focus goes to the earlier frame (the arg-max keeps the first maximum), so where frames
    # are equally sharp the order decides: at most a few grey levels at region boundaries. Offline,
    # deeper stacks are fused one frame at a time by the same rules (surgifuse.streaming).
    limits=EngineLimits(max_k=decision.MAX_STACK_SIZE, dtypes=("uint8", "uint16"), channels=(1, 3),
                        order_invariant=False, streaming=True),
    runtime_options=frozenset({"threads", "device"}),
)


@dataclass(frozen=True, eq=False)
class BlockFocusMap:
    """A frame's focus map summed over ``factor`` x ``factor`` blocks (uint32, ceil(H/f) x ceil(W/f)),
    as ``ClassicalEngine.prepare_moved_frame`` keeps it for a frame of a live stack."""

    blocks: np.ndarray
    factor: int


class ClassicalEngine(Engine):
    """FMB decision-map fusion.

    Options (keyword-only) are declared in ``SPEC`` with their bounds and defaults: the focus
    measure (``mode`` fmb3/fmb1, ``step``, ``threshold`` T, ``window`` N: the paper's 1, 7 and 3x3),
    the decision (``filter_radius``, ``blend_radius``, ``flat_threshold``) and where it runs
    (``threads``, ``device``). Flat pixels (best focus at or below ``flat_threshold``) take the
    average of all frames where they are the majority: noise averages out, and flat regions look
    the same in every frame.

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

    spec = SPEC

    def __init__(self, **options) -> None:
        o = SPEC.resolve(options)
        if o["device"] == "cuda":
            from .. import _core

            if not hasattr(_core, "fuse_stack_cuda"):
                raise InputError("classical engine option device='cuda' needs surgifuse built with CUDA",
                                 field="device", allowed="cpu")
            if _core.cuda_device_count() < 1:
                raise InputError("classical engine option device='cuda' but no CUDA device is visible",
                                 field="device", allowed="cpu")
        self.mode, self.step, self.threshold, self.window = o["mode"], o["step"], o["threshold"], o["window"]
        self.filter_radius, self.blend_radius = o["filter_radius"], o["blend_radius"]
        self.flat_threshold, self.threads, self.device = o["flat_threshold"], o["threads"], o["device"]
        self.decision_scale = o["decision_scale"]
        self._prepare_ms = 0.0
        # id(focus map) -> (weak reference to the map, factor, reduced map): a live buffer fuses each
        # map K times; it is reduced once. Only the last call's maps are kept, and only reduced.
        self._reduced: dict[int, tuple[weakref.ref, int, np.ndarray]] = {}

    def scale_for(self, shape: tuple[int, ...]) -> int:
        """The decision's reduction for frames of ``shape`` (``decision_scale``; 0: ``auto_factor``).
        The CUDA decision runs at full scale."""
        if self.device == "cuda":
            return 1
        return self.decision_scale or auto_factor(shape)

    @property
    def focus_measure_ms(self) -> float:
        """Milliseconds spent measuring focus (``prepare_frame``, also inside ``prepare_moved_frame``)
        since the last fusion: what a result's ``timings["focus_measure"]`` will say."""
        return self._prepare_ms

    @property
    def relabels(self) -> bool:
        """``fuse_prepared`` takes ``relabel`` on the CPU (the CUDA path decides and blends in one kernel)."""
        return self.device == "cpu"

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """The frame's focus map (uint32 HxW): the per-frame work a live buffer caches."""
        t0 = time.perf_counter()
        fm = focus_map(
            frame, mode=self.mode, step=self.step, threshold=self.threshold, window=self.window, threads=self.threads
        )
        self._prepare_ms += (time.perf_counter() - t0) * 1000.0
        return fm

    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared: Sequence[Any], *,
                      relabel: Callable[[StackDecision], None] | None = None, full_maps: bool = True) -> FusionResult:
        """Fuse K frames given their focus maps (``prepare_frame``), in the same order.

        ``relabel``: called with the decision (``scaled_decision.StackDecision``, at the scale it
        was made) before the frames are blended; it may change its labels and depth index in place.
        The live motion guard gives the newest frame the regions where the scene moved there, so
        that the blend itself feathers the override and no second full-size pass is needed.
        ``full_maps=False`` (with ``relabel``): the depth index and the confidence stay at the
        decision's scale (``FusionResult.map_factor``); the live processor moves the small depth map
        back into the newest frame's coordinates and enlarges it once.
        """
        frames = validate_stack(frames)
        prepared = list(prepared)
        if len(prepared) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(prepared)} prepared focus maps: K must match")
        t0 = time.perf_counter()
        factor = self.scale_for(frames[0].shape)
        if factor == 1 and any(isinstance(m, BlockFocusMap) for m in prepared):
            raise InputError("block-summed focus maps (prepare_moved_frame) need the decision on blocks")
        relabel_ms = 0.0
        if relabel is not None:
            decided = self._decide(self._reduce(prepared, factor) if factor > 1 else prepared, factor,
                                   frames[0].shape[:2])
            t1 = time.perf_counter()
            relabel(decided)
            relabel_ms = (time.perf_counter() - t1) * 1000.0
            out = blend_stack_decision(frames, decided, blend_radius=self.blend_radius, threads=self.threads,
                                       full_maps=full_maps)
        elif factor > 1:
            out = fuse_stack_scaled(frames, prepared, factor=factor, filter_radius=self.filter_radius,
                                    blend_radius=self.blend_radius, flat_threshold=self.flat_threshold,
                                    threads=self.threads, reduced_maps=self._reduce(prepared, factor))
        else:
            out = decision.fuse_stack(
                frames,
                prepared,
                filter_radius=self.filter_radius,
                blend_radius=self.blend_radius,
                flat_threshold=self.flat_threshold,
                threads=self.threads,
                device=self.device,
            )
        decision_ms = (time.perf_counter() - t0) * 1000.0 - relabel_ms
        timings = {"focus_measure": self._prepare_ms, "decision": decision_ms}
        if relabel is not None:
            timings["relabel"] = relabel_ms
        self._prepare_ms = 0.0
        map_factor = 1 if relabel is None or full_maps else factor
        return FusionResult(image=out.image, depth_index=out.depth_index, confidence=out.confidence, timings=timings,
                            map_factor=map_factor)

    def prepare_moved_frame(self, frame: np.ndarray, transform) -> Any:
        """What a live buffer keeps for a frame it holds warped by ``transform`` (raw -> stack,
        ``surgifuse.align.SimilarityTransform``): the focus map measured on the RAW frame (resampling
        lowers measured focus), moved by ``transform``. Where the decision runs on block sums
        (``scale_for``: 1080p on 4x4 blocks) the map is summed over its blocks first and moved on
        the block grid (``BlockFocusMap``): a quarter of the pixels to warp and to keep, the only
        form the decision reads. Elsewhere the full map, moved pixel by pixel."""
        from ..buffer import warp_pixel_map
        from ..scaled_decision import on_block_grid

        focus = self.prepare_frame(frame)
        factor = self.scale_for(frame.shape)
        if factor == 1:
            return warp_pixel_map(focus, transform)
        blocks = reduce_focus_map(focus, factor, threads=self.threads)
        return BlockFocusMap(warp_pixel_map(blocks, on_block_grid(transform, factor)), factor)

    def fuse_registered(self, frames: Sequence[np.ndarray], transforms: Sequence[Any], *,
                        interpolation: str = "lanczos", full_maps: bool = True) -> FusionResult:
        """Fuse K raw frames, each moved onto the reference by its transform (raw -> reference,
        ``surgifuse.align.SimilarityTransform``; None: the frame is the reference's already).

        Focus is measured on the raw frames and the maps moved (nearest), the decision made, and
        each moved frame resampled only where the blend reads it (``surgifuse.needed_warp``): the
        decision of ``fuse_prepared`` on the frames warped whole (``surgifuse.buffer.prepare_aligned``),
        and its image up to a few grey levels at a fraction of a percent of the pixels, at a
        fraction of the resampling. The warped frames are not returned: a caller that needs them
        whole (a metric against the inputs) warps them itself. CPU only.
        ``full_maps=False``: the depth index and the confidence stay at the decision's scale
        (``FusionResult.map_factor``), for a caller that does not use them (two float maps of the
        frame's size: 160 MB for a 20-megapixel stack).
        """
        from ..buffer import warp_pixel_map
        from ..needed_warp import TILE_PX, needed_tiles, warp_needed

        frames = validate_stack(frames)
        transforms = list(transforms)
        if len(transforms) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(transforms)} transforms: K must match")
        if self.device != "cpu":
            raise InputError("fuse_registered runs on the CPU; use prepare_aligned and fuse_prepared on CUDA")
        t0 = time.perf_counter()
        shape = frames[0].shape[:2]
        factor = self.scale_for(frames[0].shape)
        maps = []
        for frame, transform in zip(frames, transforms):
            focus = self.prepare_frame(frame)
            if transform is not None:
                focus = warp_pixel_map(focus, transform)
            # Summed over its blocks at once: one full-size map held at a time, not K (fewer pages
            # to fault in, a smaller peak).
            maps.append(focus if factor == 1 else reduce_focus_map(focus, factor, threads=self.threads))
        self._prepare_ms = 0.0
        t1 = time.perf_counter()
        decided = self._decide(maps, factor, shape)
        t2 = time.perf_counter()
        tile_blocks = max(1, TILE_PX // factor)
        reach = min(decision.MAX_RADIUS, self.blend_radius * factor)
        moved = []
        for i, (frame, transform) in enumerate(zip(frames, transforms)):
            if transform is None:
                moved.append(frame)
                continue
            tiles = needed_tiles(decided.labels, i, k=len(frames), factor=factor, blend_radius=reach,
                                 tile_blocks=tile_blocks)
            moved.append(warp_needed(frame, transform, tiles, tile_blocks * factor, interpolation=interpolation))
        t3 = time.perf_counter()
        out = blend_stack_decision(moved, decided, blend_radius=self.blend_radius, threads=self.threads,
                                   full_maps=full_maps)
        t4 = time.perf_counter()
        ms = 1000.0
        return FusionResult(image=out.image, depth_index=out.depth_index, confidence=out.confidence,
                            timings={"focus_measure": (t1 - t0) * ms, "decision": ((t2 - t1) + (t4 - t3)) * ms,
                                     "warp": (t3 - t2) * ms}, map_factor=1 if full_maps else factor)

    def _decide(self, maps: list, factor: int, shape: tuple[int, int]) -> StackDecision:
        """The decision (arg-max, majority filter) on focus maps already at the decision's scale."""
        return decide_stack(maps, factor=factor, shape=shape, filter_radius=self.filter_radius,
                            flat_threshold=self.flat_threshold, threads=self.threads, reduced=True)

    def _reduce(self, maps: list, factor: int) -> list[np.ndarray]:
        cached = self._reduced
        self._reduced = {}
        for m in maps:
            if isinstance(m, BlockFocusMap):
                if m.factor != factor:
                    raise InputError(f"a focus map summed over {m.factor}x{m.factor} blocks cannot be decided on "
                                     f"{factor}x{factor} blocks")
                self._reduced[id(m)] = (weakref.ref(m), factor, m.blocks)
                continue
            hit = cached.get(id(m))
            if hit is None or hit[0]() is not m or hit[1] != factor:
                hit = (weakref.ref(m), factor, reduce_focus_map(np.asarray(m), factor, threads=self.threads))
            self._reduced[id(m)] = hit
        return [self._reduced[id(m)][2] for m in maps]

    def streaming_decision(self, k: int, frame_shape: tuple[int, ...], dtype):
        """The same decision over a stream of frames, for stacks deeper than K = 31
        (``surgifuse.streaming``): the same image, depth and confidence to the bit."""
        from ..streaming import StreamingDecision

        return StreamingDecision(k, frame_shape, dtype, filter_radius=self.filter_radius,
                                 blend_radius=self.blend_radius, flat_threshold=self.flat_threshold,
                                 factor=self.scale_for(frame_shape))
