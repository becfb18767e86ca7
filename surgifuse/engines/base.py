"""The one interface every fusion engine implements (DESIGN.md section 2).

An engine fuses a focal stack (K frames of one scene at K focus positions) into an all-in-focus
image, a depth index map and a confidence map. Engines that stream split the work in two:
``prepare_frame`` does the per-frame work once (focus measure, encoder features) and
``fuse_prepared`` combines K prepared frames, so that a live buffer pays for one new frame per
update, not K.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    from .spec import EngineSpec

from surgifuse.errors import InputError


@dataclass
class FusionResult:
    """What an engine returns.

    Attributes
    ----------
    image : ndarray
        The fused image, same shape and dtype as one input frame (HxW or HxWxC).
    depth_index : ndarray of float32, HxW
        Per pixel, the (sub-frame) index into the stack of the frame in focus there: 0..K-1.
    confidence : ndarray of float32, HxW
        Per pixel, in [0, 1]: how clearly one frame won (1 = clear winner, 0 = no information).
    timings : dict
        Milliseconds spent per stage, e.g. ``{"focus_measure": 2.1, "decision": 1.3}``.
    map_factor : int
        1: ``depth_index`` and ``confidence`` are HxW like the image. n > 1 only where a caller
        asked for the maps at the scale the decision was made (``ClassicalEngine.fuse_prepared(...,
        full_maps=False)``): ceil(H/n) x ceil(W/n), one value per n x n block of pixels.
    """

    image: np.ndarray
    depth_index: np.ndarray
    confidence: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    map_factor: int = 1


class Engine(abc.ABC):
    """A fusion engine. Subclasses set ``name`` and implement the two streaming halves."""

    name: str = ""
    #: What the engine accepts (options, largest K, pixel types...); None only for test engines.
    spec: ClassVar["EngineSpec | None"] = None
    #: Where ``fuse`` records the time of the K ``prepare_frame`` calls in ``timings`` (None: not
    #: recorded, e.g. when the engine times its preparation itself).
    prepare_stage: str | None = None
    #: Whether ``fuse_prepared`` takes ``relabel=`` (a callback that may change the decision's
    #: labels before the frames are blended; the live motion guard uses it).
    relabels: bool = False

    @property
    def options(self) -> dict:
        """The options this engine was built with: ``type(engine)(**engine.options)`` rebuilds it."""
        return {} if self.spec is None else {opt.name: getattr(self, opt.name) for opt in self.spec.options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    @abc.abstractmethod
    def prepare_frame(self, frame: np.ndarray) -> Any:
        """Per-frame work that a live buffer caches beside the frame (its cost is paid once)."""

    @abc.abstractmethod
    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared: Sequence[Any]) -> FusionResult:
        """Fuse K frames given what ``prepare_frame`` returned for each, in the same order."""

    def streaming_decision(self, k: int, frame_shape: tuple[int, ...], dtype):
        """The engine's decision over a stream of K frames (``surgifuse.streaming.StreamingDecision``,
        fed ``prepare_frame``'s maps), for stacks of any K in bounded memory; None where the engine
        needs all frames at once (the default). Engines that return one declare ``limits.streaming``."""

    def fuse(self, stack: Sequence[np.ndarray] | np.ndarray) -> FusionResult:
        """Fuse a whole stack: K frames (a sequence, or an array with K first), checked against the
        engine's declaration first (``InputError`` for a K, pixel type or shape it cannot take)."""
        frames = validate_stack(stack)
        if self.spec is not None:
            self.spec.check_stack(len(frames), frames[0].shape, frames[0].dtype)
        t0 = time.perf_counter()
        prepared = [self.prepare_frame(f) for f in frames]
        prepare_ms = (time.perf_counter() - t0) * 1e3
        result = self.fuse_prepared(frames, prepared)
        if self.prepare_stage is not None:
            result.timings = {self.prepare_stage: prepare_ms, **result.timings}
        return result


def validate_stack(stack: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Check a focal stack and return it as a list of C-contiguous frames.

    Raises ``ValueError`` naming the problem: no frames, frames of different shapes or dtypes,
    frames that are not 2-D (grey) or 3-D (HxWxC).
    """
    frames = list(stack)
    if not frames:
        raise InputError("a focal stack needs at least one frame, got 0")
    first = np.asarray(frames[0])
    if first.ndim not in (2, 3):
        raise InputError(f"frame 0 must be HxW or HxWxC, got shape {first.shape}")
    out = []
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.shape != first.shape:
            raise InputError(f"frame {i} has shape {f.shape}, frame 0 has {first.shape}: all frames must match")
        if f.dtype != first.dtype:
            raise InputError(f"frame {i} has dtype {f.dtype}, frame 0 has {first.dtype}: all frames must match")
        out.append(np.ascontiguousarray(f))
    return out
