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
Without focus positions (a source that does not report them) each frame is registered onto the
anchor directly, with equalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import align
from .errors import InputError

__all__ = ["KeyframeAligner", "KeyframeStep"]

#: A frame whose registration onto its keyframe scores below this normalised correlation does not
#: show the same view: the sweep restarts from it.
MIN_MATCH_SCORE = 0.5



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
    #: The last estimate of a frame at this focus position onto this keyframe: where the next one
    #: starts (the eye moves little between two visits of one focus position).
    last: align.SimilarityTransform | None = None
    #: Frames since the anchor when this keyframe was taken.
    born: int = 0


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

    def reset(self) -> None:
        """Forget the anchor and the keyframes: the next frame starts a new sweep."""
        self._anchor: align.AlignmentImage | None = None
        self._anchor_key: float | None = None
        self._keys: dict[float, _Keyframe] = {}
        self._frames = 0  # since the anchor
        self._motion_learned = False

    def step(self, frame: np.ndarray, focus: float | None = None) -> KeyframeStep:
        """Register ``frame`` (taken at focus position ``focus``, None if unknown)."""
        reduced = align.prepare_alignment(frame, max_side=self.max_side)
        key = None if focus is None else round(float(focus), 4)
        self._frames += 1
        if self._anchor is None or self._anchor.full_shape != reduced.full_shape:
            return self._restart(reduced, key)
        keyframe = self._keys.get(key) if key is not None else None
        if keyframe is not None:
            registration = align.register(keyframe.image, reduced, equalise=False, robust=True,
                                          initial=keyframe.last or align.SimilarityTransform.identity())
            if registration.estimate.score < MIN_MATCH_SCORE:  # NaN (no refinement) is no verdict
                return self._restart(reduced, key)
            keyframe.last = registration.estimate
            if key == self._anchor_key and not self._motion_learned:
                self._learn_motion(registration.transform)
            transform = keyframe.to_anchor.compose(registration.transform)
        elif key is not None:  # a focus position's first frame: its breathing
            registration = align.register_scale(self._anchor, reduced)
            transform = registration.transform
            self._keys[key] = _Keyframe(reduced, transform, born=self._frames)
        else:  # no focus position known: onto the anchor directly
            registration = align.register(self._anchor, reduced)
            transform = registration.transform
        moved = transform.max_displacement(reduced.full_shape)
        if moved > self.max_drift * max(reduced.full_shape):
            return self._restart(reduced, key)
        return KeyframeStep(None if moved == 0 else transform, False, registration)

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
        self._anchor, self._anchor_key = reduced, key
        self._keys = {} if key is None else {key: _Keyframe(reduced, align.SimilarityTransform.identity())}
        self._frames, self._motion_learned = 0, False
        return KeyframeStep(None, True)
