"""Assembling a validation scene: a curved, textured background surface behind 1-3 foreground
objects, laid out in depth so that the K focus positions span it.

Depth (focus steps, 0 = the first focus position): the background spans from about a third of the
sweep to just beyond its far end; the objects lie in front of it, in disjoint depth intervals
between just before the first focus position and the background.
"""

from __future__ import annotations

import numpy as np

from surgifuse.errors import InputError

from .layers import Layer, Scene
from .objects import OBJECT_KINDS, make_object
from .textures import TEXTURE_KINDS, background_radiance

__all__ = ["make_scene", "surface_depth"]

# The nearest object may lie this far (focus steps) before the first focus position, the far side
# of the background this far beyond the last: a real sweep never brackets a scene exactly.
NEAR_OVERHANG = 0.3
FAR_OVERHANG = 0.4
# Depth gap (focus steps) kept between the objects and the background behind them.
OBJECT_GAP = 0.5


def surface_depth(rng: np.random.Generator, height: int, width: int, *, visible: tuple[int, int, int, int],
                  near: float, far: float) -> tuple[np.ndarray, dict]:
    """A smooth curved surface: a random quadric (bowl, dome or saddle), a tilt and a few broad
    bumps, scaled so that its depth over the visible image spans exactly ``near .. far``.

    Returns depth (float32 HxW over the whole canvas; clipped to half a step beyond the range in
    the margins) and the parameters drawn.
    """
    vy0, vy1, vx0, vx1 = visible
    half = (vx1 - vx0) / 2.0
    xs = ((np.arange(width, dtype=np.float64) - (vx0 + vx1 - 1) / 2.0) / half)[None, :]
    ys = ((np.arange(height, dtype=np.float64) - (vy0 + vy1 - 1) / 2.0) / half)[:, None]
    a, b = rng.uniform(-1.0, 1.0, size=2)
    c = rng.uniform(-0.5, 0.5)
    tx, ty = rng.uniform(-0.6, 0.6, size=2)
    raw = a * xs * xs + b * ys * ys + c * xs * ys + tx * xs + ty * ys
    bumps = []
    for _ in range(int(rng.integers(2, 6))):
        amp, bx, by, sigma = rng.uniform(-0.4, 0.4), rng.uniform(-1, 1), rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.35)
        raw = raw + amp * np.exp(-((xs - bx) ** 2 + (ys - by) ** 2) / (2 * sigma * sigma))
        bumps.append([float(amp), float(bx), float(by), float(sigma)])
    inner = raw[vy0:vy1, vx0:vx1]
    lo, hi = float(inner.min()), float(inner.max())
    span = max(hi - lo, 1e-6)
    depth = near + (raw - lo) / span * (far - near)
    depth = np.clip(depth, near - OBJECT_GAP / 2, far + 0.5).astype(np.float32)
    params = {"quadric": [float(a), float(b), float(c)], "tilt": [float(tx), float(ty)], "bumps": bumps,
              "depth_range": [float(near), float(far)]}
    return depth, params


def make_scene(scene_rng: np.random.Generator, object_rng: np.random.Generator, *, height: int, width: int,
               margin: int, k: int, pad: int, texture: str | None = None, n_objects: int | None = None) -> Scene:
    """Build a scene on a canvas of the visible ``height x width`` plus ``margin`` px on every side.

    Parameters
    ----------
    scene_rng, object_rng : numpy Generator
        Streams for the background and for the objects.
    k : int
        Number of focus positions (depth is in focus steps, ``0 .. k-1``).
    pad : int
        Widest blur radius (px) of the stack: objects get that much room around them.
    texture : "tissue" | "photo" | None
        Background texture; None draws one.
    n_objects : int in 0..3, or None
        Number of foreground objects; None draws 1-3. The first is always an instrument.
    """
    if texture is not None and texture not in TEXTURE_KINDS:
        raise InputError(f"texture must be one of {', '.join(TEXTURE_KINDS)} or None, got {texture!r}", field="texture")
    if n_objects is not None and not (isinstance(n_objects, (int, np.integer)) and 0 <= n_objects <= 3):
        raise InputError(f"n_objects must be 0..3 or None, got {n_objects!r}", field="n_objects")
    ch, cw = height + 2 * margin, width + 2 * margin
    visible = (margin, margin + height, margin, margin + width)
    kind = texture if texture is not None else TEXTURE_KINDS[int(scene_rng.integers(len(TEXTURE_KINDS)))]
    radiance, texture_params = background_radiance(scene_rng, ch, cw, scale_px=float(width), kind=kind)
    last = k - 1
    near_bg = float(scene_rng.uniform(0.3, 0.5)) * last
    far_bg = last + float(scene_rng.uniform(0.0, FAR_OVERHANG))
    depth, surface_params = surface_depth(scene_rng, ch, cw, visible=visible, near=near_bg, far=far_bg)
    background = Layer("background", (0, ch, 0, cw), radiance, np.ones((ch, cw), np.float32), depth,
                       {"texture": texture_params, "surface": surface_params})

    count = int(object_rng.integers(1, 4)) if n_objects is None else int(n_objects)
    kinds = ["instrument"] + [OBJECT_KINDS[int(object_rng.integers(len(OBJECT_KINDS)))] for _ in range(count - 1)]
    kinds = kinds[:count]
    # Disjoint depth intervals in front of the background, one per object, in random order.
    front_far = max(-NEAR_OVERHANG + 0.1, near_bg - OBJECT_GAP)
    edges = np.linspace(-NEAR_OVERHANG, front_far, count + 1)
    order = object_rng.permutation(count)
    objects = []
    for kind_name, slot in zip(kinds, order):
        interval = (float(edges[slot]), float(edges[slot + 1]))
        layer = make_object(kind_name, object_rng, ch, cw, visible=visible, scale_px=float(width),
                            depth_interval=interval, pad=pad)
        objects.append((interval[1], layer))
    objects.sort(key=lambda item: -item[0])  # composited back to front
    layers = [background] + [layer for _, layer in objects]
    params = {"texture_kind": kind, "background_depth_range": [near_bg, far_bg],
              "objects": [layer.params for layer in layers[1:]]}
    return Scene(ch, cw, layers, params)
