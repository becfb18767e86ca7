"""Global alignment of focal-stack frames: one similarity transform (scale, rotation, shift) per frame.

Eye motion shifts and rotates the view; a microscope's magnification drifts with focus ("focus
breathing", about 1% across a sweep). Each frame is registered to a reference frame on reduced grey
images: phase correlation (Kuglin & Hines 1975) finds the shift, then inverse-compositional
Lucas-Kanade (Baker & Matthews, IJCV 2004) refines a 4-parameter similarity on a two-level pyramid,
on images normalised to zero mean and unit variance like ECC (Evangelidis & Psarakis, PAMI 2008).
A Gaussian blur (a real, positive transfer function) leaves the Fourier phase untouched and the
criteria ignore brightness/contrast, which makes both steps robust to the defocus difference
between frames focused at different depths. See docs/alignment.md for measured accuracy and cost.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .engines.base import validate_stack

DEFAULT_MAX_SIDE = 320
# Below this many pixels per side the correlation surface has too few samples to trust.
MIN_SIDE = 16
# A half-size pyramid level is added when it keeps at least this many pixels per side.
_MIN_LEVEL_SIDE = 32
# A transform is applied only where the data supports it (``register``): it must move some pixel
# by at least this much (full-resolution px; below it resampling costs more detail than the
# correction restores) ...
MIN_DISPLACEMENT_PX = 0.25
# ... and explain the two frames better than identity by at least this share of their residual
# difference, measured after their sharpness was equalised tile by tile (``equalise_blur``). On
# still stacks the estimate, pulled by the defocus difference, improved the residual by at most
# 1.1 % (40 frames, 512 px to 1080p, disc PSF, instrument, noise, JPEG); real motion of 0.5 px or
# more by 1.5 % to 73 % (docs/alignment.md).
SIGNIFICANT_IMPROVEMENT = 0.02
# On small images the residual rests on few pixels and moves more by chance: the improvement must
# also exceed this many times 1/sqrt(compared pixels) (a 120x160 frame: 3.4 %; 1080p: the 2 % floor).
IMPROVEMENT_NOISE_FACTOR = 4.0
# Across a large defocus difference the estimate can lock onto a wrong optimum (a 100 px "motion" of
# a still stack at NA 0.3) that still lowers the residual. Registered the other way round, from
# its own start, such an estimate does not come back to where it began; a true motion does. An
# estimate is applied only when the two compose to within this many full-resolution px, or
# ``_ROUND_TRIP_REDUCED_PX`` reduced px where that is more (the estimator's own precision on
# strongly reduced frames). Chosen on seeds 2000-2007 (520 px, NA 0.13-0.3, breathing and jitter):
# the correct estimates came back within 0.0-0.66 px, and the mean registration error fell from
# 1.57 to 0.72 px with no estimate worse than identity applied. A tolerance growing with the
# motion (5 % of it) kept a 98 px breathing of focus-stack's PCB example (back within 3.3 px) but
# also let a 34 px error through at NA 0.3: the worst case decides (docs/alignment.md).
MAX_ROUND_TRIP_PX = 0.75
_ROUND_TRIP_REDUCED_PX = 0.4
_INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
                   "lanczos": cv2.INTER_LANCZOS4}
# Lucas-Kanade stops when an update moves no pixel by more than this (reduced pixels).
_TOLERANCE_PX = 0.01
# Lucas-Kanade compares every this-many-th pixel of each row and column of the reduced, blurred
# frames: the blur (sigma 1) leaves little between neighbours, and the per-iteration cost of the
# robust estimate (weights, normal equations over every compared pixel) falls about 4x. The
# significance test (``_relative_improvement``) still compares every pixel: its thresholds were
# chosen on that statistic.
_SAMPLE_STRIDE = 2


@dataclass(frozen=True)
class SimilarityTransform:
    """A 2-D similarity ``p_ref = scale * R(rotation) @ p_moving + (tx, ty)`` in pixel coordinates.

    Pixel centres sit at integer coordinates, origin at the top-left pixel (OpenCV's convention),
    so ``matrix`` can be passed straight to ``cv2.warpAffine``.

    Attributes
    ----------
    scale : float
        Magnification of the moving frame's content onto the reference (1 = none).
    rotation : float
        Radians; positive turns the x axis towards +y, i.e. clockwise as displayed (y points
        down). ``cv2.getRotationMatrix2D`` uses the opposite sign.
    tx, ty : float
        Translation in pixels of the reference frame.
    score : float
        How well the frames matched when estimated: normalised correlation of the registered
        reduced images, in [-1, 1]; NaN if unknown or if only the shift could be estimated.
        Not part of equality.
    """

    scale: float = 1.0
    rotation: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    score: float = field(default=float("nan"), compare=False)

    @classmethod
    def identity(cls) -> "SimilarityTransform":
        return cls()

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, *, score: float = float("nan")) -> "SimilarityTransform":
        """The similarity nearest (least squares) to a 2x3 affine ``matrix``."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape not in ((2, 3), (3, 3)):
            raise InputError(f"matrix must be 2x3 or 3x3, got shape {m.shape}")
        a = 0.5 * (m[0, 0] + m[1, 1])
        b = 0.5 * (m[1, 0] - m[0, 1])
        scale = math.hypot(a, b)
        if not scale > 0:
            raise InputError("matrix has no similarity part (zero scale)")
        return cls(scale=float(scale), rotation=float(math.atan2(b, a)), tx=float(m[0, 2]), ty=float(m[1, 2]), score=score)

    @classmethod
    def about_point(
        cls, *, scale: float = 1.0, rotation: float = 0.0, center: tuple[float, float] = (0.0, 0.0),
        shift: tuple[float, float] = (0.0, 0.0),
    ) -> "SimilarityTransform":
        """Scale and rotate about ``center`` (x, y), then shift: how focus breathing acts about the
        optical axis."""
        c, s = scale * math.cos(rotation), scale * math.sin(rotation)
        cx, cy = center
        tx = cx - (c * cx - s * cy) + shift[0]
        ty = cy - (s * cx + c * cy) + shift[1]
        return cls(scale=scale, rotation=rotation, tx=tx, ty=ty)

    @property
    def matrix(self) -> np.ndarray:
        """2x3 float64 matrix mapping moving-frame coordinates to reference coordinates."""
        c, s = self.scale * math.cos(self.rotation), self.scale * math.sin(self.rotation)
        return np.array([[c, -s, self.tx], [s, c, self.ty]], dtype=np.float64)

    @property
    def matrix3(self) -> np.ndarray:
        """The same as a 3x3 homogeneous matrix."""
        return np.vstack([self.matrix, [0.0, 0.0, 1.0]])

    def inverse(self) -> "SimilarityTransform":
        """The transform mapping reference coordinates back to the moving frame."""
        return SimilarityTransform.from_matrix(np.linalg.inv(self.matrix3), score=self.score)

    def compose(self, other: "SimilarityTransform") -> "SimilarityTransform":
        """``self ∘ other``: apply ``other`` first, then ``self`` (chain frame i -> j -> reference)."""
        return SimilarityTransform.from_matrix(self.matrix3 @ other.matrix3)

    __matmul__ = compose

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map an (N, 2) array of (x, y) moving-frame points to reference coordinates."""
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            raise InputError(f"points must be (N, 2), got shape {p.shape}")
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def max_displacement(self, shape: tuple[int, ...]) -> float:
        """Largest distance (pixels) any pixel of an image of ``shape`` moves: a size-aware norm."""
        h, w = shape[:2]
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
        return float(np.max(np.linalg.norm(self.apply(corners) - corners, axis=1)))


@dataclass(frozen=True)
class AlignmentImage:
    """A frame reduced for registration: grey float32 with at most ``max_side`` pixels per side.

    A live buffer computes it once per frame (``prepare_alignment``) and keeps it beside the frame.
    ``factor`` is the integer reduction: reduced pixel ``x_r`` covers full pixels
    ``factor * x_r .. factor * x_r + factor - 1``.
    """

    image: np.ndarray
    full_shape: tuple[int, int]
    factor: int = 1
    #: What registrations onto this image as the reference computed once (its blurred copy,
    #: gradients, template): a live keyframe is the reference of every frame at its focus.
    cache: dict = field(default_factory=dict, compare=False, repr=False)


def prepare_alignment(frame: np.ndarray, *, max_side: int = DEFAULT_MAX_SIDE) -> AlignmentImage:
    """Reduce a frame (HxW or HxWxC, uint8/uint16/float) to the grey image the estimator uses.

    Area averaging (``cv2.INTER_AREA``) is both the cheapest reduction that does not alias and the
    one that dominates the cost at 1080p, so it runs on the grey image after one colour conversion.
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3):
        raise InputError(f"frame must be HxW or HxWxC, got shape {frame.shape}")
    if max_side < MIN_SIDE:
        raise InputError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    h, w = frame.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"frame {w}x{h} is too small to align: each side needs at least {MIN_SIDE} pixels")
    # An integer factor on a crop to a multiple of it takes OpenCV's block-average fast path:
    # 0.6 ms instead of 3.3 ms for 1080p -> 320x180 (measured); the dropped < factor edge pixels
    # do not matter for a global transform.
    factor = max(1, math.ceil(max(h, w) / max_side))
    rh, rw = h // factor, w // factor
    if min(rh, rw) < MIN_SIDE:
        factor = max(1, min(h, w) // MIN_SIDE)
        rh, rw = h // factor, w // factor
    crop = frame[: rh * factor, : rw * factor]
    if factor % 2 == 0 and crop.ndim == 3 and crop.shape[2] == 3 and crop.dtype in (np.uint8, np.uint16):
        # Halving the colour frame first is OpenCV's fastest reduction: the grey conversion then
        # runs on a quarter of the pixels (1080p: 1.15 -> 0.68 ms; the reduced image differs by at
        # most one level of rounding).
        crop = cv2.resize(crop, (rw * factor // 2, rh * factor // 2), interpolation=cv2.INTER_AREA)
        factor_left = factor // 2
    else:
        factor_left = factor
    grey = _to_grey(crop)
    if factor_left > 1:
        grey = cv2.resize(grey, (rw, rh), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float32, copy=False)
    if frame.dtype == np.uint16:
        grey *= np.float32(255.0 / 65535.0)
    return AlignmentImage(image=np.ascontiguousarray(grey), full_shape=(h, w), factor=factor)


def estimate_similarity(
    reference: np.ndarray | AlignmentImage,
    moving: np.ndarray | AlignmentImage,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    iterations: int = 30,
    sigma: float = 1.0,
) -> SimilarityTransform:
    """Estimate the similarity mapping ``moving`` onto ``reference``.

    Parameters
    ----------
    reference, moving : ndarray or AlignmentImage
        Frames of one shape (HxW or HxWxC), or what ``prepare_alignment`` made of them.
    max_side : int
        Frames are reduced so that their longer side is at most this; the transform is returned
        in full-resolution pixels.
    iterations : int
        Cap on Lucas-Kanade iterations per pyramid level (it usually stops after 3-6, when an
        update moves no pixel by more than 0.01 reduced pixel).
    sigma : float
        Gaussian blur (reduced pixels) applied to both images before registration; 0 disables it.

    Returns
    -------
    SimilarityTransform
        Maps moving-frame pixel coordinates to reference coordinates; ``warp(moving, t)`` lays the
        moving frame over the reference. ``score`` holds the final normalised correlation.

    Notes
    -----
    If the refinement cannot run or diverges (a flat image, a shift too large for the margin),
    the phase-correlation shift alone is returned, with ``score`` NaN.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = cv2.GaussianBlur(rng.random((128, 160)).astype(np.float32), (0, 0), 2)
    >>> moving = np.roll(ref, (3, -5), axis=(0, 1))
    >>> t = estimate_similarity(ref, moving)
    >>> round(t.tx), round(t.ty), round(t.scale, 3)
    (5, -3, 1.0)
    """
    ref = reference if isinstance(reference, AlignmentImage) else prepare_alignment(reference, max_side=max_side)
    mov = moving if isinstance(moving, AlignmentImage) else prepare_alignment(moving, max_side=max_side)
    if ref.full_shape != mov.full_shape:
        raise InputError(
            f"reference is {ref.full_shape[1]}x{ref.full_shape[0]} but moving is "
            f"{mov.full_shape[1]}x{mov.full_shape[0]}: frames must have one size"
        )
    if ref.image.shape != mov.image.shape:
        raise InputError(f"reduced images differ in shape {ref.image.shape} vs {mov.image.shape}: prepare both with one max_side")
    if not sigma >= 0:
        raise InputError(f"sigma must be >= 0, got {sigma}")
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    reduced = _estimate_reduced(ref.image, mov.image, iterations=int(iterations), sigma=float(sigma))
    return _to_full_resolution(reduced, ref)


@dataclass(frozen=True)
class Registration:
    """The outcome of ``register``: what to apply, and why.

    ``transform`` is ``estimate`` when the estimate is significant, else the identity.
    ``improvement`` is the relative reduction of the residual between the sharpness-equalised
    frames at ``estimate`` against identity (0.1: 10 % smaller); ``displacement`` the largest
    pixel motion of ``estimate`` (full-resolution px); ``round_trip`` the largest pixel motion of
    ``estimate`` composed with the registration the other way round (NaN where not checked).
    """

    transform: SimilarityTransform
    estimate: SimilarityTransform
    improvement: float
    displacement: float
    round_trip: float = float("nan")

    @property
    def significant(self) -> bool:
        """True when the estimate is applied (a frame that moved)."""
        return self.transform is self.estimate and self.displacement > 0

    @classmethod
    def none(cls) -> Registration:
        """Nothing estimated, nothing applied (the reference frame itself, a flat frame)."""
        identity = SimilarityTransform.identity()
        return cls(identity, identity, 0.0, 0.0)


def register(
    reference: np.ndarray | AlignmentImage,
    moving: np.ndarray | AlignmentImage,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    min_improvement: float | None = None,
    min_displacement: float = MIN_DISPLACEMENT_PX,
    equalise: bool = True,
    robust: bool = False,
    initial: SimilarityTransform | None = None,
    round_trip: bool = False,
) -> Registration:
    """Register ``moving`` onto ``reference`` and keep the transform only where the data supports it.

    Frames of a focal stack differ in sharpness region by region, and an intensity-based estimate
    mistakes part of that difference for motion: defocus spreads bright structure outwards, which
    looks like a change of scale (on still 1080p stacks up to 2 px at the corners). So both frames
    are first equalised in sharpness tile by tile (``equalise_blur``: the sharper tile is blurred
    until its Laplacian energy matches the other's), the similarity is estimated between the
    equalised frames, and it is applied only when it is significant against identity: it moves some
    pixel by ``min_displacement`` or more AND reduces the residual between the equalised frames by
    ``min_improvement`` or more. Otherwise ``transform`` is the identity and the frame stays as it
    is: alignment is never worse than none where nothing moved.

    Parameters
    ----------
    reference, moving : ndarray or AlignmentImage
        Frames of one shape, or what ``prepare_alignment`` made of them.
    max_side : int
        Reduction for frames given as arrays.
    min_improvement : float, optional
        Relative residual reduction the estimate must reach; default ``SIGNIFICANT_IMPROVEMENT``,
        or ``IMPROVEMENT_NOISE_FACTOR / sqrt(compared pixels)`` where that is larger (small images).
    min_displacement : float
        Largest pixel motion (full-resolution px) the estimate must reach.
    equalise : bool
        Equalise the sharpness first (default). False for two frames taken at one focus position
        (a live sweep compares those): they differ only by motion and noise, and it saves 7 ms.
    robust : bool
        Ignore pixels that disagree far beyond the rest (a moving instrument), in the estimate and
        in the significance test. For frames at one focus position; between frames of different
        sharpness it discards the very regions that carry the registration.
    initial : SimilarityTransform, optional
        Where to start (moving -> reference, full resolution), e.g. the last estimate of a live
        stream; default: a phase-correlation shift.
    round_trip : bool
        A significant estimate is also checked the other way round (``reference`` onto
        ``moving``, from its own start): it is applied only when the two compose to within
        ``MAX_ROUND_TRIP_PX``. Catches estimates locked onto a wrong optimum across a large defocus
        difference; costs a second registration where the first is significant (offline stacks).

    Returns
    -------
    Registration
    """
    ref = reference if isinstance(reference, AlignmentImage) else prepare_alignment(reference, max_side=max_side)
    mov = moving if isinstance(moving, AlignmentImage) else prepare_alignment(moving, max_side=max_side)
    if ref.full_shape != mov.full_shape or ref.image.shape != mov.image.shape:
        raise InputError(f"reference is {ref.full_shape[1]}x{ref.full_shape[0]} but moving is "
                         f"{mov.full_shape[1]}x{mov.full_shape[0]}: frames must have one size (and one max_side)")
    if (min_improvement is not None and not min_improvement >= 0) or not min_displacement >= 0:
        raise InputError(f"min_improvement and min_displacement must be >= 0, got {min_improvement}, {min_displacement}")
    eq_ref, eq_mov = equalise_blur(ref.image, mov.image) if equalise else (ref.image, mov.image)
    start = None if initial is None else SimilarityTransform.from_matrix(_rescale(initial.matrix3, 1.0 / ref.factor))
    # The reference's own work is kept with it when it is used as it is (a live keyframe).
    cache = None if equalise else ref.cache
    reduced = _estimate_reduced(eq_ref, eq_mov, iterations=30, sigma=1.0, robust=robust, initial=start, cache=cache)
    estimate = _to_full_resolution(reduced, ref)
    displacement = estimate.max_displacement(ref.full_shape)
    improvement, compared = _relative_improvement(eq_ref, eq_mov, reduced, robust=robust, cache=cache)
    if min_improvement is None:
        min_improvement = max(SIGNIFICANT_IMPROVEMENT, IMPROVEMENT_NOISE_FACTOR / math.sqrt(max(compared, 1)))
    significant = displacement >= min_displacement and improvement >= min_improvement
    loop = float("nan")
    if significant and round_trip:
        back = register(mov, ref, min_improvement=0.0, min_displacement=0.0, equalise=equalise, robust=robust)
        loop = estimate.compose(back.estimate).max_displacement(ref.full_shape)
        significant = loop <= max(MAX_ROUND_TRIP_PX, _ROUND_TRIP_REDUCED_PX * ref.factor)
    identity = SimilarityTransform.identity()
    return Registration(transform=estimate if significant else identity, estimate=estimate,
                        improvement=improvement, displacement=displacement, round_trip=loop)


def register_scale(
    reference: np.ndarray | AlignmentImage,
    moving: np.ndarray | AlignmentImage,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    min_displacement: float = MIN_DISPLACEMENT_PX,
    min_scale_change: float = 1e-3,
    iterations: int = 20,
) -> Registration:
    """Register ``moving`` onto ``reference`` by a change of scale about the image centre only:
    the focus breathing between two focus positions of one view.

    Between frames focused at different depths a full similarity fit also takes up what is not
    breathing (a moving instrument, the defocus difference: 2 to 3 px of shift and rotation on the
    live demo); breathing itself is a pure magnification about the optical axis. So both frames
    are equalised in sharpness (``equalise_blur``), a scale about the centre and a shift are
    fitted with Tukey-weighted least squares (a moving instrument does not vote; the shift takes
    up the eye's motion, which would bias the scale, and is not returned: across the defocus
    difference it is not reliable, ``surgifuse.keyframes`` learns it between frames of one
    focus), and the scale is applied
    only when the scale differs from 1 by ``min_scale_change`` or more and moves the corners by
    ``min_displacement`` px or more. On the still demo eye the fitted scale stayed within 4e-4 of
    1; with 1.2 % breathing across a sweep it was within 4e-4 of the truth at every focus position
    (docs/alignment.md): the precision is one of scale, so the threshold is one too.
    """
    ref = reference if isinstance(reference, AlignmentImage) else prepare_alignment(reference, max_side=max_side)
    mov = moving if isinstance(moving, AlignmentImage) else prepare_alignment(moving, max_side=max_side)
    if ref.full_shape != mov.full_shape or ref.image.shape != mov.image.shape:
        raise InputError(f"reference is {ref.full_shape[1]}x{ref.full_shape[0]} but moving is "
                         f"{mov.full_shape[1]}x{mov.full_shape[0]}: frames must have one size (and one max_side)")
    eq_ref, eq_mov = equalise_blur(ref.image, mov.image)
    ref_img = cv2.GaussianBlur(eq_ref, (0, 0), 1.0)
    mov_img = cv2.GaussianBlur(eq_mov, (0, 0), 1.0)
    h, w = ref_img.shape
    margin = int(0.06 * w) + 2
    identity = SimilarityTransform.identity()
    if min(h, w) - 2 * margin < MIN_SIDE or float(ref_img.std()) < 1e-6:
        return Registration.none()
    crop, gx, gy, xs, ys = _gradients_about_centre(ref_img, margin)
    template = _normalise(ref_img[crop])
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    # Scale about the centre plus a shift: the shift takes up the eye's motion between the two
    # frames, which would otherwise bias the scale (it is not returned: see the docstring).
    steepest = (np.stack([gx * xs + gy * ys, gx, gy]) / float(ref_img[crop].std())).reshape(3, -1)
    scale, shift = 1.0, np.zeros(2)  # of the reference -> moving map
    for _ in range(iterations):
        m = np.array([[scale, 0.0, cx - scale * cx + shift[0]], [0.0, scale, cy - scale * cy + shift[1]]])
        warped = cv2.warpAffine(mov_img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        error = (_normalise(warped[crop]) - template).ravel()
        weights = _tukey_weights(error)
        normal = (steepest * weights) @ steepest.T
        if not np.all(np.isfinite(normal)) or np.linalg.cond(normal) > 1e12:
            return Registration.none()
        d_scale, dx, dy = np.linalg.solve(normal, (steepest * weights) @ error)
        scale /= 1.0 + d_scale
        shift -= (dx, dy)
        if abs(d_scale) * math.hypot(cx, cy) + abs(dx) + abs(dy) < _TOLERANCE_PX:
            break
    fh, fw = ref.full_shape
    # moving -> reference: the inverse scale, about the full frame's centre
    s = 1.0 / scale
    fcx, fcy = 0.5 * (fw - 1), 0.5 * (fh - 1)
    estimate = SimilarityTransform(scale=s, rotation=0.0, tx=fcx - s * fcx, ty=fcy - s * fcy)
    displacement = estimate.max_displacement(ref.full_shape)
    significant = displacement >= min_displacement and abs(s - 1.0) >= min_scale_change
    return Registration(transform=estimate if significant else identity, estimate=estimate, improvement=float("nan"),
                        displacement=displacement)


#: Blur levels (reduced px) ``equalise_blur`` chooses from, per tile.
_EQUALISE_SIGMAS = (0.0, 0.5, 0.8, 1.2, 1.7, 2.4, 3.4, 4.8)
#: Side of the tiles whose sharpness ``equalise_blur`` matches (reduced px).
_EQUALISE_TILE = 20
#: Blur of the equalised frames before their residual is compared (reduced px): keeps the
#: statistic on the structure both frames still share.
_RESIDUAL_SIGMA = 0.7


def equalise_blur(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two grey float32 images of one shape, each region of the sharper one blurred to the
    sharpness of the other (a Gaussian whose Laplacian energy over a ~20 px tile matches).

    Two frames of a focal stack are sharp in different regions; compared as they are, the
    difference of their blur reads as motion. A Gaussian is not the microscope's disc, but
    matching the energy removes most of the difference (on still 1080p stacks it halved the
    estimated spurious motion, docs/alignment.md).
    """
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"equalise_blur takes two grey images of one shape, got {a.shape} and {b.shape}")
    h, w = a.shape
    tiles = (max(1, h // _EQUALISE_TILE), max(1, w // _EQUALISE_TILE))
    levels_a = _blur_levels(np.asarray(a, np.float32))
    levels_b = _blur_levels(np.asarray(b, np.float32))
    energy_a = np.stack([tile_energy(x, tiles) for x in levels_a])  # (L, ty, tx)
    energy_b = np.stack([tile_energy(x, tiles) for x in levels_b])
    sigmas = np.asarray(_EQUALISE_SIGMAS, np.float32)
    log_a, log_b = np.log(energy_a + 1e-6), np.log(energy_b + 1e-6)
    # For each tile the level of the sharper image whose energy is closest to the other's unblurred one.
    match_a = sigmas[np.argmin(np.abs(log_a - log_b[0]), axis=0)]
    match_b = sigmas[np.argmin(np.abs(log_b - log_a[0]), axis=0)]
    a_sharper = energy_a[0] > energy_b[0]
    sigma_a = np.where(a_sharper, match_a, 0.0).astype(np.float32)
    sigma_b = np.where(a_sharper, 0.0, match_b).astype(np.float32)
    return _blend_levels(levels_a, sigma_a, (h, w)), _blend_levels(levels_b, sigma_b, (h, w))


def _blur_levels(img: np.ndarray) -> list[np.ndarray]:
    return [img if s == 0 else cv2.GaussianBlur(img, (0, 0), s) for s in _EQUALISE_SIGMAS]


def tile_energy(img: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """Mean squared Laplacian of a grey float32 image over a ``tiles`` (rows, columns) grid: how
    much fine structure, i.e. how sharp, each region is."""
    lap = cv2.Laplacian(img, cv2.CV_32F, ksize=3)
    return cv2.resize(lap * lap, (tiles[1], tiles[0]), interpolation=cv2.INTER_AREA)


def _blend_levels(levels: list[np.ndarray], tile_sigma: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, the blur level interpolated from the tile sigmas (smoothly between tiles)."""
    h, w = shape
    sigma = cv2.resize(tile_sigma, (w, h), interpolation=cv2.INTER_LINEAR)
    position = np.interp(sigma, _EQUALISE_SIGMAS, np.arange(len(_EQUALISE_SIGMAS))).astype(np.float32)
    low = np.floor(position).astype(np.intp)
    frac = (position - low).astype(np.float32)
    high = np.minimum(low + 1, len(levels) - 1)
    stack = np.stack(levels)
    lo = np.take_along_axis(stack, low[None], axis=0)[0]
    hi = np.take_along_axis(stack, high[None], axis=0)[0]
    return np.ascontiguousarray(lo + (hi - lo) * frac, dtype=np.float32)


def _relative_improvement(ref: np.ndarray, mov: np.ndarray, transform: SimilarityTransform, *,
                          robust: bool = False, cache: dict | None = None) -> tuple[float, int]:
    """How much smaller the residual between ``ref`` and the warped ``mov`` is at ``transform``
    (moving -> reference, reduced px) than at identity, as a share of the identity residual; and
    how many pixels were compared."""
    h, w = ref.shape
    margin = 4 * math.ceil((transform.max_displacement((h, w)) + 0.06 * w) / 4)
    if min(h, w) - 2 * margin < MIN_SIDE:
        return 0.0, 0
    crop = (slice(margin, h - margin), slice(margin, w - margin))
    key = ("residual", ref.shape, margin)
    template = cache.get(key) if cache is not None else None
    if template is None:
        template = _normalise(cv2.GaussianBlur(ref, (0, 0), _RESIDUAL_SIGMA)[crop])
        if cache is not None:
            cache[key] = template
    mov = cv2.GaussianBlur(mov, (0, 0), _RESIDUAL_SIGMA)

    def residual(matrix: np.ndarray) -> float:
        warped = cv2.warpAffine(mov, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        squared = (_normalise(warped[crop]) - template) ** 2
        if robust:  # the best 80 %: a moving instrument does not vote
            return float(np.mean(np.partition(squared.ravel(), int(0.8 * squared.size))[: int(0.8 * squared.size)]))
        return float(np.mean(squared))

    at_identity = residual(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    if at_identity <= 1e-12:
        return 0.0, template.size
    return (at_identity - residual(transform.matrix)) / at_identity, template.size


def warp(
    frame: np.ndarray,
    transform: SimilarityTransform,
    *,
    interpolation: str = "linear",
    return_mask: bool = False,
    fill: float | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Resample ``frame`` into reference coordinates: ``out(p) = frame(transform⁻¹(p))``.

    ``interpolation`` is "linear" (fastest: 11 ms for 1080p RGB here), "cubic" (29 ms) or
    "lanczos" (Lanczos-4, 156 ms), which keep more of the fine detail that the focus measure
    needs (see ``align_stack``), or "nearest".

    Same shape and dtype as ``frame``. Pixels that come from outside the frame repeat its border
    (``BORDER_REPLICATE``), so no black wedge enters the fusion; with ``fill`` a number, they take
    that value instead (with "nearest" exactly the pixels whose nearest source pixel lies outside:
    ``warp_onto`` onto a constant background, at half its cost). ``return_mask=True`` also returns
    a bool HxW mask that is True where the pixel came from inside the frame.
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3):
        raise InputError(f"frame must be HxW or HxWxC, got shape {frame.shape}")
    flags = _warp_flags(transform, interpolation)
    h, w = frame.shape[:2]
    m = transform.matrix
    if fill is not None:
        if isinstance(fill, (bool, np.bool_)) or not isinstance(fill, (int, float, np.integer, np.floating)):
            raise InputTypeError(f"fill must be a number or None, got {type(fill).__name__}")
        if frame.ndim == 3 and frame.shape[2] > 4:
            raise InputError(f"fill needs a frame with at most 4 channels, got shape {frame.shape}")
        out = cv2.warpAffine(frame, m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(float(fill),) * 4)
    elif frame.ndim == 3 and frame.shape[2] > 4:
        out = np.stack([_warp_plane(frame[..., c], m, flags) for c in range(frame.shape[2])], axis=-1)
    else:
        out = _warp_plane(frame, m, flags)
    if not return_mask:
        return out
    mask = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, mask.astype(bool)


def warp_onto(
    frame: np.ndarray,
    transform: SimilarityTransform,
    background: np.ndarray,
    *,
    interpolation: str = "linear",
) -> np.ndarray:
    """Like ``warp``, but output pixels whose nearest source pixel lies outside ``frame`` keep
    ``background``'s value (those inside take the interpolated frame, its border repeated).

    ``background`` has the shape and dtype of ``frame`` and is not changed (a copy is written).
    The live pipeline uses it to bring a fused image from the stack's coordinates into the newest
    frame's: where the stack does not cover the current view, the newest raw frame shows.
    """
    frame, background = np.asarray(frame), np.asarray(background)
    if frame.shape != background.shape or frame.dtype != background.dtype:
        raise InputError(f"background must match frame: got {background.shape} {background.dtype}, "
                         f"frame {frame.shape} {frame.dtype}")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] > 4):
        raise InputError(f"frame must be HxW or HxWxC with C <= 4, got shape {frame.shape}")
    flags = _warp_flags(transform, interpolation)
    h, w = frame.shape[:2]
    out = _warp_plane(frame, transform.matrix, flags)
    # Only pixels within the largest corner displacement of the border can have a source outside
    # the frame: the background is filled in along those strips, by a nearest-neighbour mask of
    # the frame's footprint. OpenCV's BORDER_TRANSPARENT did it over the whole frame, and only
    # for four channels at speed: 3.3-6.4 ms at 1080p against 2.2-3.1 ms this way.
    d = math.ceil(transform.max_displacement((h, w))) + 2
    m = transform.matrix
    ones = _ones(h, w)

    def fill(y0: int, y1: int, x0: int, x1: int) -> None:
        if y1 <= y0 or x1 <= x0:
            return
        inside = cv2.warpAffine(ones, into_window(m, x0, y0), (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        outside = inside == 0
        np.copyto(out[y0:y1, x0:x1], background[y0:y1, x0:x1], where=outside[..., None] if out.ndim == 3 else outside)

    top, bottom = min(h, d), max(0, h - d)
    fill(0, top, 0, w)
    fill(max(top, bottom), h, 0, w)
    fill(top, bottom, 0, min(w, d))
    fill(top, bottom, max(min(w, d), w - d), w)
    return out


def into_window(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A 2x3 warp (``cv2.warpAffine``'s forward matrix) that writes into the output window whose
    top-left pixel is (x0, y0): the same warp, in the window's own pixel grid."""
    moved = np.array(matrix, dtype=np.float64, copy=True)
    moved[:, 2] -= (x0, y0)
    return moved


def align_stack(
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    reference: str | int = "middle",
    max_side: int = DEFAULT_MAX_SIDE,
    interpolation: str = "lanczos",
) -> tuple[list[np.ndarray], list[SimilarityTransform]]:
    """Align every frame of a focal stack to one reference frame.

    Parameters
    ----------
    frames : sequence of ndarray
        K frames of one shape and dtype.
    reference : "middle", "first", "last" or int
        The frame the others are mapped onto; ``"middle"`` is index ``K // 2``.
    max_side : int
        Reduction for the estimator (see ``estimate_similarity``).
    interpolation : {"lanczos", "cubic", "linear", "nearest"}
        Resampling of the warped frames. Resampling low-passes a frame, which lowers its focus
        measure against the unwarped reference and softens what it contributes: on 14 synthetic
        stacks with 1% breathing and 4 px motion, the classical engine's PSNR fell against the
        still stacks by 0.59 dB after Lanczos-4 warping (the default: the offline path favours
        quality), 0.90 dB after cubic (5x faster) and 2.8 dB after bilinear (docs/alignment.md).

    Returns
    -------
    aligned : list of ndarray
        The frames in reference coordinates. The reference, and every frame whose estimated
        motion is not significant (``register``), is passed through unchanged (not copied, not
        resampled): a still stack comes out exactly as it went in.
    transforms : list of SimilarityTransform
        Per frame, moving -> reference as applied (identity for the reference and where the
        estimate was not significant).
    """
    stack = validate_stack(frames)
    registrations = register_stack(stack, reference=reference, max_side=max_side)
    aligned = [frame if r.transform.max_displacement(frame.shape) == 0 else warp(frame, r.transform,
                                                                                 interpolation=interpolation)
               for frame, r in zip(stack, registrations)]
    return aligned, [r.transform for r in registrations]


def register_stack(
    frames: Sequence[np.ndarray] | np.ndarray, *, reference: str | int = "middle", max_side: int = DEFAULT_MAX_SIDE
) -> list[Registration]:
    """``register`` every frame of a stack onto the reference frame (identity for the reference).

    Each frame is registered to the reference directly, not through its neighbours, so that the
    errors of several estimates do not add up, and a significant estimate is applied only when
    the registration the other way round confirms it (``register(..., round_trip=True)``).
    """
    stack = validate_stack(frames)
    ref_index = reference_index(reference, len(stack))

    def register_frame(i: int) -> Registration:
        return Registration.none() if i == ref_index else register_onto_reference(prepared[ref_index], prepared[i])

    # The frames are independent: on two threads (OpenCV and numpy release the GIL) pcb-depthmap's
    # ten 2048x1536 frames register in 143-148 ms instead of 189-193.
    workers = max(1, min(len(stack), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(functools.partial(prepare_alignment, max_side=max_side), stack))
        return list(pool.map(register_frame, range(len(stack))))


def register_onto_reference(reference: AlignmentImage, moving: AlignmentImage) -> Registration:
    """One frame of a stack onto its reference frame, by ``register_stack``'s rule (a significant
    estimate confirmed the other way round). A caller that streams the frames prepares the
    reference once and each frame as it arrives."""
    return register(reference, moving, round_trip=True)


# ----------------------------------------------------------------------------------------- internals


def reference_index(reference: str | int, k: int) -> int:
    if isinstance(reference, str):
        named = {"middle": k // 2, "first": 0, "last": k - 1, "newest": k - 1}
        if reference not in named:
            raise InputError(f"reference must be 'middle', 'first', 'last' or a frame index, got {reference!r}")
        return named[reference]
    if isinstance(reference, (bool, np.bool_)) or not isinstance(reference, (int, np.integer)):
        raise InputTypeError(f"reference must be a string or an int, got {type(reference).__name__}")
    if not -k <= reference < k:
        raise InputError(f"reference index {reference} is outside a stack of {k} frames")
    return int(reference) % k


def _to_grey(frame: np.ndarray) -> np.ndarray:
    """Grey image in the frame's own dtype where OpenCV supports it (8U, 16U, 32F), else float32."""
    img = frame
    if img.dtype not in (np.uint8, np.uint16, np.float32):
        img = img.astype(np.float32)
    if img.ndim == 3:
        c = img.shape[2]
        if c == 1:
            img = img[..., 0]
        elif c == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        elif c == 4:
            img = cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY)
        else:
            img = img.mean(axis=2, dtype=np.float32)
    return img


def _warp_flags(transform, interpolation: str) -> int:
    """The OpenCV flags for ``interpolation``, after checking both arguments."""
    if not isinstance(transform, SimilarityTransform):
        raise InputTypeError(f"transform must be a SimilarityTransform, got {type(transform).__name__}")
    flags = _INTERPOLATIONS.get(interpolation)
    if flags is None:
        raise InputError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}")
    return flags


@functools.lru_cache(maxsize=4)
def _ones(h: int, w: int) -> np.ndarray:
    """A read-only uint8 image of ones (the footprint ``warp_onto`` warps), made once per size."""
    ones = np.ones((h, w), np.uint8)
    ones.flags.writeable = False
    return ones


def _warp_plane(img: np.ndarray, m: np.ndarray, flags: int) -> np.ndarray:
    # Three channels are warped as they are: with OpenCV 5.1 that is faster in the live step than
    # going through RGBA for its four-channel SIMD path (align stage at 1080p 12.6 against
    # 14.0-14.7 ms p50, interleaved runs, 2026-12-03), which was 1.6x faster with OpenCV 4.
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _estimate_reduced(ref: np.ndarray, mov: np.ndarray, *, iterations: int, sigma: float,
                      robust: bool = False, initial: SimilarityTransform | None = None,
                      cache: dict | None = None) -> SimilarityTransform:
    """Similarity moving -> reference between two reduced grey images, in reduced pixels.

    Phase correlation on a half-size level gives the shift (or ``initial``, moving -> reference,
    when the caller knows where to start: phase correlation follows whatever has the strongest
    edges, a moving instrument included); Lucas-Kanade refines a similarity on the half-size level,
    then on the reduced level.
    """
    levels = [(ref, mov)]
    # A coarse level widens the capture range for a blind start; from a known start (a live
    # stream's last estimate) it only costs time.
    if min(ref.shape) >= 2 * _MIN_LEVEL_SIDE and initial is None:
        levels.append((_half(ref), _half(mov)))
    if initial is not None:
        ref_to_mov = _rescale(initial.inverse().matrix3, 2.0 ** -(len(levels) - 1))
    else:
        coarse_ref, coarse_mov = levels[-1]
        h, w = coarse_ref.shape
        window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        # OpenCV 5.0's phaseCorrelate multiplies its inputs by the window in place: pass copies, or
        # the cached reduced frames of a live buffer get corrupted (measured).
        (dx, dy), _response = cv2.phaseCorrelate(coarse_ref.copy(), coarse_mov.copy(), window)
        # phaseCorrelate(ref, mov) returns d with mov(x) ~ ref(x - d); the warp maps ref -> mov.
        ref_to_mov = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
    shift_only = ref_to_mov
    score = float("nan")
    for level, (r, m) in reversed(list(enumerate(levels))):
        try:
            ref_to_mov, score = _lucas_kanade_similarity(r, m, ref_to_mov, iterations=iterations, sigma=sigma,
                                                         robust=robust, cache=cache)
        except _RegistrationFailed:
            ref_to_mov, score = shift_only, float("nan")
            break
        if level:
            ref_to_mov = _rescale(ref_to_mov, 2.0)
            shift_only = _rescale(shift_only, 2.0)
    if not np.all(np.isfinite(ref_to_mov)):
        ref_to_mov, score = shift_only, float("nan")
    return SimilarityTransform.from_matrix(ref_to_mov, score=score).inverse()


class _RegistrationFailed(Exception):
    pass


def _gradients_about_centre(img: np.ndarray, margin: int, stride: int = 1):
    """The compared region (``margin`` px in from each side, every ``stride``-th pixel), the
    image's Sobel gradients over it and the pixel coordinates about the image centre (a row and a
    column): what every steepest-descent image of a warp about the centre is made of."""
    h, w = img.shape
    crop = (slice(margin, h - margin, stride), slice(margin, w - margin, stride))
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)[crop]
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)[crop]
    xs = (np.arange(margin, w - margin, stride, dtype=np.float32) - 0.5 * (w - 1))[None, :]
    ys = (np.arange(margin, h - margin, stride, dtype=np.float32) - 0.5 * (h - 1))[:, None]
    return crop, gx, gy, xs, ys


def _lk_template(ref: np.ndarray, sigma: float, margin: int):
    """What Lucas-Kanade needs of the reference alone: the normalised template, the steepest-descent
    images for p = (a, b, tx, ty) (warp [[1+a, -b, tx], [b, 1+a, ty]] about the centre), the
    inverse Hessian and the compared region."""
    h, w = ref.shape
    if sigma > 0:
        ref = cv2.GaussianBlur(ref, (0, 0), sigma)
    crop, gx, gy, xs, ys = _gradients_about_centre(ref, margin, _SAMPLE_STRIDE)
    ref_std = float(ref[crop].std())
    if ref_std < 1e-6:  # a flat image: nothing to register
        raise _RegistrationFailed
    template = _normalise(ref[crop])
    steepest = np.stack([gx * xs + gy * ys, gy * xs - gx * ys, gx, gy]).reshape(4, -1)
    steepest /= ref_std  # gradient of the normalised template
    hessian = steepest @ steepest.T
    if not np.all(np.isfinite(hessian)) or np.linalg.cond(hessian) > 1e12:
        raise _RegistrationFailed
    return template, steepest, np.linalg.inv(hessian), crop


def _lucas_kanade_similarity(
    ref: np.ndarray, mov: np.ndarray, ref_to_mov: np.ndarray, *, iterations: int, sigma: float, robust: bool = False,
    cache: dict | None = None,
) -> tuple[np.ndarray, float]:
    """Inverse-compositional Lucas-Kanade (Baker & Matthews, IJCV 2004) for a similarity warp.

    Both images are blurred by ``sigma``, then normalised to zero mean and unit variance over the
    compared region (as ECC does), so a global brightness or contrast change between frames does
    not bias the estimate. The region excludes a margin wide enough for the border pixels that the
    warp pulls from outside the moving frame. With ``robust``, pixels whose residual is far
    beyond the typical one (Tukey's biweight on the median absolute residual, iteratively
    reweighted) stop counting: a moving instrument then does not pull the estimate. ``cache``
    keeps the reference's template between calls (a live keyframe). Returns the refined 3x3
    ref -> mov warp and the normalised correlation of the compared region.
    """
    h, w = ref.shape
    if sigma > 0:
        mov = cv2.GaussianBlur(mov, (0, 0), sigma)
    half_diag = 0.5 * math.hypot(w, h)
    # Room for the current warp, a further 2% scale/rotation change, and the blur's reach (in
    # steps of 4 px, so that a reference's template can be reused while the warp changes a little).
    margin = 4 * math.ceil((_displacement(ref_to_mov, w, h) + 0.02 * half_diag + 2.0 * sigma + 1) / 4)
    if min(h, w) - 2 * margin < _MIN_LEVEL_SIDE // 2:
        raise _RegistrationFailed
    key = ("lk", ref.shape, sigma, margin)
    prepared = cache.get(key) if cache is not None else None
    if prepared is None:
        prepared = _lk_template(ref, sigma, margin)
        if cache is not None:
            cache[key] = prepared
    template, steepest, hessian_inv, crop = prepared
    cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
    weights = None
    centre = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    centre_inv = np.linalg.inv(centre)
    warp_matrix = np.array(ref_to_mov, dtype=np.float64)
    error = None
    for _ in range(iterations):
        warped = cv2.warpAffine(
            mov, warp_matrix[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        error = (_normalise(warped[crop]) - template).reshape(-1)
        if robust:
            weights = _tukey_weights(error)
            weighted = steepest * weights
            normal, rhs = weighted @ steepest.T, weighted @ error
            try:  # a 4x4 system: solve is 10x cheaper than the pseudo-inverse it falls back on
                a, b, tx, ty = np.linalg.solve(normal, rhs)
            except np.linalg.LinAlgError:
                a, b, tx, ty = np.linalg.pinv(normal) @ rhs
        else:
            a, b, tx, ty = hessian_inv @ (steepest @ error)
        step = centre @ np.array([[1.0 + a, -b, tx], [b, 1.0 + a, ty], [0.0, 0.0, 1.0]]) @ centre_inv
        warp_matrix = warp_matrix @ np.linalg.inv(step)
        if not np.all(np.isfinite(warp_matrix)):
            raise _RegistrationFailed
        if (abs(a) + abs(b)) * half_diag + abs(tx) + abs(ty) < _TOLERANCE_PX:
            break
    # For unit-variance images, correlation = 1 - mean squared difference / 2, over every pixel
    # (also with ``robust``: a view that jumped must not score well on the few pixels that agree).
    if error is None:
        return warp_matrix, float("nan")
    return warp_matrix, 1.0 - 0.5 * float(np.mean(error * error))


def _tukey_weights(residual: np.ndarray, c: float = 4.685) -> np.ndarray:
    """Tukey's biweight of each residual, scaled by 1.4826 x the median absolute residual (of
    every 7th residual: the same scale to a percent, at a seventh of the cost)."""
    scale = 1.4826 * float(np.median(np.abs(residual[::7]))) + 1e-6
    u = np.asarray(residual, np.float32) * np.float32(1.0 / (c * scale))
    weights = np.float32(1.0) - u * u
    np.maximum(weights, 0.0, out=weights)  # |u| >= 1: no vote
    return weights * weights


def _normalise(img: np.ndarray) -> np.ndarray:
    std = float(img.std())
    return (img - float(img.mean())) / (std if std > 1e-6 else 1.0)


def _displacement(matrix3: np.ndarray, w: int, h: int) -> float:
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64)
    moved = corners @ matrix3[:2].T
    return float(np.max(np.hypot(*(moved - corners[:, :2]).T)))


def _half(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    return cv2.resize(img[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _rescale(matrix3: np.ndarray, factor: float) -> np.ndarray:
    """Express a 3x3 warp given on an image reduced by ``factor`` in the larger image's pixels."""
    # cv2.resize aligns pixel centres: x_small = (x_large + 0.5) / factor - 0.5.
    to_small = np.array([[1 / factor, 0.0, 0.5 / factor - 0.5], [0.0, 1 / factor, 0.5 / factor - 0.5], [0.0, 0.0, 1.0]])
    return np.linalg.inv(to_small) @ matrix3 @ to_small


def _to_full_resolution(t: SimilarityTransform, prepared: AlignmentImage) -> SimilarityTransform:
    full = _rescale(t.matrix3, float(prepared.factor))
    return SimilarityTransform.from_matrix(full, score=t.score)


__all__ = [
    "SimilarityTransform",
    "AlignmentImage",
    "prepare_alignment",
    "estimate_similarity",
    "register",
    "register_stack",
    "register_scale",
    "Registration",
    "equalise_blur",
    "warp",
    "into_window",
    "align_stack",
    "DEFAULT_MAX_SIDE",
]
