"""Streaming fusion: a focal stack of any depth, one frame at a time, in bounded memory.

The classical engine (docs/classical-engine.md) holds all K frames and K focus maps, and its C++
decision counts labels in 8-bit lanes (K <= 31). Here the same rules run over a stream of frames,
so that a stack of hundreds of frames is never held at full resolution:

1. **Pass 1**, per frame as it is read: register it onto the reference frame, measure focus on the
   raw frame and warp frame and map where the registration is significant (as
   ``surgifuse.fusion.fuse_focal_stack`` does), then fold the map into a per-pixel state: the
   running arg-max of the focus (the first maximum on ties, Nayar & Nakagawa 1994), the
   second-largest value (the confidence's contrast), the focus of the frames either side of the
   arg-max (the parabolic sub-frame fit) and the sum of all frames (pixels without focus
   information are their average).
2. **Decision**, after the last frame: the majority filter of the labels (Li, Manjunath & Mitra
   1995), depth and confidence, by the engine's rules to the bit.
3. **Pass 2**, the blend by label fractions (the engine's integer rule): a pixel needs the frames
   whose labels lie in its window, so the frames some pixel needs are read again (the registrations
   of pass 1 are kept) and each is added where it is needed. The image equals the classical
   engine's bit for bit.

Where it is safe, the frames of pass 1 are kept registered in a temporary file
(``surgifuse.frame_spill``) and read back in pass 2 instead of decoded again (a 1600x1200 PNG: 36 ms
to decode, about 1 ms to read back).

One pass cannot give that image: the labels in a pixel's window are known only after the last
frame. A one-pass variant that kept the pixels of each pixel's arg-max frame and of the two frames
either side of it (a label outside that band took the nearest kept frame) was measured and
dropped: 0.5 dB (K=12) and 1.0 dB (K=31) below the engine's PSNR against the truth on seeds
9000-9009 (240x320), 4.2 dB below the two passes on a 120-frame 1600x1200 fundus stack, and slower
there (its per-pixel bookkeeping cost more than decoding every frame a second time).

Frames of 1080 px and more are decided on focus maps summed over blocks, as the engine does
(``surgifuse.scaled_decision``): the state of steps 1-2 is then kept per block.

Memory, whatever K: the per-pixel state (34 bytes per RGB8 pixel in pass 1, 22 of them per block
of the decision; up to about 70 while deciding and blending, with the outputs) plus the reference,
the frame being fused and its warped copy, the next frame (registered meanwhile on a second
thread) and ``READ_AHEAD`` frames decoded ahead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .decision import MAX_RADIUS
from .engines.base import FusionResult
from .errors import InputError
from .frame_spill import FrameSpill

if TYPE_CHECKING:
    from .engines.base import Engine
    from .fusion import StackFusion
    from .imageio import FrameStack

__all__ = ["MAX_STREAMED_FRAMES", "READ_AHEAD", "StreamingDecision", "fuse_stream"]

#: Frames decoded ahead of the one being fused, on as many threads: decoding (half of the time on
#: PNG frames) overlaps registration and the focus measure. Each holds one more frame in memory.
READ_AHEAD = 2

#: Labels are uint16, K itself meaning "no information".
MAX_STREAMED_FRAMES = 65535


class StreamingDecision:
    """The classical engine's decision over a stream of frames, in per-pixel state.

    Feed the K frames in stack order with ``add(frame, focus_map)`` (frames warped into the
    reference's coordinates, focus maps measured on the raw frames and warped the same way), then
    call ``decide()``, read the frames of ``needed_frames()`` again, in that order, into
    ``blend_frame(index, frame)`` (warped as in pass 1), then ``result()``.

    Parameters
    ----------
    k : int
        Frames in the stack, 1..``MAX_STREAMED_FRAMES``.
    frame_shape : tuple
        HxW or HxWxC of every frame.
    dtype : uint8 or uint16
    filter_radius, blend_radius, flat_threshold : int
        The classical engine's options (``surgifuse.decision.fuse_stack``).
    factor : int
        Decide on focus maps summed over ``factor`` x ``factor`` blocks and blend with a window
        ``factor`` times wider, as ``surgifuse.scaled_decision.fuse_stack_scaled`` (the classical
        engine's ``scale_for``); 1: at full scale.
    """

    def __init__(self, k: int, frame_shape: tuple[int, ...], dtype, *, filter_radius: int, blend_radius: int,
                 flat_threshold: int, factor: int = 1) -> None:
        if not 1 <= k <= MAX_STREAMED_FRAMES:
            raise InputError(f"a streamed stack holds 1..{MAX_STREAMED_FRAMES} frames, got {k}", field="k")
        self.k, self.shape, self.dtype = int(k), tuple(frame_shape), np.dtype(dtype)
        if self.dtype not in (np.uint8, np.uint16):
            raise InputError(f"frames must be uint8 or uint16, got {self.dtype}")
        for name, radius in (("filter_radius", filter_radius), ("blend_radius", blend_radius)):
            if not 0 <= radius <= MAX_RADIUS:  # window counts are kept in uint8
                raise InputError(f"{name} must be in [0, {MAX_RADIUS}], got {radius}", field=name)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise InputError(f"factor must be an int >= 1, got {factor!r}", field="factor")
        self.filter_radius, self.flat_threshold, self.factor = filter_radius, flat_threshold, factor
        # scaled_decision's rule: the blend window grows with the reduction, up to the core's limit.
        self.blend_radius = min(MAX_RADIUS, blend_radius * factor)
        h, w = self.shape[:2]
        self._c = 1 if len(self.shape) == 2 else self.shape[2]
        self.count = 0  # frames added
        # Pass 1 (C++ argmax_pixel's variables), per pixel of the decision's grid.
        grid = (-(-h // factor), -(-w // factor))
        self._best = np.zeros(grid, np.uint32)
        self._second = np.zeros(grid, np.uint32)
        self._label = np.zeros(grid, np.uint16)
        self._before = np.zeros(grid, np.uint32)
        self._after = np.zeros(grid, np.uint32)
        self._previous_map: np.ndarray | None = None
        # K * 65535 < 2^32 for K <= MAX_STREAMED_FRAMES.
        self._total = np.zeros((h, w, self._c), np.uint32)
        self._decided = False
        self._product: np.ndarray | None = None  # pass 2's scratch: a frame times its weights

    # ------------------------------------------------------------------------------ pass 1

    def add(self, frame: np.ndarray, focus_map: np.ndarray) -> None:
        """Fold frame ``self.count`` (in the reference's coordinates) and its focus map into the state."""
        if self._decided:
            raise InputError("add() after decide(): the stream is closed")
        if self.count >= self.k:
            raise InputError(f"got more than the {self.k} frames this decision was made for")
        frame, focus_map = np.asarray(frame), np.asarray(focus_map)
        if frame.shape != self.shape or frame.dtype != self.dtype:
            raise InputError(f"frame {self.count} is {frame.shape} {frame.dtype}, the stream is {self.shape} "
                             f"{self.dtype}: all frames must match")
        if focus_map.shape != self.shape[:2] or focus_map.dtype != np.uint32:
            raise InputError(f"focus map {self.count} is {focus_map.shape} {focus_map.dtype}, expected "
                             f"{self.shape[:2]} uint32")
        i = self.count
        pixels = frame.reshape(*self.shape[:2], self._c)
        self._total += pixels
        if self.factor > 1:
            from .scaled_decision import reduce_focus_map

            focus_map = reduce_focus_map(focus_map, self.factor)
        if i > 0:  # the focus of the frame after each pixel's arg-max so far
            np.copyto(self._after, focus_map, where=self._label == i - 1)
        # second = max(second, min(v, best)), then the strict arg-max: as decision.cpp's argmax_pixel.
        np.maximum(self._second, np.minimum(focus_map, self._best), out=self._second)
        new = focus_map > self._best
        if i == 0:
            new[...] = True  # frame 0 is the arg-max until another is sharper, also where all focus is 0
        np.copyto(self._best, focus_map, where=new)
        np.copyto(self._label, i, where=new)
        if self._previous_map is not None:
            np.copyto(self._before, self._previous_map, where=new)
        self._previous_map = focus_map
        self.count += 1

    # ------------------------------------------------------------------------------ decision

    def decide(self) -> None:
        """Labels, majority filter, depth and confidence (``decision.cpp``'s rules), after the last frame."""
        if self.count != self.k:
            raise InputError(f"decide() after {self.count} of {self.k} frames")
        k, (h, w) = self.k, self._best.shape  # the decision's grid
        informative = self._best > self.flat_threshold
        raw = np.where(informative, self._label, np.uint16(k))
        # float32 throughout, in decision.cpp's order of operations (no FMA contraction there).
        best = self._best.astype(np.float32)
        contrast = np.zeros((h, w), np.float32)
        np.subtract(self._best, self._second, out=self._second)
        np.divide(self._second.astype(np.float32), best, out=contrast, where=informative)
        before, after = self._before.astype(np.float32), self._after.astype(np.float32)
        self._best = self._second = self._before = self._after = self._previous_map = None
        denom = (before - np.float32(2.0) * best) + after
        fit = informative & (denom < 0)
        fit &= self._label > 0
        fit &= self._label < k - 1
        offset = np.zeros((h, w), np.float32)
        offset[fit] = np.clip((before[fit] - after[fit]) / (np.float32(2.0) * denom[fit]), np.float32(-0.5),
                              np.float32(0.5))
        del best, before, after, denom, fit, informative
        self._label = None

        mode, count = _majority(raw, k, self.filter_radius)
        rows = _window_sizes(h, self.filter_radius).astype(np.float32)
        cols = _window_sizes(w, self.filter_radius).astype(np.float32)
        agreement = count.astype(np.float32)
        agreement /= rows[:, None] * cols[None, :]
        del count
        own = raw == mode
        del raw
        no_information = mode == k
        self.depth_index = mode.astype(np.float32)
        np.add(self.depth_index, offset, out=self.depth_index, where=own)
        self.depth_index[no_information] = np.float32(0.5) * np.float32(k - 1)
        del offset
        own &= ~no_information
        del no_information
        self.confidence = np.zeros((h, w), np.float32)
        np.multiply(contrast, agreement, out=self.confidence, where=own)
        del own, contrast, agreement
        if self.factor > 1:
            # As scaled_decision: labels repeated over their blocks, depth and confidence interpolated.
            from .scaled_decision import enlarge_blocks

            shape = self.shape[:2]
            mode = enlarge_blocks(mode, self.factor, shape, cv2.INTER_NEAREST)
            self.depth_index = enlarge_blocks(self.depth_index, self.factor, shape, cv2.INTER_LINEAR)
            self.confidence = enlarge_blocks(self.confidence, self.factor, shape, cv2.INTER_LINEAR)
        self._mode = mode
        self._decided = True
        self._prepare_blend()

    def needed_frames(self) -> list[int]:
        """The frames the blend reads (labels left by the majority filter), ascending."""
        self._check_decided()
        return self._needed

    # ------------------------------------------------------------------------------ blend

    def _prepare_blend(self) -> None:
        k, h, w, r = self.k, *self.shape[:2], self.blend_radius
        mode = self._mode
        if r > 0:
            kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
            # The erosion's and dilation's default border ignores outside pixels: the clipped window.
            self._uniform = cv2.erode(mode, kernel)
            self._uniform = self._uniform == cv2.dilate(mode, kernel)
        else:
            self._uniform = np.ones((h, w), bool)
        present = np.bincount(mode.ravel(), minlength=k + 1)
        self._needed = [int(i) for i in np.flatnonzero(present[:k])]
        self.image = np.zeros((h, w, self._c), self.dtype)
        flat = self._uniform & (mode == k)
        if flat.any():  # a window of "no information" only: the average of all frames, rounded half up
            for c in range(self._c):
                average = self._total[..., c] + np.uint32(k // 2)
                average //= np.uint32(k)
                np.copyto(self.image[..., c], average, where=flat, casting="unsafe")
        del flat
        self._boundary = ~self._uniform
        if not self._boundary.any():
            self._acc = None
            self._total = None
            return
        # decision.cpp's blend_run: (div // 2 + sum_i (K count_i + count_K) x_i) // div with div = K n;
        # the count_K term is count_K times the sum of all frames.
        rows, cols = _window_sizes(h, r), _window_sizes(w, r)
        bound = 2 * k * int(rows.max() * cols.max()) * int(np.iinfo(self.dtype).max) + k * int(rows.max() * cols.max())
        acc_dtype = np.dtype(np.uint32 if bound < 2**32 else np.uint64)
        self._divisor = (k * rows).astype(acc_dtype)[:, None] * cols.astype(acc_dtype)[None, :]
        self._acc = np.zeros((h, w, self._c), acc_dtype)
        none = np.where(self._boundary, _box_count(mode == k, r), np.uint16(0)).astype(acc_dtype)
        for c in range(self._c):
            plane = self._acc[..., c]
            np.copyto(plane, self._divisor // acc_dtype.type(2), where=self._boundary)
            if none.any():
                plane += none * self._total[..., c]
        self._total = None

    def blend_frame(self, index: int, frame: np.ndarray) -> None:
        """Pass 2: add frame ``index`` (warped as in pass 1) where the blend needs it."""
        self._check_decided()
        frame = np.asarray(frame)
        if frame.shape != self.shape or frame.dtype != self.dtype:
            raise InputError(f"frame {index} is {frame.shape} {frame.dtype}, the stream is {self.shape} {self.dtype}")
        # Only the box around this label's pixels, grown by the blend radius, can need the frame.
        labelled = self._mode == index
        region = _region(labelled, self.blend_radius)
        if region is None:
            return
        ys, xs = region
        x = frame.reshape(*self.shape[:2], self._c)[ys, xs]
        ours = labelled[ys, xs]
        # OpenCV's masked copy: 0.5 ms at 1600x1200 against numpy's 12 ms for a broadcast mask
        cv2.copyTo(x, (ours & self._uniform[ys, xs]).view(np.uint8), dst=self.image[ys, xs])
        if self._acc is not None:
            # Dense over the box (gathering the boundary pixels was 3x slower where, as on noisy
            # fundus frames, nearly all pixels are at a boundary): a weight of 0 adds nothing, and
            # the sums of pixels that are not at a boundary are never read.
            acc = self._acc[ys, xs]
            weight = _box_count(ours, self.blend_radius).astype(acc.dtype)
            weight *= acc.dtype.type(self.k)
            if self._product is None:
                self._product = np.empty_like(self._acc)  # one scratch for every frame of pass 2
            product = self._product[ys, xs]
            np.multiply(weight[..., None], x, out=product)
            np.add(acc, product, out=acc)

    def result(self) -> FusionResult:
        """The fused image, depth index and confidence (after ``decide`` and pass 2)."""
        self._check_decided()
        if self._acc is not None:
            np.floor_divide(self._acc, self._divisor[..., None], out=self._acc)
            np.copyto(self.image, self._acc, where=self._boundary[..., None], casting="unsafe")
            self._acc = self._divisor = self._product = None
        return FusionResult(image=self.image.reshape(self.shape), depth_index=self.depth_index,
                            confidence=self.confidence)

    def _check_decided(self) -> None:
        if not self._decided:
            raise InputError("call decide() after the last frame first")


def _window_sizes(n: int, r: int) -> np.ndarray:
    """Per index of an axis of ``n``, the clipped window's extent ``min(n-1, i+r) - max(0, i-r) + 1``."""
    i = np.arange(n)
    return np.minimum(n - 1, i + r) - np.maximum(0, i - r) + 1


def _box_count(mask: np.ndarray, r: int) -> np.ndarray:
    """Per pixel, how many pixels of ``mask`` lie in its (2r+1)^2 window clipped at the border."""
    return cv2.boxFilter(np.ascontiguousarray(mask).view(np.uint8), cv2.CV_16U, (2 * r + 1, 2 * r + 1),
                         normalize=False, borderType=cv2.BORDER_CONSTANT)


def _region(mask: np.ndarray, r: int) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``r`` (clipped to the image), or None if it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(0, rows[0] - r), min(h, rows[-1] + r + 1)), slice(max(0, cols[0] - r), min(w, cols[-1] + r + 1)))


def _majority(raw: np.ndarray, k: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The most frequent label of 0..K in each clipped (2r+1)^2 window (lowest on ties) and its count."""
    mode = np.zeros(raw.shape, np.uint16)
    count = np.zeros(raw.shape, np.uint8)
    for label in np.flatnonzero(np.bincount(raw.ravel(), minlength=k + 1)):
        mask = raw == label
        region = _region(mask, r)
        ys, xs = region
        window = _box_count(mask[ys, xs], r)
        wins = window > count[ys, xs]
        np.copyto(count[ys, xs], window, where=wins, casting="unsafe")
        np.copyto(mode[ys, xs], np.uint16(label), where=wins)
    return mode, count


def fuse_stream(
    engine: Engine,
    frames: FrameStack | Sequence[np.ndarray],
    *,
    align: bool = True,
    reference: str | int = "middle",
    max_side: int | None = None,
    interpolation: str = "lanczos",
    registrations: Sequence | None = None,
    progress: bool = False,
    focus_curve=None,
    spill: bool = True,
) -> StackFusion:
    """Fuse a focal stack of any depth one frame at a time, in two passes (see the module notes).

    Parameters
    ----------
    engine : Engine
        One whose ``streaming_decision`` gives a ``StreamingDecision`` (the classical engine).
    frames : FrameStack or sequence of ndarray
        ``surgifuse.imageio.open_stack`` decodes one frame at a time; arrays are taken as they are.
    align, reference, max_side, interpolation, registrations
        As ``surgifuse.fusion.fuse_focal_stack``: each frame is registered onto the reference frame
        (read first) by ``surgifuse.align.register_stack``'s rule.
    progress : bool
        A progress bar per pass (or a line every 10 s) on stderr.
    focus_curve : surgifuse.focus_curve.FocusCurve, optional
        Fed each frame (raw, with its registration) in the first pass (the depth of ``surgifuse fuse
        --depth``).
    spill : bool
        Keep the registered frames in a temporary file for the second pass instead of decoding
        them again (``surgifuse.frame_spill``; only where that is safe). The same result either way.

    Returns
    -------
    StackFusion
        The classical engine's result to the bit. ``frames`` is empty (they are not kept);
        ``timings``: ``read`` (decoding), ``register``, ``fuse`` (focus maps, warps, the decision
        and the blend), in ms.

    Examples
    --------
    >>> import numpy as np
    >>> from surgifuse.engines.classical import ClassicalEngine
    >>> frames = [np.full((32, 32, 3), 5 * i, np.uint8) for i in range(40)]  # flat: no focus anywhere
    >>> fused = fuse_stream(ClassicalEngine(), frames, align=False).result
    >>> int(fused.image[0, 0, 0]), float(fused.depth_index[0, 0])  # the average of all frames; the middle
    (98, 19.5)
    """
    from . import align as alignment
    from .buffer import prepare_aligned
    from .fusion import StackFusion
    from .imageio import FrameStack, check_frame_matches
    from .progress import progress_bar

    stack = frames if isinstance(frames, FrameStack) else FrameStack.from_arrays(frames)
    k = len(stack)
    if k < 1:
        raise InputError("a focal stack needs at least one frame, got 0")
    if engine.spec is not None:
        if not engine.spec.limits.streaming:
            raise InputError(f"engine {engine.name!r} cannot fuse a stack one frame at a time")
        engine.spec.check_k(k, streaming=True)
    if registrations is not None:
        registrations = list(registrations)
        if len(registrations) != k:
            raise InputError(f"got {k} frames but {len(registrations)} registrations: K must match")
    registering = registrations is None and align and k > 1
    timings = {"read": 0.0, "register": 0.0, "fuse": 0.0}
    clock = _Clock(timings)
    reference_frame = None
    if registering:
        # Read first: every frame is registered onto it as it arrives ("middle" needs K, which the
        # file list and the TIFF page counts give before any frame is decoded).
        ref_index = alignment.reference_index(reference, k)
        with clock("read"):
            reference_frame = stack[ref_index]
        with clock("register"):
            side = max_side or alignment.DEFAULT_MAX_SIDE
            reference_prepared = alignment.prepare_alignment(reference_frame, max_side=side)
        registrations = []
    decision: StreamingDecision | None = None
    kept: FrameSpill | None = None
    bar = progress_bar(total=k, desc="fuse, pass 1 of 2", unit="frame", enabled=progress)
    try:
        pending = stack.iter_frames(ahead=READ_AHEAD)

        def registered(i: int, frame: np.ndarray) -> tuple[alignment.Registration, float]:
            # register_stack's rule for one frame, so that streamed and whole stacks agree; the
            # reference was reduced once, not once per frame.
            t0 = time.perf_counter()
            if i == ref_index:
                return alignment.Registration.none(), 0.0
            reg = alignment.register_onto_reference(reference_prepared, alignment.prepare_alignment(frame, max_side=side))
            return reg, (time.perf_counter() - t0) * 1e3

        def fold(i: int, frame: np.ndarray, registration) -> None:
            if registration is not None:
                reg, ms = registration.result()
                registrations.append(reg)
                timings["register"] += ms
            with clock("fuse"):
                transform = _transform(registrations[i]) if registrations else None
                warped, focus_map = prepare_aligned(engine, frame, transform, interpolation=interpolation)
                decision.add(warped, focus_map)
                if focus_curve is not None:
                    focus_curve.add(frame, transform)  # measured raw and moved, as fuse_focal_stack does
            if kept is not None:
                with clock("read"):
                    kept.write(i, warped)
            bar.update(1)

        # Frame i is registered on a worker while frame i - 1 is measured and folded in: the two
        # overlap on two cores (one more frame held).
        with ThreadPoolExecutor(1) as registrar:
            previous = None
            for i in range(k):
                with clock("read"):
                    frame = next(pending)
                if decision is None:
                    if reference_frame is not None:
                        check_frame_matches(frame, stack.names[0], reference_frame, stack.names[ref_index])
                    if engine.spec is not None:
                        engine.spec.check_frame(frame.shape, frame.dtype, file=stack.names[0])
                    decision = engine.streaming_decision(k, frame.shape, frame.dtype)
                    if decision is None:
                        raise InputError(f"engine {engine.name!r} cannot fuse a stack one frame at a time")
                    kept = FrameSpill.open(k, frame.shape, frame.dtype) if spill else None
                current = (i, frame, registrar.submit(registered, i, frame) if registering else None)
                del frame
                if previous is not None:
                    fold(*previous)
                previous = current
                del current
            if previous is not None:
                fold(*previous)
            previous = None
        reference_frame = None
        with clock("fuse"):
            decision.decide()
        bar.close()
        bar = progress_bar(total=k, desc="fuse, pass 2 of 2", unit="frame", enabled=progress)
        needed = decision.needed_frames()
        bar.update(k - len(needed))  # frames no pixel needs are not read again
        decode = [i for i in needed if kept is None or not kept.has(i)]
        pending = stack.iter_frames(decode, ahead=READ_AHEAD)
        for i in needed:
            if kept is not None and kept.has(i):
                with clock("read"):
                    frame = kept.read(i)  # registered already
            else:
                with clock("read"):
                    frame = next(pending)
                with clock("fuse"):
                    transform = _transform(registrations[i]) if registrations else None
                    if transform is not None:
                        frame = np.ascontiguousarray(alignment.warp(frame, transform, interpolation=interpolation))
            with clock("fuse"):
                decision.blend_frame(i, frame)
                del frame
            bar.update(1)
        with clock("fuse"):
            result = decision.result()
    finally:
        bar.close()
        if kept is not None:
            kept.close()
    result.timings = dict(timings)
    return StackFusion(result=result, frames=[], registrations=registrations or [], timings=timings)


class _Clock:
    """``with clock("read"):`` adds the block's milliseconds to ``timings["read"]``."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self._stage = ""
        self._t0 = 0.0

    def __call__(self, stage: str) -> _Clock:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self._stage] += (time.perf_counter() - self._t0) * 1e3


def _transform(registration):
    return registration.transform if registration.significant else None
