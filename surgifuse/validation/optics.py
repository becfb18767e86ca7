"""Thin-lens defocus for the validation generator: a disc (pillbox) point-spread function whose
radius is proportional to the defocus, with optional third-order spherical aberration, and the blur
of one scene layer whose depth varies smoothly across it.

The blur is *gathered*: each output pixel takes the layer blurred with the disc of its own depth,
interpolated between precomputed radius levels (the "gather" class of post-process depth-of-field
methods in Barsky & Kosloff, "Algorithms for rendering depth of field effects in computer
graphics", 2008). It is exact for a layer of constant depth and close for a smooth one; occlusion
between layers is handled by the renderer (``render.py``), layer by layer.

Written independently of ``surgifuse.synth`` (which scatters slab by slab): validation data must not
share the training data's code, so that a flaw in one does not hide in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from surgifuse.errors import InputError

__all__ = ["Lens", "PreparedLayer", "defocus_layer", "disc_psf", "radius_levels"]

# Discs up to this radius (px) are convolved at full resolution; wider ones on an image reduced by
# a power of two, so that every convolution uses a kernel of at most 9x9 (OpenCV switches to a DFT,
# 5-10x slower at 1080p, beyond about 11x11).
DIRECT_RADIUS = 4.0
# Radius levels: 0.5 px apart up to DIRECT_RADIUS, then 15 % apart (a focus measure cannot tell a
# disc of radius 20 from one of 23; interpolating between the two is finer than that).
FINE_STEP = 0.5
COARSE_RATIO = 1.15


@dataclass(frozen=True)
class Lens:
    """Circle of confusion per focus step, and the aberration of the disc.

    Parameters
    ----------
    blur_per_step : float
        Radius (px) of the blur disc of a point one focus step away from the plane in focus. Depths
        and focus positions of the validation generator are in focus steps, so the radius of a
        point at depth ``z`` seen with the focus at ``f`` is ``|z - f| * blur_per_step`` (thin
        lens: the radius of the circle of confusion grows linearly with the defocus).
    spherical_aberration : float
        In [-0.5, 0.5]. Third-order spherical aberration moves light between the centre and the
        rim of the defocus disc, in opposite directions on the two sides of focus: the disc of a
        point behind the focus plane has its rim brighter by ``1 + a`` (its centre ``1 - a``), in
        front of it the reverse. 0: the ideal uniform disc.
    """

    blur_per_step: float
    spherical_aberration: float = 0.0

    def __post_init__(self):
        if not (self.blur_per_step >= 0 and math.isfinite(self.blur_per_step)):
            raise InputError(f"blur_per_step must be a finite number >= 0, got {self.blur_per_step}",
                             field="blur_per_step")
        if not (-0.5 <= self.spherical_aberration <= 0.5):
            raise InputError(f"spherical_aberration must be in [-0.5, 0.5], got {self.spherical_aberration}",
                             field="spherical_aberration")

    def signed_radius(self, depth: np.ndarray, focus: float) -> np.ndarray:
        """Blur radius (px) per pixel, positive behind the focus plane and negative in front."""
        return ((np.asarray(depth, np.float32) - np.float32(focus)) * np.float32(self.blur_per_step)).astype(np.float32)


@lru_cache(maxsize=512)
def _psf(radius_key: int, aberration_key: int) -> np.ndarray:
    radius = radius_key / 1000.0
    aberration = aberration_key / 1000.0
    r = abs(radius)
    half = math.ceil(r + 0.5)
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    rho = np.hypot(x, y)
    # A 1-px linear ramp at the rim approximates each pixel's covered fraction, so the disc's
    # energy grows continuously with the radius.
    kernel = np.clip(r + 0.5 - rho, 0.0, 1.0)
    if aberration:
        profile = 1.0 + math.copysign(aberration, radius) * (2.0 * (np.minimum(rho / r, 1.0)) ** 2 - 1.0)
        kernel *= np.clip(profile, 0.0, None)
    kernel /= kernel.sum()
    kernel = kernel.astype(np.float32)
    kernel.setflags(write=False)
    return kernel


def disc_psf(radius: float, *, spherical_aberration: float = 0.0) -> np.ndarray:
    """The defocus point-spread function of signed radius ``radius`` (px), normalised to sum 1.

    Parameters
    ----------
    radius : float
        Disc radius in px; the sign says on which side of the focus plane the point lies (it
        matters only with aberration). ``|radius| <= 0.5`` gives the 1x1 identity: such a disc
        stays inside one pixel.
    spherical_aberration : float, keyword-only
        See ``Lens``.

    Returns
    -------
    ndarray of float32, (2n+1)x(2n+1)

    Examples
    --------
    >>> k = disc_psf(3.0)
    >>> k.shape, round(float(k.sum()), 5)
    ((9, 9), 1.0)
    >>> disc_psf(0.4).shape
    (1, 1)
    """
    radius = float(radius)
    if not math.isfinite(radius):
        raise InputError(f"radius must be finite, got {radius}")
    if abs(radius) <= FINE_STEP:
        return np.ones((1, 1), np.float32)
    return _psf(round(radius * 1000), round(float(spherical_aberration) * 1000))


def radius_levels(max_radius: float) -> np.ndarray:
    """Non-negative radius levels (px) from 0 up to at least ``max_radius``: 0, 0.5, ..., 4, then
    15 % apart."""
    levels = [0.0]
    while levels[-1] < max_radius:
        r = levels[-1]
        levels.append(r + FINE_STEP if r < DIRECT_RADIUS else r * COARSE_RATIO)
    return np.asarray(levels, np.float64)


# Reduced copies are made by halving: pad the layer to a multiple of this (the coarsest factor).
_MAX_FACTOR = 64
# Levels are convolved tile by tile (px; a multiple of _MAX_FACTOR, so that tile corners fall on
# whole pixels of every reduced copy).
TILE = 64


class PreparedLayer:
    """A layer made ready to be defocused at many focus positions: its colour and coverage, plus
    copies reduced 2x, 4x, ... (computed once, on first use) on which wide discs are convolved.

    Parameters
    ----------
    premultiplied : ndarray of float32, HxWx3
        Colour times alpha (linear radiance).
    alpha : ndarray of float32, HxW, or None
        Coverage in [0, 1]; None for an opaque surface that covers the whole image (the
        background), which is then blurred without a coverage channel.
    spherical_aberration : float, keyword-only
        See ``Lens``.
    """

    def __init__(self, premultiplied: np.ndarray, alpha: np.ndarray | None, *, spherical_aberration: float = 0.0):
        h, w = premultiplied.shape[:2]
        if premultiplied.shape != (h, w, 3) or (alpha is not None and alpha.shape != (h, w)):
            raise InputError(f"layer shapes differ: colour {premultiplied.shape}, "
                             f"alpha {None if alpha is None else alpha.shape}")
        if alpha is None:
            self.rgba = np.ascontiguousarray(premultiplied, dtype=np.float32)
        else:
            self.rgba = np.concatenate([premultiplied, alpha[..., None]], axis=2).astype(np.float32, copy=False)
        self.has_alpha = alpha is not None
        self.aberration = float(spherical_aberration)
        self.shape = (h, w)
        self._reduced: dict[int, np.ndarray] = {}
        self._tile_coverage: np.ndarray | None = None

    def _at(self, factor: int) -> np.ndarray:
        """The layer reduced ``factor`` times (area average), from a copy padded by reflection to a
        multiple of ``_MAX_FACTOR`` so that every reduction maps whole pixel blocks."""
        if factor == 1:
            return self.rgba
        if factor not in self._reduced:
            if factor == 2:
                h, w = self.shape
                src = cv2.copyMakeBorder(self.rgba, 0, -h % _MAX_FACTOR, 0, -w % _MAX_FACTOR, cv2.BORDER_REFLECT)
            else:
                src = self._at(factor // 2)
            half = cv2.resize(src, (src.shape[1] // 2, src.shape[0] // 2), interpolation=cv2.INTER_AREA)
            self._reduced[factor] = half.reshape(half.shape[0], half.shape[1], -1)
        return self._reduced[factor]

    def _factor(self, radius: float) -> int:
        factor = 1
        while abs(radius) / factor > DIRECT_RADIUS and min(self.shape) >= 16 * factor * 2 and factor < _MAX_FACTOR:
            factor *= 2
        return factor

    def _covered_tiles(self, nty: int, ntx: int, reach: int) -> np.ndarray:
        """Tiles within ``reach`` tiles of one with some coverage (all tiles for an opaque layer)."""
        if not self.has_alpha:
            return np.ones((nty, ntx), bool)
        if self._tile_coverage is None:
            h, w = self.shape
            alpha = np.pad(self.rgba[..., 3], ((0, nty * TILE - h), (0, ntx * TILE - w)))
            self._tile_coverage = alpha.reshape(nty, TILE, ntx, TILE).max(axis=(1, 3)) > 0
        grown = cv2.dilate(self._tile_coverage.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
        return grown.astype(bool)

    def _blurred(self, radius: float, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The layer convolved with the disc of ``radius``, in the full-resolution box
        ``[y0:y1, x0:x1]`` (whose corners are multiples of ``TILE``): (y1-y0, x1-x0, C)."""
        if abs(radius) <= FINE_STEP:
            return self.rgba[y0:y1, x0:x1]
        factor = self._factor(radius)
        src = self._at(factor)
        hs, ws = src.shape[:2]
        reach = math.ceil(abs(radius) / factor) + 1
        # The reduced pixels whose bilinear footprint covers the box, plus the disc's reach.
        ry0, ry1 = max(0, y0 // factor - 1), min(hs, -(-y1 // factor) + 1)
        rx0, rx1 = max(0, x0 // factor - 1), min(ws, -(-x1 // factor) + 1)
        cy0, cy1 = max(0, ry0 - reach), min(hs, ry1 + reach)
        cx0, cx1 = max(0, rx0 - reach), min(ws, rx1 + reach)
        kernel = disc_psf(radius / factor, spherical_aberration=self.aberration)
        region = cv2.filter2D(src[cy0:cy1, cx0:cx1], -1, kernel, borderType=cv2.BORDER_REFLECT)
        if factor == 1:
            return region[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
        region = region[ry0 - cy0:ry1 - cy0, rx0 - cx0:rx1 - cx0]
        # cv2.resize maps enlarged pixel y to (y + 0.5) / factor - 0.5 of its source, the same
        # relation as between the layer and its reduced copy: offsets are whole pixels.
        up = cv2.resize(region, ((rx1 - rx0) * factor, (ry1 - ry0) * factor), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(up.shape[0], up.shape[1], -1)
        return up[y0 - ry0 * factor:y1 - ry0 * factor, x0 - rx0 * factor:x1 - rx0 * factor]

    def defocus(self, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Blur the layer, each pixel with the disc of its own signed ``radius`` (px, HxW).

        ``radius`` is given at every pixel, including around the layer's shape (a layer's depth is
        a smooth field over its whole box, so a blurred edge spreading beyond the shape takes the
        blur of the shape's nearby depth).

        Returns the blurred premultiplied colour (HxWx3) and coverage (HxW, None without one), to be
        composited ``over`` what lies behind: a defocused edge becomes partly transparent and
        spreads beyond the shape.

        Notes
        -----
        The radius axis is cut into levels (``radius_levels``, mirrored for negative radii when the
        aberration makes the two sides differ). Each pixel interpolates linearly between the layer
        convolved with the two levels around its radius. The image is cut into ``TILE`` x ``TILE``
        tiles; a level is convolved only over runs of tiles that hold a pixel needing it (a smooth
        surface needs a few levels per tile). Pixels with ``|radius| <= 0.5`` come out exactly.
        """
        h, w = self.shape
        if radius.shape != (h, w):
            raise InputError(f"radius is {radius.shape}, the layer {self.shape}")
        signed = bool(self.aberration)
        key = (radius if signed else np.abs(radius)).astype(np.float32, copy=False)
        positive = radius_levels(float(np.abs(key).max()))
        levels = np.concatenate([-positive[:0:-1], positive]) if signed else positive
        n = len(levels)
        if n == 1:
            out = self.rgba.copy()
            return out[..., :3], (out[..., 3] if self.has_alpha else None)
        # Pixel p lies between levels upper[p] - 1 and upper[p], at fraction t of the way: at
        # fractional level q = upper - 1 + t, and level j's weight is the hat max(0, 1 - |q - j|).
        upper = np.clip(np.searchsorted(levels, key, side="left"), 1, n - 1).astype(np.int32)
        lo_r = levels[upper - 1].astype(np.float32)
        t = np.clip((key - lo_r) / (levels[upper].astype(np.float32) - lo_r), 0.0, 1.0)
        q = (upper - 1).astype(np.float32) + t
        # Per tile, the lowest and highest level any of its pixels needs.
        nty, ntx = -(-h // TILE), -(-w // TILE)
        padded = np.pad(upper, ((0, nty * TILE - h), (0, ntx * TILE - w)), mode="edge")
        blocks = padded.reshape(nty, TILE, ntx, TILE)
        tile_lo = blocks.min(axis=(1, 3)) - 1
        tile_hi = blocks.max(axis=(1, 3))
        # Tiles farther than the widest disc from any covered pixel stay empty: skip them (most of
        # a slanted instrument's box).
        active = self._covered_tiles(nty, ntx, math.ceil(float(np.abs(key).max()) / TILE) + 1)
        out = np.zeros_like(self.rgba)
        for j in range(n):
            needed = (tile_lo <= j) & (tile_hi >= j) & active
            for ty in np.flatnonzero(needed.any(axis=1)):
                row = needed[ty]
                tx = 0
                while tx < ntx:
                    if not row[tx]:
                        tx += 1
                        continue
                    run = tx
                    while run < ntx and row[run]:
                        run += 1
                    y0, y1 = ty * TILE, min(h, (ty + 1) * TILE)
                    x0, x1 = tx * TILE, min(w, run * TILE)
                    tx = run
                    weight = q[y0:y1, x0:x1] - np.float32(j)
                    np.abs(weight, out=weight)
                    np.subtract(np.float32(1.0), weight, out=weight)
                    np.maximum(weight, np.float32(0.0), out=weight)
                    out[y0:y1, x0:x1] += self._blurred(float(levels[j]), y0, y1, x0, x1) * weight[..., None]
        return out[..., :3], (out[..., 3] if self.has_alpha else None)


def defocus_layer(premultiplied: np.ndarray, alpha: np.ndarray | None, radius: np.ndarray, *,
                  spherical_aberration: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Blur a layer, each pixel with the disc of its own (signed) radius: ``PreparedLayer`` for one
    focus position (see there for the parameters and the method)."""
    return PreparedLayer(premultiplied, alpha, spherical_aberration=spherical_aberration).defocus(radius)
