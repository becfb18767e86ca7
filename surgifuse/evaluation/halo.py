"""Halo measure: how much a fused image glows (is brighter than the truth) or darkens beside
high-contrast edges, in grey levels, against an all-in-focus truth.

Halos are the artefact focus-stacking users report most (focus-stack issue #8 and its duplicates):
beside a bright object sharp in one frame, the frames focused behind it carry its defocused light
over the dark background (a glow a few blur radii wide), and a blend or a multi-scale merge that
mixes those frames in, or rings, leaves a bright or dark fringe. PSNR over the whole image hides it
(the band is a few percent of the pixels); this measure looks only at the band. The test scene is
``surgifuse.validation.halo``; docs/evaluation.md, "Halo measure".
"""

from __future__ import annotations

import cv2
import numpy as np

from surgifuse.errors import InputError

from .metrics import _check_pair, _default_range, to_grey

__all__ = ["HALO_KEYS", "halo_measure", "high_contrast_edges", "mask_edges"]

# A high-contrast edge: a luma gradient of at least this fraction of the data range per pixel (32
# grey levels per px on 8 bits: an anti-aliased step of at least about 64 levels).
EDGE_CONTRAST = 0.125
#: The statistics ``halo_measure`` returns besides the pixel counts and the band's PSNR.
HALO_KEYS = tuple(f"{side}_{kind}_{stat}" for side in ("dark", "bright", "band")
                  for kind in ("overshoot", "undershoot") for stat in ("mean", "p99"))


def high_contrast_edges(truth: np.ndarray, *, contrast: float | None = None,
                        data_range: float | None = None) -> np.ndarray:
    """Pixels of ``truth`` on a high-contrast edge: luma gradient magnitude (3x3 Sobel divided by 8,
    i.e. grey levels per px) of at least ``contrast`` (default ``EDGE_CONTRAST`` x the data range).

    Returns
    -------
    ndarray of bool, HxW

    Examples
    --------
    >>> step = np.zeros((8, 8), np.uint8); step[:, 4:] = 200
    >>> np.flatnonzero(high_contrast_edges(step)[0]).tolist()
    [3, 4]
    """
    grey = to_grey(truth)
    peak = _default_range(truth.dtype, data_range)
    threshold = EDGE_CONTRAST * peak if contrast is None else float(contrast)
    if not threshold > 0:
        raise InputError(f"contrast must be > 0, got {contrast}")
    gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    return np.hypot(gx, gy) >= threshold


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """The boundary of an object mask (bool HxW): the pixels of the mask with a 4-neighbour outside
    it and the pixels outside with a 4-neighbour inside (a 2 px wide line along the outline)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be HxW, got shape {mask.shape}")
    m = mask.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.dilate(m, cross, borderType=cv2.BORDER_REPLICATE).astype(bool) & ~cv2.erode(
        m, cross, borderType=cv2.BORDER_REPLICATE).astype(bool)


def _stats(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(np.percentile(values, 99))


def halo_measure(fused: np.ndarray, truth: np.ndarray, edges: np.ndarray | None = None, *, band_px: int = 12,
                 contrast: float | None = None, border: int = 8, data_range: float | None = None) -> dict:
    """Overshoot (glow) and undershoot (darkening) of ``fused`` against ``truth`` beside edges.

    Parameters
    ----------
    fused, truth : ndarray
        Images of identical shape (HxW or HxWxC) and dtype (uint8, uint16 or float in [0, 1]).
    edges : ndarray of bool, HxW, optional
        The edge pixels to look beside. Default: ``high_contrast_edges(truth, contrast=contrast)``,
        found from the truth (never from the fused image, so every method is judged on the same
        pixels); ``mask_edges(mask)`` gives the outline of an object mask instead.
    band_px : int, keyword-only
        The band: pixels at a distance of 1 to ``band_px`` px (Euclidean) from the nearest edge
        pixel, edge pixels themselves excluded (there the truth is mid-level and a 1 px shift of the
        edge dominates; halos lie beside it). Default 12: the glow of a bright object defocused by
        four steps of 3 px.
    contrast : float, keyword-only
        Edge threshold (grey levels per px) when ``edges`` is None.
    border : int, keyword-only
        Pixels excluded on every side, as in ``metrics.psnr``. Default 8.
    data_range : float, keyword-only
        Peak value for the default edge threshold and the PSNR (default from the dtype).

    Returns
    -------
    dict
        ``{side}_{kind}_{stat}`` for side ``dark`` / ``bright`` / ``band``, kind ``overshoot`` =
        max(fused - truth, 0) / ``undershoot`` = max(truth - fused, 0) of the luma (BT.601), stat
        ``mean`` / ``p99`` (99th percentile) over the side's pixels, in the images' units (grey
        levels 0-255 for uint8); ``psnr_band`` (dB, all channels of the band's pixels; inf when
        equal); ``band_pixels``, ``dark_pixels``, ``bright_pixels``. A side without pixels gives NaN.

    Notes
    -----
    Each band pixel is on the dark or the bright side of its edge by comparing its truth luma with
    the middle of the truth's local range, ``(max + min) / 2`` over a square of half-side
    ``band_px + 2`` px (which reaches across the edge from anywhere in the band). The readings:
    ``dark_overshoot`` is the glow a defocused bright object leaves on a dark background;
    ``bright_undershoot`` the darkened rim of the bright object; overshoot on the bright side and
    undershoot on the dark side are ringing (an unsharp-mask or a pyramid merge's over- and
    undershoot, the "dark ring").

    Examples
    --------
    >>> truth = np.full((64, 64), 20, np.uint8); truth[:, :32] = 200
    >>> glow = truth.copy(); glow[:, 33:37] += 30
    >>> m = halo_measure(glow, truth)
    >>> m["dark_overshoot_p99"], m["bright_undershoot_p99"], m["band_overshoot_mean"] > 0
    (30.0, 0.0, True)
    """
    truth, fused = _check_pair(truth, fused)
    if isinstance(band_px, bool) or not isinstance(band_px, (int, np.integer)) or not 1 <= band_px <= 255:
        raise InputError(f"band_px must be an integer in 1..255, got {band_px!r}", field="band_px")
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise InputError(f"border must be a non-negative integer, got {border!r}", field="border")
    h, w = truth.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise InputError(f"images of shape {truth.shape} are too small for border={border}")
    if edges is None:
        edges = high_contrast_edges(truth, contrast=contrast, data_range=data_range)
    else:
        edges = np.asarray(edges)
        if edges.shape != (h, w) or edges.dtype != bool:
            raise InputError(f"edges must be a bool array of shape {(h, w)}, got {edges.dtype} {edges.shape}")

    # Distance (px) of every pixel to the nearest edge pixel (0 on an edge).
    distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    inner = np.zeros((h, w), bool)
    inner[border:h - border, border:w - border] = True
    band = inner & (distance >= 1.0) & (distance <= band_px)

    grey_truth = to_grey(truth)
    window = np.ones((2 * band_px + 5, 2 * band_px + 5), np.uint8)
    middle = 0.5 * (cv2.dilate(grey_truth, window, borderType=cv2.BORDER_REFLECT)
                    + cv2.erode(grey_truth, window, borderType=cv2.BORDER_REFLECT))
    dark = band & (grey_truth <= middle)
    bright = band & (grey_truth > middle)

    difference = to_grey(fused) - grey_truth
    over = np.maximum(difference, 0.0)
    under = np.maximum(-difference, 0.0)
    out: dict = {}
    for side, where in (("dark", dark), ("bright", bright), ("band", band)):
        for kind, values in (("overshoot", over), ("undershoot", under)):
            out[f"{side}_{kind}_mean"], out[f"{side}_{kind}_p99"] = _stats(values[where])

    peak = _default_range(truth.dtype, data_range)
    error = fused[band].astype(np.float64) - truth[band].astype(np.float64)
    mse = float(np.mean(error * error)) if error.size else float("nan")
    out["psnr_band"] = float("inf") if mse == 0.0 else float(10.0 * np.log10(peak * peak / mse))
    out["band_pixels"], out["dark_pixels"], out["bright_pixels"] = int(band.sum()), int(dark.sum()), int(bright.sum())
    return out
