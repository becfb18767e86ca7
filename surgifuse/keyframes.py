"""Registration of a live focus sweep against keyframes, so that errors cannot accumulate.

A rolling focal stack needs every frame in one coordinate system, the anchor's (the first frame
after a start). Registering each frame to the previous one and chaining the transforms adds up
their errors: on a still eye the chained transform of the old buffer drifted to 4 % scale, 6
degrees and 43 px within 23 frames. Here every frame is registered to a fixed keyframe instead:

* the first frame seen at each focus position (after a start) becomes that position's keyframe,
  registered once onto the anchor by a change of scale about the centre only
  (``surgifuse.align.register_scale``, sharpness equalised, a moving instrument outweighed): the
  focus breathing of that position, learned once, not estimated again every frame. A full
  similarity between frames of different focus also took up the instrument's motion and the
  defocus difference (2-3 px on the still demo eye); the scale alone stayed within 4e-4;
* every later frame at that position is registered onto its keyframe: two frames at one focus
  position differ only by motion and noise, so the comparison is unbiased, cheap (no
  equalisation) and sensitive.

A transform is applied only where it is significant (``register``), so a still eye gives the
identity for ever. When the view has moved more than ``max_drift`` of the frame, or a frame does
not match its keyframe at all (the view jumped), the sweep starts again from that frame.
Without focus positions (a recorded video, a camera that does not report them) the sweep's period
is found from the frames themselves: frames one period apart have the same sharpness map (log
Laplacian energy over a 6x8 grid), other lags do not (on the demo sweeps the best lag's distance
was a tenth to a third of the next best). Once the period is clear, ``frame number mod period``
names the focus position. Until then (two to three sweeps) and for a sweep that is not periodic,
frames are not aligned at all: never worse than none.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from . import align
from .errors import InputError

__all__ = ["KeyframeAligner", "KeyframeStep"]

#: A frame whose registration onto its keyframe scores below this normalised correlation does not
#: show the same view: the sweep restarts from it.
MIN_MATCH_SCORE = 0.5
#: Sweep periods (frames) searched when the source reports no focus position.
MAX_PERIOD = 32
#: The period is taken when its sharpness maps differ by less than this share of the next best lag's.
PERIOD_CLARITY = 0.5
#: Without focus positions and before a period is known, a frame whose coarse sharpness map (2x3
#: grid: a shift of the view barely changes it) differs from the anchor's by less than this is
#: taken for one at the anchor's focus (a camera that does not sweep) and registered onto it.
#: On the demo sweeps frames one focus step apart differed by 0.15 to 0.36, frames at one focus by
#: 0.02 (still eye) to 0.17 (wandering eye, moving instrument): a wandering eye is then followed
#: only once the period is known.
SAME_FOCUS_DISTANCE = 0.1



@dataclass(frozen=True)
class KeyframeStep:
    """The outcome for one frame: ``transform`` (raw frame -> anchor coordinates; None for the
    identity), ``restarted`` (the frame became the new anchor: the stack must start again) and the
    ``registration`` behind it (None for an anchor)."""

    transform: align.SimilarityTransform | None
    restarted: bool
    registration: align.Registration | None = None


@dataclass
class _Keyframe:
    image: align.AlignmentImage
    to_anchor: align.SimilarityTransform
    #: The last two estimates of frames at this focus position onto this keyframe: the next one
    #: starts where they point (the eye moves smoothly between two visits of one focus position).
    last: align.SimilarityTransform | None = None
    before_last: align.SimilarityTransform | None = None
    #: Frames since the anchor when this keyframe was taken.
    born: int = 0

    def predict(self) -> align.SimilarityTransform:
        """Where the next frame at this focus position should be: the last estimate moved on by
        the change between the last two (the eye moves smoothly)."""
        if self.last is None:
            return align.SimilarityTransform.identity()
        if self.before_last is None:
            return self.last
        return self.last.compose(self.before_last.inverse()).compose(self.last)


class KeyframeAligner:
    """Registers each frame of a live sweep onto a keyframe (see the module docstring).

    Parameters
    ----------
    max_drift : float
        When a frame's transform moves some pixel by more than this fraction of the longer side,
        the sweep restarts from that frame (the view has wandered or jumped).
    max_side : int
        Reduction for registration.
    """

    def __init__(self, *, max_drift: float = 0.1, max_side: int = align.DEFAULT_MAX_SIDE) -> None:
        if not (isinstance(max_drift, (int, float)) and max_drift > 0):
            raise InputError(f"max_drift must be a positive fraction of the frame side, got {max_drift!r}")
        self.max_drift, self.max_side = float(max_drift), int(max_side)
        self.reset()

    @property
    def period(self) -> int | None:
        """The sweep's period in frames, once found (sources without focus positions)."""
        return self._period

    def reset(self) -> None:
        """Forget the anchor and the keyframes: the next frame starts a new sweep."""
        self._anchor: align.AlignmentImage | None = None
        self._anchor_key: float | None = None
        self._keys: dict[float, _Keyframe] = {}
        self._frames = 0  # since the anchor
        self._motion_learned = False
        self._seen = 0  # frames since the aligner was made or reset
        self._signatures: deque = deque(maxlen=3 * MAX_PERIOD)
        self._period: int | None = None
        self._anchor_signature: np.ndarray | None = None

    def step(self, frame: np.ndarray, focus: float | None = None) -> KeyframeStep:
        """Register ``frame`` (taken at focus position ``focus``, None if unknown)."""
        reduced = align.prepare_alignment(frame, max_side=self.max_side)
        self._seen += 1
        if focus is not None:
            key = round(float(focus), 4)
        else:
            key = self._phase_of(reduced)
            if key is None:  # the sweep's period is not known (yet)
                return self._without_period(reduced)
        self._frames += 1
        if self._anchor is None or self._anchor.full_shape != reduced.full_shape:
            return self._restart(reduced, key)
        keyframe = self._keys.get(key) if key is not None else None
        if keyframe is not None:
            registration = align.register(keyframe.image, reduced, equalise=False, robust=True,
                                          initial=keyframe.predict())
            if registration.estimate.score < MIN_MATCH_SCORE:  # NaN (no refinement) is no verdict
                return self._restart(reduced, key)
            keyframe.before_last, keyframe.last = keyframe.last, registration.estimate
            if key == self._anchor_key and not self._motion_learned:
                self._learn_motion(registration.transform)
            transform = keyframe.to_anchor.compose(registration.transform)
        else:  # a focus position's first frame: its breathing
            registration = align.register_scale(self._anchor, reduced)
            transform = registration.transform
            self._keys[key] = _Keyframe(reduced, transform, born=self._frames)
        moved = transform.max_displacement(reduced.full_shape)
        if moved > self.max_drift * max(reduced.full_shape):
            return self._restart(reduced, key)
        return KeyframeStep(None if moved == 0 else transform, False, registration)

    def _without_period(self, reduced: align.AlignmentImage) -> KeyframeStep:
        """A frame of a source without focus positions whose sweep period is not known: registered
        onto the anchor when it shows the anchor's focus (a camera that does not sweep), else left
        as it is (registration across a defocus difference is what made the old chain drift)."""
        energy = np.log(align.tile_energy(reduced.image, (2, 3)) + 1e-3)
        signature = energy - energy.mean()
        if self._anchor is None or self._anchor.full_shape != reduced.full_shape or self._anchor_signature is None:
            step = self._restart(reduced, None)
            self._anchor_signature = signature
            return step
        if float(np.mean(np.abs(signature - self._anchor_signature))) >= SAME_FOCUS_DISTANCE:
            return KeyframeStep(None, False)
        registration = align.register(self._anchor, reduced, equalise=False, robust=True)
        if registration.estimate.score < MIN_MATCH_SCORE:
            step = self._restart(reduced, None)
            self._anchor_signature = signature
            return step
        moved = registration.transform.max_displacement(reduced.full_shape)
        if moved > self.max_drift * max(reduced.full_shape):
            step = self._restart(reduced, None)
            self._anchor_signature = signature
            return step
        return KeyframeStep(None if moved == 0 else registration.transform, False, registration)

    def _phase_of(self, reduced: align.AlignmentImage) -> float | None:
        """The frame's place in the sweep (frame number mod period), once the period is clear."""
        energy = np.log(align.tile_energy(reduced.image, (6, 8)) + 1e-3)
        self._signatures.append(energy - energy.mean())
        if self._period is None:
            self._period = _sweep_period(list(self._signatures))
            if self._period is None:
                return None
            self._anchor = None  # the keyframes start now, from this frame
        return float(-1 - (self._seen % self._period))  # negative: never a real focus position

    def _learn_motion(self, back_to_anchor: align.SimilarityTransform) -> None:
        """The sweep is back at the anchor's focus position: ``back_to_anchor`` (this frame ->
        anchor, same focus, unbiased) is the eye's motion over one sweep. Each keyframe was taken
        part of the way through it; its breathing transform knows nothing of that motion, so it
        takes its share (linear in time: the eye moves smoothly over a sweep of ~0.3 s)."""
        self._motion_learned = True
        span = self._frames
        for keyframe in self._keys.values():
            if keyframe.born == 0 or span <= 0:
                continue
            share = keyframe.born / span
            shift = align.SimilarityTransform(tx=share * back_to_anchor.tx, ty=share * back_to_anchor.ty)
            keyframe.to_anchor = shift.compose(keyframe.to_anchor)

    def _restart(self, reduced: align.AlignmentImage, key: float | None) -> KeyframeStep:
        self._anchor, self._anchor_key, self._anchor_signature = reduced, key, None
        self._keys = {} if key is None else {key: _Keyframe(reduced, align.SimilarityTransform.identity())}
        self._frames, self._motion_learned = 0, False
        return KeyframeStep(None, True)


def _sweep_period(signatures: list[np.ndarray]) -> int | None:
    """The lag at which the sharpness maps repeat, when one lag stands out; else None."""
    n = len(signatures)
    mean_distance = {}
    for lag in range(2, min(MAX_PERIOD, (n - 2) // 2) + 1):
        mean_distance[lag] = float(np.mean([np.mean(np.abs(signatures[t] - signatures[t - lag]))
                                            for t in range(lag, n)]))
    if not mean_distance:
        return None
    best = min(mean_distance, key=mean_distance.get)
    others = [d for lag, d in mean_distance.items() if lag % best != 0]
    if n < 2 * best + 2 or not others or mean_distance[best] >= PERIOD_CLARITY * min(others):
        return None
    return best
