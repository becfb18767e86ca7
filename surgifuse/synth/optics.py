"""Thin-lens defocus: disc point-spread functions and occlusion-aware layered compositing.

The defocus model is the geometric (thin-lens) circle of confusion; the renderer is the layered
model of depth-of-field synthesis (split a layer into slabs of equal blur, blur each slab with its
own disc, normalise by the blurred coverage; composite occluding layers front over back), as in
Hasinoff & Kutulakos, "A layer-based restoration framework for variable-aperture photography",
ICCV 2007, and Lee et al., "Real-time lens blur effects and focus control", SIGGRAPH 2010.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from surgifuse.errors import InputError

# Blur radii (px) below this are rendered as sharp: a disc of radius 0.25 px puts < 5 % of its
# weight outside the centre pixel, which 8-bit quantisation cannot show.
SHARP_RADIUS = 0.25
# Discs wider than this are blurred on a 2x, 4x, ... reduced image: the disc already removes every
# frequency the reduced image cannot hold, and the cost stays that of a radius-8 kernel.
MAX_DIRECT_RADIUS = 6.0
TILE = 128  # layered blur works in tiles of this size (px)
# Default object-side NA: with an 8 mm field at 512 px, a fundus scene's 1.5-3.5 mm depth range
# then blurs by up to 6-13 px at the far end of the sweep, and the depth of field (0.48 mm) is
# about one focus step of a 5-frame sweep.
NUMERICAL_APERTURE = 0.065


@dataclass(frozen=True)
class Optics:
    """The microscope's geometric optics, enough for the circle of confusion.

    Parameters
    ----------
    field_of_view_mm : float
        Width of the imaged retina patch (mm): one pixel is ``field_of_view_mm / width`` mm.
    numerical_aperture : float
        Object-side numerical aperture ``sin(theta)`` of the imaging cone.

    Notes
    -----
    A point at depth ``z`` seen with the focus at ``f`` is spread over a disc of radius
    ``|z - f| * tan(theta)`` in the object plane (thin lens, geometric optics), so the blur radius
    in pixels is ``|z - f| * tan(asin(NA)) * width / field_of_view_mm``. The depth of field (blur
    radius <= 1 px) is ``2 * pixel_mm / tan(theta)``: 0.48 mm for the defaults at 512 px, near
    the 0.56 mm the Fusion Network paper reports for its microscope at 20x.
    """

    field_of_view_mm: float = 8.0
    numerical_aperture: float = NUMERICAL_APERTURE

    def __post_init__(self):
        if not (self.field_of_view_mm > 0 and math.isfinite(self.field_of_view_mm)):
            raise InputError(f"field_of_view_mm must be a positive number, got {self.field_of_view_mm}")
        if not (0 <= self.numerical_aperture < 1):
            raise InputError(f"numerical_aperture must be in [0, 1), got {self.numerical_aperture}")

    def pixel_mm(self, width: int) -> float:
        """Size of one pixel in the object plane (mm) for an image ``width`` pixels wide."""
        return self.field_of_view_mm / width

    def blur_px_per_mm(self, width: int) -> float:
        """Blur radius (px) per mm of defocus for an image ``width`` pixels wide."""
        na = self.numerical_aperture
        return na / math.sqrt(1.0 - na * na) / self.pixel_mm(width)

    def depth_of_field_mm(self, width: int) -> float:
        """Depth range over which the blur radius stays <= 1 px."""
        per_mm = self.blur_px_per_mm(width)
        return math.inf if per_mm == 0 else 2.0 / per_mm


@lru_cache(maxsize=256)
def _disc_kernel_cached(radius_q: int) -> np.ndarray:
    radius = radius_q / 64.0
    if radius < SHARP_RADIUS:
        return np.ones((1, 1), np.float32)
    half = int(math.ceil(radius + 0.5))
    # Pixel coverage of the disc, 4x4 supersampled per pixel: an anti-aliased disc whose area
    # grows continuously with the radius (no jumps between integer radii).
    sub = (np.arange(4, dtype=np.float64) + 0.5) / 4 - 0.5
    grid = np.arange(-half, half + 1, dtype=np.float64)
    xs = (grid[:, None] + sub[None, :]).ravel()
    d2 = xs[:, None] ** 2 + xs[None, :] ** 2
    inside = (d2 <= radius * radius).astype(np.float64)
    n = 2 * half + 1
    kernel = inside.reshape(n, 4, n, 4).mean(axis=(1, 3))
    kernel /= kernel.sum()
    kernel.setflags(write=False)
    return kernel.astype(np.float32)


def disc_kernel(radius: float) -> np.ndarray:
    """Anti-aliased disc point-spread function of the given radius (px), summing to 1.

    Parameters
    ----------
    radius : float
        Disc radius in pixels, >= 0. Radii below 0.25 px give the 1x1 identity kernel.

    Returns
    -------
    kernel : ndarray of float32, (2n+1)x(2n+1)
        Each entry is the fraction of that pixel the disc covers (4x4 supersampled), normalised.

    Examples
    --------
    >>> k = disc_kernel(3.0)
    >>> k.shape, round(float(k.sum()), 6)
    ((9, 9), 1.0)
    """
    radius = float(radius)
    if not (radius >= 0 and math.isfinite(radius)):
        raise InputError(f"disc radius must be a finite number >= 0, got {radius}")
    return _disc_kernel_cached(int(round(radius * 64)))


def blur_disc(image: np.ndarray, radius: float) -> np.ndarray:
    """Convolve a float32 image (HxW or HxWxC, C <= 4) with a disc of ``radius`` px.

    Outside the image is taken as zero (callers pad first where the image does not end there).
    Radii above 6 px are blurred on a reduced copy (see ``MAX_DIRECT_RADIUS``).
    """
    if radius < SHARP_RADIUS:
        return image.copy()
    h, w = image.shape[:2]
    scale = 1
    while radius / scale > MAX_DIRECT_RADIUS and min(h, w) // (scale * 2) >= 8:
        scale *= 2
    if scale == 1:
        return cv2.filter2D(image, -1, disc_kernel(radius), borderType=cv2.BORDER_CONSTANT)
    small_size = (max(1, round(w / scale)), max(1, round(h / scale)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
    r_small = radius * small_size[0] / w
    small = cv2.filter2D(small, -1, disc_kernel(r_small), borderType=cv2.BORDER_CONSTANT)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(image.shape)


def radius_levels(max_radius: float) -> np.ndarray:
    """The blur radii (px) at which layers are rendered: 0, 1, ..., 6, then 10 % apart.

    One pixel apart up to 6 px, then geometric: the eye (and a focus measure) cannot tell a disc of
    radius 20 from one of radius 21, so large radii need fewer levels.
    """
    levels = [0.0]
    r = 0.0
    while r < max_radius:
        r = r + 1.0 if r < MAX_DIRECT_RADIUS else r * 1.1
        levels.append(r)
    return np.asarray(levels, np.float64)


def _level_scale(radius: float, h: int, w: int) -> int:
    scale = 1
    while radius / scale > MAX_DIRECT_RADIUS and min(h, w) // (scale * 2) >= 16:
        scale *= 2
    return scale


def _accumulate_levels(acc, layer, radius, valid, levels, js) -> None:
    """Add the blurred slabs of levels ``js`` (radii ``levels[j]`` in this image's px) to ``acc``.

    Tile by tile: a level's pixels form thin bands (rings on the curved retina) whose bounding box
    is most of the image; tiles keep the blurred area near the band's own.
    """
    h, w = valid.shape
    n = len(levels)
    nty, ntx = -(-h // TILE), -(-w // TILE)
    big = np.float32(1e9)
    r_pad = np.full((nty * TILE, ntx * TILE), big, np.float32)
    r_pad[:h, :w] = np.where(valid, radius, big)
    tile_min = r_pad.reshape(nty, TILE, ntx, TILE).min(axis=(1, 3))
    r_pad[:h, :w] = np.where(valid, radius, -big)
    r_pad[h:, :] = -big
    r_pad[:, w:] = -big
    tile_max = r_pad.reshape(nty, TILE, ntx, TILE).max(axis=(1, 3))
    for j in js:
        r = float(levels[j])
        below = levels[j - 1] if j > 0 else -np.inf
        above = levels[j + 1] if j + 1 < n else np.inf
        selected = (tile_max > below) & (tile_min < above)
        if not selected.any():
            continue
        pad = 0 if r < SHARP_RADIUS else int(math.ceil(r)) + 1
        kernel = disc_kernel(r)
        for ty in range(nty):
            row = selected[ty]
            tx = 0
            while tx < ntx:
                if not row[tx]:
                    tx += 1
                    continue
                tx_end = tx
                while tx_end < ntx and row[tx_end]:
                    tx_end += 1
                y0, y1 = ty * TILE, min((ty + 1) * TILE, h)
                x0, x1 = tx * TILE, min(tx_end * TILE, w)
                tx = tx_end
                rc = radius[y0:y1, x0:x1]
                # Hat weights: each pixel's coverage is split linearly between the two levels
                # around its radius (the first level takes all below it, the last all above).
                if j == 0:
                    weight = (above - rc) * np.float32(1.0 / (above - r))
                elif j == n - 1:
                    weight = (rc - below) * np.float32(1.0 / (r - below))
                else:
                    weight = np.minimum((rc - below) * np.float32(1.0 / (r - below)), (above - rc) * np.float32(1.0 / (above - r)))
                np.clip(weight, 0.0, 1.0, out=weight)
                if pad == 0:
                    acc[y0:y1, x0:x1] += layer[y0:y1, x0:x1] * weight[..., None]
                    continue
                Y0, Y1 = max(y0 - pad, 0), min(y1 + pad, h)
                X0, X1 = max(x0 - pad, 0), min(x1 + pad, w)
                slab = np.zeros((Y1 - Y0, X1 - X0, 4), np.float32)
                np.multiply(layer[y0:y1, x0:x1], weight[..., None], out=slab[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0])
                acc[Y0:Y1, X0:X1] += cv2.filter2D(slab, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def layered_defocus(
    premultiplied: np.ndarray,
    coverage: np.ndarray,
    radius: np.ndarray,
    *,
    normalise: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Blur a layer whose blur radius varies per pixel, slab by slab.

    Parameters
    ----------
    premultiplied : ndarray of float32, HxWx3
        Layer colour times its coverage (alpha).
    coverage : ndarray of float32, HxW
        Layer alpha in [0, 1] (all ones for an opaque background surface).
    radius : ndarray of float32, HxW
        Blur radius (px) per pixel, from the circle of confusion at this pixel's depth.
    normalise : bool
        True for a surface that covers the whole image (the background): return
        ``sum blur(C w_j) / sum blur(w_j)``, which removes the dark seams where slabs meet.
        False for a partial layer in front (the instrument): return the blurred premultiplied
        colour and blurred alpha, to be composited with ``over``.

    Returns
    -------
    colour, alpha : ndarray of float32 (HxWx3, HxW)
        With ``normalise`` the colour is straight (not premultiplied) and alpha is the blurred
        coverage (about 1).

    Notes
    -----
    Each pixel's coverage is split between the two nearest radius levels (linear weights, so
    the blur changes continuously with depth); each level is blurred once with its disc, inside
    the bounding box of its pixels only.
    """
    h, w = coverage.shape
    valid = coverage > 0
    if not valid.any():
        return np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    r_max = float(radius[valid].max())
    levels = radius_levels(max(r_max, 0.0))
    layer = np.concatenate([premultiplied, coverage[..., None]], axis=2)
    if len(levels) == 1:
        return layer[..., :3].copy(), layer[..., 3].copy()
    # Each level is rendered at the coarsest scale (1, 2, 4, ... x reduced) where its disc is
    # still >= 3 px: wide discs remove every frequency the reduced image cannot hold, and the
    # work per level stays that of a small kernel.
    scales = [_level_scale(r, h, w) for r in levels]
    acc = None
    for scale in sorted(set(scales)):
        if scale == 1:
            layer_s, radius_s, valid_s = layer, radius, valid
        else:
            size = (max(1, round(w / scale)), max(1, round(h / scale)))
            layer_s = cv2.resize(layer, size, interpolation=cv2.INTER_AREA)
            radius_s = cv2.resize(radius, size, interpolation=cv2.INTER_AREA) * np.float32(size[0] / w)
            valid_s = layer_s[..., 3] > 0
        factor = radius_s.shape[1] / w
        acc_s = np.zeros(layer_s.shape, np.float32)
        js = [j for j, sc in enumerate(scales) if sc == scale]
        _accumulate_levels(acc_s, layer_s, radius_s, valid_s, levels * factor, js)
        if scale == 1:
            acc = acc_s if acc is None else acc + acc_s
        else:
            up = cv2.resize(acc_s, (w, h), interpolation=cv2.INTER_LINEAR)
            acc = up if acc is None else acc + up
    colour = acc[..., :3]
    alpha = acc[..., 3]
    if normalise:
        colour = colour / np.maximum(alpha, 1e-6)[..., None]
    return colour, alpha


def over(front_premultiplied: np.ndarray, front_alpha: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Porter-Duff ``over``: a premultiplied front layer over an opaque back image (float32)."""
    return front_premultiplied + (1.0 - np.clip(front_alpha, 0.0, 1.0))[..., None] * back


def defocus_scene(
    background: np.ndarray,
    background_depth: np.ndarray,
    focus: float,
    blur_px_per_mm: float,
    *,
    instrument: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The optical image (float32 HxWx3, linear) of a scene seen with the focus at ``focus``.

    Parameters
    ----------
    background : float32 HxWx3
        Radiance of the retina (or texture) surface, in [0, 1].
    background_depth : float32 HxW
        Its depth (mm).
    focus : float
        Depth (mm) of the plane in focus.
    blur_px_per_mm : float
        Circle-of-confusion radius (px) per mm of defocus (``Optics.blur_px_per_mm``).
    instrument : (premultiplied colour HxWx3, alpha HxW, depth HxW), optional
        A layer in front of the background: blurred with its own defocus and composited over.
    """
    radius = (np.abs(background_depth - np.float32(focus)) * np.float32(blur_px_per_mm)).astype(np.float32)
    ones = np.ones(background_depth.shape, np.float32)
    bg, _ = layered_defocus(background, ones, radius, normalise=True)
    if instrument is None:
        return bg
    colour, alpha, depth = instrument
    r_inst = (np.abs(depth - np.float32(focus)) * np.float32(blur_px_per_mm)).astype(np.float32)
    c_blur, a_blur = layered_defocus(colour, alpha, r_inst, normalise=False)
    return over(c_blur, a_blur, bg)
