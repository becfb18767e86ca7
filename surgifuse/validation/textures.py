"""Radiance of the validation scenes' background surface: a procedural tissue (cells with nuclei and
membranes, capillaries, fine grain) or a photograph that ships with scikit-image, recoloured.

The photographs are ones the training generator (``surgifuse.synth.scenes.TEXTURE_NAMES``) does not
use, and the tissue is built from cells and capillaries rather than a fundus: the validation scenes
must not look like the training scenes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from .camera import decode

__all__ = ["PHOTOS", "TEXTURE_KINDS", "background_radiance", "photograph", "tissue"]

TEXTURE_KINDS = ("tissue", "photo")
# Bundled in scikit-image's wheel (no download) and absent from the training generator's list.
PHOTOS = ("camera", "moon", "coins", "clock", "cell", "text", "stereo_motorcycle")


def _grain(rng: np.random.Generator, height: int, width: int, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise (float32 HxW)."""
    noise = rng.standard_normal((height, width), dtype=np.float32)
    if sigma_px > 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    std = float(noise.std())
    return noise / std if std > 0 else noise


def _smooth_curve(rng: np.random.Generator, start: np.ndarray, heading: float, length: float, step: float) -> np.ndarray:
    """Points (N x 2, px) of a random curve whose heading wanders slowly."""
    points = [start]
    turn = 0.0
    for _ in range(max(2, int(length / step))):
        turn = 0.85 * turn + rng.normal(0.0, 0.06)
        heading += turn
        points.append(points[-1] + step * np.array([math.cos(heading), math.sin(heading)]))
    return np.asarray(points)


def tissue(rng: np.random.Generator, height: int, width: int, *, scale_px: float) -> tuple[np.ndarray, dict]:
    """Procedural mucosa: polygonal cells (a Voronoi tessellation of jittered grid points) with a
    dark nucleus each, darker membranes, capillaries, a fine grain and uneven illumination.

    ``scale_px`` is the width of the visible image: feature sizes are fractions of it, so that the
    scene is the same object at every resolution. Returns linear radiance (float32 HxWx3) and the
    parameters drawn.
    """
    cell = float(rng.uniform(0.018, 0.04)) * scale_px
    ny, nx = math.ceil(height / cell) + 1, math.ceil(width / cell) + 1
    gy, gx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    sy = np.clip((gy + 0.5 + rng.uniform(-0.4, 0.4, gy.shape)) * cell, 0, height - 1).astype(int).ravel()
    sx = np.clip((gx + 0.5 + rng.uniform(-0.4, 0.4, gx.shape)) * cell, 0, width - 1).astype(int).ravel()
    seeds = np.full((height, width), 255, np.uint8)
    seeds[sy, sx] = 0
    dist, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # Membranes: where the nearest seed changes between neighbours.
    edge = np.zeros((height, width), np.float32)
    edge[:, 1:] += labels[:, 1:] != labels[:, :-1]
    edge[1:, :] += labels[1:, :] != labels[:-1, :]
    membrane = cv2.GaussianBlur(np.minimum(edge, 1.0), (0, 0), 0.6)
    per_cell = rng.uniform(0.8, 1.2, size=int(labels.max()) + 1).astype(np.float32)
    nucleus_scale = rng.uniform(0.6, 1.3, size=int(labels.max()) + 1).astype(np.float32)
    nucleus_r = float(rng.uniform(0.15, 0.28)) * cell * nucleus_scale[labels]
    nucleus = np.clip(nucleus_r - dist + 0.5, 0.0, 1.0)

    hue = rng.uniform(-0.06, 0.06, size=3).astype(np.float32)
    cytoplasm = np.array([0.70, 0.38, 0.36], np.float32) + hue
    nucleus_colour = np.array([0.22, 0.10, 0.25], np.float32)
    membrane_colour = cytoplasm * 0.45
    vessel_colour = np.array([0.45, 0.04, 0.05], np.float32)
    base = cytoplasm[None, None, :] * (per_cell[labels] * (1.0 + 0.06 * _grain(rng, height, width, 0.7)))[..., None]
    image = base * (1 - membrane[..., None]) + membrane_colour * membrane[..., None]
    image = image * (1 - nucleus[..., None]) + nucleus_colour * nucleus[..., None]

    # Capillaries: a few winding vessels, drawn anti-aliased at 4x and reduced.
    n_vessels = int(rng.integers(2, 7))
    ss = 4
    vessels = np.zeros((height, width), np.float32)
    for _ in range(n_vessels):
        start = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        pts = _smooth_curve(rng, start, float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.4, 1.2)) * scale_px,
                            step=max(2.0, 0.01 * scale_px))
        thick = float(rng.uniform(0.004, 0.012)) * scale_px
        x0, y0 = np.floor(pts.min(axis=0) - thick - 2).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0) + thick + 2).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
        poly = np.round((pts - [x0, y0]) * ss * 16).astype(np.int32)
        cv2.polylines(canvas, [poly], False, 255, thickness=max(1, round(2 * thick * ss)), lineType=cv2.LINE_AA,
                      shift=4)
        small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        vessels[y0:y1, x0:x1] = np.maximum(vessels[y0:y1, x0:x1], small)
    image = image * (1 - vessels[..., None]) + vessel_colour * vessels[..., None]

    # Illumination: a ring light's fall-off, quadratic in the distance from its centre.
    ys = (np.arange(height, dtype=np.float32) - height / 2) / np.float32(scale_px)
    xs = (np.arange(width, dtype=np.float32) - width / 2) / np.float32(scale_px)
    lx, ly = (float(v) for v in rng.uniform(-0.2, 0.2, size=2))
    falloff = float(rng.uniform(0.3, 0.8))
    light = 1.0 - falloff * ((xs[None, :] - lx) ** 2 + (ys[:, None] - ly) ** 2)
    image = image * np.clip(light, 0.25, 1.0)[..., None] * np.float32(rng.uniform(0.9, 1.25))
    params = {"texture": "tissue", "cell_px": cell, "capillaries": n_vessels, "illumination_falloff": falloff}
    return np.clip(image, 0.0, 1.0).astype(np.float32), params


@lru_cache(maxsize=8)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3]
    image = image.astype(np.uint8)
    image.setflags(write=False)
    return image


def photograph(rng: np.random.Generator, height: int, width: int, *, scale_px: float) -> tuple[np.ndarray, dict]:
    """A bundled photograph, mirrored to cover the canvas, scaled, cropped and (if grey) mapped
    between two tissue colours; decoded from its gamma to linear radiance, with a fine grain on top
    (an enlarged photograph alone has no detail at the pixel scale)."""
    name = PHOTOS[int(rng.integers(len(PHOTOS)))]
    image = _photo(name)
    ih, iw = image.shape[:2]
    scale = max(height / ih, width / iw) * float(rng.uniform(0.6, 1.2))
    size = (max(1, round(iw * scale)), max(1, round(ih * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    reps_y, reps_x = -(-height // size[1]) + 1, -(-width // size[0]) + 1
    tiles = [[resized[:: (1 if ry % 2 == 0 else -1), :: (1 if rx % 2 == 0 else -1)] for rx in range(reps_x)]
             for ry in range(reps_y)]
    mosaic = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    y0 = int(rng.integers(0, mosaic.shape[0] - height + 1))
    x0 = int(rng.integers(0, mosaic.shape[1] - width + 1))
    crop = np.ascontiguousarray(mosaic[y0:y0 + height, x0:x0 + width])
    linear = decode(crop)
    if linear.ndim == 2:
        dark = np.array([0.05, 0.02, 0.03], np.float32) + rng.uniform(0, 0.04, size=3).astype(np.float32)
        light = np.array([0.85, 0.55, 0.45], np.float32) + rng.uniform(-0.1, 0.1, size=3).astype(np.float32)
        linear = dark + (light - dark) * linear[..., None]
    grain = _grain(rng, height, width, 0.6) * np.float32(rng.uniform(0.03, 0.07))
    linear = linear * (1.0 + grain[..., None])
    params = {"texture": "photo", "photo": name, "photo_scale": scale, "photo_offset_px": [x0, y0]}
    return np.clip(linear, 0.0, 1.0).astype(np.float32), params


def background_radiance(rng: np.random.Generator, height: int, width: int, *, scale_px: float,
                        kind: str) -> tuple[np.ndarray, dict]:
    """Radiance of the background surface, ``kind`` "tissue" or "photo" (float32 HxWx3, linear)."""
    if kind == "tissue":
        return tissue(rng, height, width, scale_px=scale_px)
    if kind == "photo":
        return photograph(rng, height, width, scale_px=scale_px)
    raise ValueError(f"texture kind must be one of {TEXTURE_KINDS}, got {kind!r}")
