"""The halo test scene: a polished instrument under a microscope lamp, sharp at one depth, over a dark
background at another, with point-like specular glints; rendered through the same optics and
occlusion-aware layers as the validation stacks.

Halos are focus stacking's most-reported open artefact (focus-stack issue #8 and its duplicates):
in the frames focused on the background, the defocused bright instrument spreads its light over
the dark background beside its edge (``render.py``: a defocused layer's colour and coverage are
blurred together), so a fusion that takes the background-focused frame there, or blends it in,
shows a glow the truth does not have; one that takes the blurred instrument there darkens the
instrument's edge. Measured with ``surgifuse.evaluation.halo``; docs/classical-engine.md, "Halos".
"""

from __future__ import annotations

import math

import numpy as np

from surgifuse.errors import InputError

from .camera import GAMMA, encode, sensor_noise
from .layers import Layer, Scene
from .objects import _box, _grid
from .optics import Lens
from .render import FocusRenderer
from .stack import _SALT, FORMAT, FORMAT_VERSION, ValidationStack, _float, _int
from .textures import tissue

__all__ = ["halo_scene", "halo_scene_stack"]

# Default blur radius per focus step, as a fraction of the width: a shallow depth of field (3 px
# per step at 256 px), so that the glow of the defocused instrument reaches about 12 px at K = 5.
HALO_BLUR_FRACTION = 0.012
# Linear radiance of the polished metal (0.7: a bright grey, about 217 of 255 once encoded) and the
# peak of its specular stripe (above 1: saturated over a few px at the centre of the stripe).
METAL = (0.68, 0.70, 0.72)
STRIPE_PEAK = 2.5
# The dark background: the validation tissue texture scaled to this mean linear radiance (about 28
# of 255 encoded: near black, its texture faint).
BACKGROUND_LEVEL = 0.008
# Point speculars (glints): peak linear radiance and the Gaussian sigma (px) of each. A glint of
# peak 30 keeps about 0.4 linear (175 of 255) when spread over a disc of radius 6 px.
GLINT_PEAK = (15.0, 40.0)
GLINT_SIGMA = 0.8


def _glints(rng: np.random.Generator, shape: tuple[int, int], where: np.ndarray, count: int) -> np.ndarray:
    """Linear radiance (HxW) of ``count`` Gaussian glints centred on pixels drawn from ``where``."""
    out = np.zeros(shape, np.float32)
    candidates = np.flatnonzero(where)
    if count == 0 or candidates.size == 0:
        return out
    reach = math.ceil(4 * GLINT_SIGMA)
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    spot = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * GLINT_SIGMA ** 2))
    for index in rng.choice(candidates, size=min(count, candidates.size), replace=False):
        y, x = divmod(int(index), shape[1])
        y0, y1 = max(0, y - reach), min(shape[0], y + reach + 1)
        x0, x1 = max(0, x - reach), min(shape[1], x + reach + 1)
        peak = np.float32(rng.uniform(*GLINT_PEAK))
        sy, sx = y0 - (y - reach), x0 - (x - reach)
        out[y0:y1, x0:x1] += peak * spot[sy:sy + y1 - y0, sx:sx + x1 - x0]
    return out


def halo_scene(rng: np.random.Generator, *, height: int, width: int, margin: int, instrument_depth: float,
               background_depth: float, pad: int, glints: int = 6) -> Scene:
    """The halo scene on a canvas of the visible ``height x width`` plus ``margin`` px on each side.

    A dark background (tissue texture scaled to ``BACKGROUND_LEVEL``) at ``background_depth``; in
    front of it, at ``instrument_depth``, a straight polished shaft with a rounded tip entering the
    field (a bright Lambert-shaded cylinder with a saturated specular stripe along it); ``glints``
    point speculars, half on the instrument and half on the background (wet tissue), away from the
    instrument's edge. Depths are in focus steps.
    """
    ch, cw = height + 2 * margin, width + 2 * margin
    visible = (margin, margin + height, margin, margin + width)
    radiance, texture_params = tissue(rng, ch, cw, scale_px=float(width))
    radiance *= np.float32(BACKGROUND_LEVEL / float(radiance.mean()))

    # The shaft: tip in the central third, entering from a random direction, 6-9 % of the width wide.
    vy0, vy1, vx0, vx1 = visible
    tip = np.array([vx0 + width * rng.uniform(0.35, 0.65), vy0 + height * rng.uniform(0.35, 0.65)])
    angle = float(rng.uniform(0, 2 * math.pi))
    d = np.array([math.cos(angle), math.sin(angle)])
    half_width = float(rng.uniform(0.06, 0.09)) * width
    box = _box(np.stack([tip, tip + d * math.hypot(ch, cw)]), half_width + pad + 2, ch, cw)
    ys, xs = _grid(box)
    u = (xs - tip[0]) * np.float32(d[0]) + (ys - tip[1]) * np.float32(d[1])  # along the shaft
    v = -(xs - tip[0]) * np.float32(d[1]) + (ys - tip[1]) * np.float32(d[0])  # across it
    signed = np.where(u >= 0, np.abs(v), np.sqrt(u * u + v * v)) - np.float32(half_width)
    alpha = np.clip(0.5 - signed, 0.0, 1.0).astype(np.float32)
    normal = np.clip(v / np.float32(half_width), -1.0, 1.0)
    lambert = np.sqrt(1.0 - normal * normal)
    stripe_at = float(rng.uniform(-0.4, 0.4))
    stripe = np.float32(STRIPE_PEAK) * np.exp(-(((normal - stripe_at) / 0.12) ** 2))
    inside = np.zeros((ch, cw), bool)
    inside[vy0 + pad:vy1 - pad, vx0 + pad:vx1 - pad] = True
    by0, by1, bx0, bx1 = box
    on_metal = (alpha >= 1.0) & (signed < -2.0) & inside[by0:by1, bx0:bx1]
    metal_glints = _glints(rng, alpha.shape, on_metal & (np.abs(normal - stripe_at) > 0.3), glints // 2)
    colour = np.asarray(METAL, np.float32) * (0.45 + 0.55 * lambert)[..., None] + (stripe + metal_glints)[..., None]
    instrument = Layer("instrument", box, (colour * alpha[..., None]).astype(np.float32), alpha,
                       np.full(alpha.shape, np.float32(instrument_depth)),
                       {"kind": "polished instrument", "tip_px": tip.tolist(), "angle_rad": angle,
                        "half_width_px": half_width, "stripe_at": stripe_at, "stripe_peak": STRIPE_PEAK})

    # Background glints in the visible image, at least 2 * pad from the instrument (their own halo
    # is the question there, not the instrument's).
    far_from_metal = np.ones((ch, cw), bool)
    far_from_metal[by0:by1, bx0:bx1] = signed > 2 * pad
    tissue_glints = _glints(rng, (ch, cw), inside & far_from_metal, glints - glints // 2)
    radiance = radiance + tissue_glints[..., None]
    background = Layer("background", (0, ch, 0, cw), radiance, np.ones((ch, cw), np.float32),
                       np.full((ch, cw), np.float32(background_depth)),
                       {"texture": texture_params, "level": BACKGROUND_LEVEL})
    params = {"scene": "halo", "instrument_depth": float(instrument_depth),
              "background_depth": float(background_depth), "glints": int(glints)}
    return Scene(ch, cw, [background, instrument], params)


def halo_scene_stack(seed: int, *, size: int = 256, k: int = 5, instrument_depth: float = 0.0,
                     background_depth: float | None = None, blur_per_step: float | None = None,
                     glints: int = 6, noise: bool = False, gamma: float = GAMMA) -> ValidationStack:
    """A focal stack of the halo scene with its truth, deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Everything random (the instrument's place, the texture, the glints, the noise) follows from it.
    size : int
        Frames are ``size x size`` px (64..2048).
    k : int
        Frames focused at depths ``0, 1, ..., k-1`` (2..31).
    instrument_depth, background_depth : float
        Depths in focus steps; default 0 and ``k - 1``: the instrument is sharp in the first frame,
        the background in the last, and each is defocused by up to ``k - 1`` steps in the others.
    blur_per_step : float or None
        Blur radius (px) per step of defocus; None: ``HALO_BLUR_FRACTION * size`` (3.1 px at 256).
    glints : int
        Point speculars (0..40), half on the instrument, half on the background.
    noise : bool
        Poisson-Gaussian sensor noise (the validation camera's defaults).
    gamma : float
        Encoding gamma of the 8-bit output.

    Returns
    -------
    ValidationStack
        ``frames``, ``gt`` (every layer sharp, composited), ``depth``, ``focus_positions``,
        ``foreground_mask`` (the instrument) and ``meta``. Frames share the truth's coordinates
        (no breathing, no jitter).

    Examples
    --------
    >>> s = halo_scene_stack(1, size=64, k=3)
    >>> len(s.frames), s.gt.shape, int(s.foreground_mask.sum()) > 0
    (3, (64, 64, 3), True)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    size = _int("size", size, 64, 2048)
    k = _int("k", k, 2, 31)
    glints = _int("glints", glints, 0, 40)
    instrument_depth = _float("instrument_depth", instrument_depth, -1.0, float(k))
    background_depth = float(k - 1) if background_depth is None else _float("background_depth", background_depth,
                                                                            -1.0, float(k))
    blur = HALO_BLUR_FRACTION * size if blur_per_step is None else _float("blur_per_step", blur_per_step, 0.0,
                                                                         0.1 * size)
    gamma = _float("gamma", gamma, 1.0, 3.0)
    scene_rng, noise_rng = (np.random.default_rng(s)
                            for s in np.random.SeedSequence([_SALT, 0x4A10, int(seed)]).spawn(2))
    widest = max(abs(z - f) for z in (instrument_depth, background_depth) for f in (0.0, k - 1.0))
    pad = math.ceil(blur * (widest + 0.5)) + 2
    margin = pad
    scene = halo_scene(scene_rng, height=size, width=size, margin=margin, instrument_depth=instrument_depth,
                       background_depth=background_depth, pad=pad, glints=glints)
    visible = (slice(margin, margin + size), slice(margin, margin + size))
    gt = encode(scene.all_in_focus()[visible], gamma)
    depth = np.ascontiguousarray(scene.front_depth()[visible])
    mask = np.ascontiguousarray(scene.foreground_mask()[visible])
    renderer = FocusRenderer(scene, Lens(blur))
    frames = []
    for i in range(k):
        image = renderer.render(float(i))[visible]
        if noise:
            image = sensor_noise(image, noise_rng)
        frames.append(encode(image, gamma))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": "independent (halo scene)",
        "purpose": "halo measurement and reporting: never train or tune on it",
        "seed": int(seed),
        "height": size,
        "width": size,
        "k": k,
        "scene": "halo",
        "instrument": True,
        "noise": bool(noise),
        "jpeg_quality": None,
        "breathing": 0.0,
        "jitter": 0.0,
        "motion": 0.0,
        "focus_positions": [float(i) for i in range(k)],
        "lens": {"model": "thin lens, disc PSF of radius |depth - focus| * blur_per_step",
                 "blur_per_step_px": blur, "spherical_aberration": 0.0},
        "sensor": {"gamma": gamma},
        "scene_params": {"instrument": scene.foreground[0].params, **scene.params},
    }
    return ValidationStack(frames, gt, depth, [float(i) for i in range(k)], meta, mask)
