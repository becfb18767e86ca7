"""One validation focal stack with its truth: scene -> optical image per focus position -> breathing
and jitter -> sensor noise -> gamma, 8 bits -> JPEG.

For selecting checkpoints and for reporting only: never train or tune on these stacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgifuse.errors import InputError, InputTypeError
from surgifuse.evaluation.report import to_jsonable

from .camera import (
    FULL_WELL,
    GAMMA,
    READ_NOISE_DN,
    encode,
    frame_matrices,
    jpeg,
    sensor_noise,
    warp_into_frame,
    warp_margin,
)
from .optics import Lens
from .render import FocusRenderer
from .scenes import NEAR_OVERHANG, make_scene

__all__ = ["FORMAT", "VALIDATION_SEED", "ValidationStack", "generate_validation_stack"]

FORMAT = "surgifuse.validation"
FORMAT_VERSION = 1
#: First seed of the validation range. Seeds are salted (see ``_streams``), so even a seed the
#: training generator also uses gives unrelated draws here; the range only keeps reports apart.
VALIDATION_SEED = 9000
# Mixed into every seed: these streams never coincide with any other generator's for the same seed.
_SALT = 0x5EED_0A11
# Default blur radius (px) per focus step, as a fraction of the image width, drawn per stack in
# this range: 2.0-3.1 px per step at 512 px, 7.7-11.5 px at 1920 px (about one depth of field
# per step, as in a sweep that just samples the scene).
BLUR_PER_STEP_FRACTION = (0.004, 0.006)
# Default spherical aberration: slight, so that the point-spread function is not exactly the
# uniform disc the training generator uses.
SPHERICAL_ABERRATION = 0.15
# Warps up to this fraction of the image size leave the canvas, hence the scene, unchanged.
WARP_MARGIN_FRACTION = 0.02


@dataclass
class ValidationStack:
    """A validation focal stack and its truth.

    Attributes
    ----------
    frames : list of ndarray
        K uint8 RGB HxWx3 frames; frame ``i`` is focused at depth ``i`` (focus steps).
    gt : ndarray
        All-in-focus truth, uint8 RGB HxWx3, in the coordinates of the middle frame ``K // 2``.
    depth : ndarray of float32, HxW
        Depth of the front-most surface in focus steps (compare with ``focus_positions``).
    focus_positions : list of float
        ``[0.0, 1.0, ..., K-1]``.
    meta : dict
        Seed, every parameter and what was drawn (JSON-safe).
    foreground_mask : ndarray of bool, HxW
        Where a foreground object covers at least half the pixel.
    """

    frames: list[np.ndarray]
    gt: np.ndarray
    depth: np.ndarray
    focus_positions: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    foreground_mask: np.ndarray | None = None

    @property
    def k(self) -> int:
        return len(self.frames)


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer, got {type(value).__name__}", field=name)
    if not lo <= int(value) <= hi:
        raise InputError(f"{name} must be in {lo}..{hi}, got {value}", field=name)
    return int(value)


def _float(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}", field=name)
    value = float(value)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be in [{lo}, {hi}], got {value}", field=name)
    return value


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent streams: choices, scene, objects, motion, noise. Switching a degradation on or
    off therefore leaves the scene, and the truth, unchanged."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([_SALT, int(seed)]).spawn(5)]


def generate_validation_stack(
    seed: int,
    *,
    height: int = 512,
    width: int = 512,
    k: int = 5,
    noise: bool = True,
    jpeg_quality: int | None = None,
    breathing: float = 0.0,
    jitter: float = 0.0,
    blur_per_step: float | None = None,
    spherical_aberration: float = SPHERICAL_ABERRATION,
    gamma: float = GAMMA,
    full_well: float = FULL_WELL,
    read_noise_dn: float = READ_NOISE_DN,
    texture: str | None = None,
    n_objects: int | None = None,
) -> ValidationStack:
    """Render one validation focal stack with exact truth, deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Everything random follows from it (use the range from ``VALIDATION_SEED`` for reports).
    height, width : int
        Frame size in px (16..4096).
    k : int
        Number of frames = focus positions, at depths ``0, 1, ..., k-1`` (2..32).
    noise : bool
        Poisson-Gaussian sensor noise (``full_well`` electrons at white, ``read_noise_dn`` DN).
    jpeg_quality : int or None
        JPEG-compress each frame at this quality (1..100); None: lossless.
    breathing : float
        Magnification ratio between the last and the first frame minus one, in [-0.1, 0.1]
        (0.01: the last frame is 1 % larger). 0: none.
    jitter : float
        Largest per-frame translation (px, each axis) against the middle frame. 0: none.
    blur_per_step : float or None
        Blur radius (px) per focus step of defocus; None draws it from
        ``BLUR_PER_STEP_FRACTION * width``.
    spherical_aberration : float
        See ``optics.Lens``; in [-0.5, 0.5].
    gamma : float
        Encoding gamma of the camera output (1: linear).
    texture : "tissue" | "photo" | None
        Background texture; None draws one.
    n_objects : int in 0..3 or None
        Foreground objects; None draws 1-3 (the first is an instrument).

    Returns
    -------
    ValidationStack

    Examples
    --------
    >>> s = generate_validation_stack(9000, height=64, width=64, k=3, blur_per_step=2.0)
    >>> len(s.frames), s.frames[0].shape, s.gt.dtype, s.depth.dtype, s.focus_positions
    (3, (64, 64, 3), dtype('uint8'), dtype('float32'), [0.0, 1.0, 2.0])
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    height = _int("height", height, 16, 4096)
    width = _int("width", width, 16, 4096)
    k = _int("k", k, 2, 32)
    if jpeg_quality is not None:
        jpeg_quality = _int("jpeg_quality", jpeg_quality, 1, 100)
    breathing = _float("breathing", breathing, -0.1, 0.1)
    jitter = _float("jitter", jitter, 0.0, 0.1 * min(height, width))
    gamma = _float("gamma", gamma, 1.0, 3.0)
    choices, scene_rng, object_rng, motion_rng, noise_rng = _streams(seed)
    drawn_blur = float(choices.uniform(*BLUR_PER_STEP_FRACTION)) * width
    blur = drawn_blur if blur_per_step is None else _float("blur_per_step", blur_per_step, 0.0, 0.1 * width)
    lens = Lens(blur, _float("spherical_aberration", spherical_aberration, -0.5, 0.5))

    # The widest blur: an object just before the first focus position seen from the last.
    pad = math.ceil(blur * (k - 1 + NEAR_OVERHANG + 0.5)) + 2
    margin = pad + max(warp_margin(height, width, breathing, jitter),
                       math.ceil(WARP_MARGIN_FRACTION * max(height, width)) + 2)
    scene = make_scene(scene_rng, object_rng, height=height, width=width, margin=margin, k=k, pad=pad,
                       texture=texture, n_objects=n_objects)
    visible = (slice(margin, margin + height), slice(margin, margin + width))
    gt = encode(scene.all_in_focus()[visible], gamma)
    depth = np.ascontiguousarray(scene.front_depth()[visible])
    mask = np.ascontiguousarray(scene.foreground_mask()[visible])

    matrices = frame_matrices(motion_rng, k, height=height, width=width, breathing=breathing, jitter=jitter)
    renderer = FocusRenderer(scene, lens)
    frames = []
    for i in range(k):
        optical = renderer.render(float(i))
        image = warp_into_frame(optical, matrices[i], margin=margin, height=height, width=width)
        if noise:
            image = sensor_noise(image, noise_rng, full_well=full_well, read_noise_dn=read_noise_dn)
        frame = encode(image, gamma)
        if jpeg_quality is not None:
            frame = jpeg(frame, jpeg_quality)
        frames.append(frame)

    objects = scene.params["objects"]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": "independent",
        "purpose": "validation and reporting only (checkpoint selection, reports): never train or tune on it",
        "seed": int(seed),
        "height": height,
        "width": width,
        "k": k,
        "scene": scene.params["texture_kind"],
        "instrument": any(o["kind"] == "instrument" for o in objects),
        "noise": bool(noise),
        "jpeg_quality": jpeg_quality,
        "breathing": breathing,
        "jitter": jitter,
        # ``surgifuse eval`` aligns a stack whose meta has breathing or motion: jitter is motion.
        "motion": jitter,
        "units": {"depth": "focus steps", "focus_positions": "focus steps", "blur": "px"},
        "depth_convention": "focus steps: frame i is focused at depth i; larger is farther from the microscope",
        "focus_positions": [float(i) for i in range(k)],
        "depth_range": [float(depth.min()), float(depth.max())],
        "lens": {
            "model": "thin lens, disc PSF of radius |depth - focus| * blur_per_step, spherical aberration",
            "blur_per_step_px": blur,
            "spherical_aberration": lens.spherical_aberration,
            # The farthest point seen from the first focus position, or the nearest from the last.
            "max_blur_radius_px": float(max(float(depth.max()), (k - 1) - float(depth.min())) * blur),
        },
        "sensor": {
            "model": "Poisson-Gaussian, gamma-encoded 8-bit",
            "full_well_electrons": float(full_well),
            "read_noise_dn": float(read_noise_dn),
            "gamma": gamma,
        },
        "reference_frame": k // 2,
        "truth_coordinates": f"gt, depth and foreground mask are in the coordinates of frame {k // 2}",
        "frame_transforms": [m.tolist() for m in matrices],
        "frame_transforms_meaning": "2x3 affine: reference (gt) pixel coordinates -> frame pixel coordinates",
        "scene_params": to_jsonable({"background": scene.background.params, **scene.params}),
    }
    return ValidationStack(frames, gt, depth, [float(i) for i in range(k)], meta, mask)
