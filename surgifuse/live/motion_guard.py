"""Motion guard: where the scene moved (an instrument), the newest frame wins; no ghost at old positions.

A rolling focal stack mixes frames up to K-1 frame times old. Where an instrument moved in that time,
fusion may take an old frame there and show the instrument where it no longer is. Defocus changes
fine detail, not coarse intensity; motion changes both. So each older frame is compared with the
newest after reducing both to a coarse colour image (area down-sampling, then a small Gaussian; the
largest of the three channel differences, because a grey steel instrument over an orange retina
differs little in grey but much in colour): where the difference exceeds a threshold calibrated on
the image itself (noise and defocus residue: a multiple of the median difference, never below an
absolute floor; the floor was set on synthetic sweeps, see docs/live-pipeline.md) the older frame is deemed stale,
and wherever the fused image drew on a stale frame the newest frame replaces it (mask dilated a
little, feathered edges). All of it runs on the reduced image; only the blend touches full size,
and only inside the bounding box of the override.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from surgifuse.errors import InputError


@dataclass
class GuardResult:
    """``image``/``depth_index``: guarded outputs (new arrays only where something changed).
    ``fraction``: share of the image overridden. ``mask``: coarse override mask (uint8 0/1)."""

    image: np.ndarray
    depth_index: np.ndarray
    fraction: float
    mask: np.ndarray


class MotionGuard:
    """Override fused pixels drawn from frames that disagree with the newest beyond defocus.

    Parameters
    ----------
    threshold : float
        Absolute floor of the coarse difference (0..255 levels, largest channel) counted as motion.
    noise_factor : float
        The per-frame threshold is ``max(threshold, noise_factor * median |difference|)``: the
        median difference measures noise, exposure flicker and defocus residue of that pair.
    coarse_width : int
        Width of the reduced image the comparison runs on.
    dilate : int
        Radius (coarse pixels) the stale region is grown by: the instrument's blurred rim.
    min_cells : int
        Stale regions smaller than this many coarse pixels are ignored before dilation: defocus
        residue at vessel edges gives scattered single cells, a moving instrument a connected blob.
    """

    def __init__(self, *, threshold: float = 16.0, noise_factor: float = 8.0, coarse_width: int = 160,
                 dilate: int = 2, min_cells: int = 4) -> None:
        if not threshold >= 0:
            raise InputError(f"threshold must be >= 0, got {threshold!r}")
        if not noise_factor >= 0:
            raise InputError(f"noise_factor must be >= 0, got {noise_factor!r}")
        if not isinstance(coarse_width, int) or coarse_width < 8:
            raise InputError(f"coarse_width must be an int >= 8, got {coarse_width!r}")
        if not isinstance(dilate, int) or dilate < 0:
            raise InputError(f"dilate must be an int >= 0, got {dilate!r}")
        if not isinstance(min_cells, int) or min_cells < 1:
            raise InputError(f"min_cells must be an int >= 1, got {min_cells!r}")
        self.min_cells = min_cells
        self.threshold, self.noise_factor = float(threshold), float(noise_factor)
        self.coarse_width, self.dilate = coarse_width, dilate
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)) if dilate else None
        # id(frame) -> (frame, coarse): a frame is reduced once while it stays in the stack.
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def coarse(self, frame: np.ndarray) -> np.ndarray:
        """The reduced image (float32, 0..255, grey or colour) of ``frame``, cached while the array lives."""
        hit = self._cache.get(id(frame))
        if hit is not None and hit[0] is frame:
            return hit[1]
        h, w = frame.shape[:2]
        cw = min(w, self.coarse_width)
        ch = max(1, round(h * cw / w))
        small = frame
        # Area halving first: OpenCV's fastest reduction (1080p RGB to 160 wide: 1.4 ms instead of 3.0).
        while small.shape[1] >= 4 * cw and small.shape[0] >= 4 * ch:
            small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
        small = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_AREA).astype(np.float32)
        if frame.dtype == np.uint16:
            small *= 255.0 / 65535.0
        small = cv2.GaussianBlur(small, (0, 0), 1.0)
        self._cache[id(frame)] = (frame, small)
        return small

    def stale_masks(self, frames: Sequence[np.ndarray], newest: int) -> list[np.ndarray | None]:
        """Per frame, the coarse mask (bool) where it disagrees with frame ``newest``; None for the newest."""
        ref = self.coarse(frames[newest])
        masks: list[np.ndarray | None] = []
        for i, frame in enumerate(frames):
            if i == newest:
                masks.append(None)
                continue
            diff = cv2.absdiff(self.coarse(frame), ref)
            if diff.ndim == 3:  # largest channel difference (cv2: numpy's max over a 3-long axis is slow)
                channels = cv2.split(diff)
                diff = channels[0]
                for c in channels[1:]:
                    diff = cv2.max(diff, c)
            limit = max(self.threshold, self.noise_factor * float(np.median(diff)))
            masks.append(diff > limit)
        return masks

    def apply(self, frames: Sequence[np.ndarray], newest: int, image: np.ndarray,
              depth_index: np.ndarray, *, in_place: bool = False) -> GuardResult:
        """Guard one fused result.

        Parameters
        ----------
        frames : sequence of ndarray
            The (aligned) stack the result was fused from, in the engine's order.
        newest : int
            Index in ``frames`` of the newest frame.
        image : ndarray
            The fused image (same shape as a frame).
        depth_index : ndarray, float32 HxW
            The engine's depth index (which frame each pixel came from).
        in_place : bool
            Write the overrides into ``image`` and ``depth_index`` instead of copies (the live
            processor owns the engine's fresh outputs: two full-size copies cost 8 ms at 1080p).
        """
        if not 0 <= newest < len(frames):
            raise InputError(f"newest must index the {len(frames)} frames, got {newest}")
        if image.shape != frames[newest].shape:
            raise InputError(f"fused image shape {image.shape} differs from frame shape {frames[newest].shape}")
        if depth_index.shape != image.shape[:2]:
            raise InputError(f"depth_index shape {depth_index.shape} differs from image size {image.shape[:2]}")
        mask = self.override_mask(frames, newest, depth_index)
        fraction = float(mask.mean())
        if fraction == 0.0:
            return GuardResult(image, depth_index, 0.0, mask)
        return GuardResult(*self._blend(frames[newest], newest, image, depth_index, mask, in_place), fraction, mask)

    def relabel(self, frames: Sequence[np.ndarray], newest: int, decided) -> tuple[float, np.ndarray]:
        """Guard a decision before its frames are blended (``surgifuse.scaled_decision.StackDecision``,
        changed in place): where the fused image would draw on a stale frame, the label and the depth
        index become ``newest``. The engine's blend window then feathers the override, and nothing
        at full resolution is touched twice (at 1080p the separate blend of ``apply`` cost about
        4 ms). Returns the share of the image overridden and the coarse override mask."""
        if not 0 <= newest < len(frames):
            raise InputError(f"newest must index the {len(frames)} frames, got {newest}")
        mask = self.override_mask(frames, newest, decided.depth_index)
        fraction = float(mask.mean())
        if fraction:
            lh, lw = decided.labels.shape
            grid = cv2.resize(mask, (lw, lh), interpolation=cv2.INTER_NEAREST).astype(bool)
            decided.labels[grid] = newest
            decided.depth_index[grid] = np.float32(newest)
        return fraction, mask

    def override_mask(self, frames: Sequence[np.ndarray], newest: int, depth_index: np.ndarray) -> np.ndarray:
        """The coarse mask (uint8 0/1) of where the fused image draws on a frame that disagrees with
        the newest beyond defocus: stale regions of each frame where ``depth_index`` (which frame each
        pixel came from, at any scale) uses it, small specks dropped, grown by ``dilate``."""
        self._forget_except(frames)
        ref = self.coarse(frames[newest])
        ch, cw = ref.shape[:2]
        used = cv2.resize(depth_index.astype(np.float32, copy=False), (cw, ch), interpolation=cv2.INTER_AREA)
        override = np.zeros((ch, cw), dtype=bool)
        for i, stale in enumerate(self.stale_masks(frames, newest)):
            if stale is None or not stale.any():
                continue
            # |mean index - i| < 1: frame i contributes to this block (sub-frame blending included)
            override |= stale & (np.abs(used - i) < 1.0)
        mask = override.astype(np.uint8)
        if self.min_cells > 1 and mask.any():
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            keep = np.zeros(n, np.uint8)
            keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= self.min_cells
            mask = keep[labels]
        if self._kernel is not None and mask.any():
            mask = cv2.dilate(mask, self._kernel)
        return mask

    def _blend(self, newest_frame, newest, image, depth_index, mask, in_place):
        h, w = image.shape[:2]
        ch, cw = mask.shape
        alpha_coarse = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
        alpha_coarse = np.minimum(alpha_coarse * 1.5, 1.0)  # solid inside the mask, feathered only at its rim
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        # Blend each region inside its own box (one cell of margin for the feather): scattered small
        # regions would otherwise make one box the size of the frame. Every box reads the original
        # image (all are computed before any is written), so overlapping boxes give the same result
        # in place or not.
        updates = []
        for x, y, bw, bh, _area in stats[1:]:
            cy0, cy1 = max(0, y - 1), min(ch, y + bh + 1)
            cx0, cx1 = max(0, x - 1), min(cw, x + bw + 1)
            y0, y1 = cy0 * h // ch, cy1 * h // ch
            x0, x1 = cx0 * w // cw, cx1 * w // cw
            alpha = cv2.resize(np.ascontiguousarray(alpha_coarse[cy0:cy1, cx0:cx1]), (x1 - x0, y1 - y0),
                               interpolation=cv2.INTER_LINEAR)
            src_new = np.ascontiguousarray(newest_frame[y0:y1, x0:x1])
            src_old = np.ascontiguousarray(image[y0:y1, x0:x1])
            d = depth_index[y0:y1, x0:x1]
            updates.append((y0, y1, x0, x1, cv2.blendLinear(src_new, src_old, alpha, 1.0 - alpha),
                            d + alpha * (np.float32(newest) - d)))
        out = image if in_place else image.copy()
        depth = depth_index if in_place else depth_index.copy()
        for y0, y1, x0, x1, pixels, depths in updates:
            out[y0:y1, x0:x1] = pixels
            depth[y0:y1, x0:x1] = depths
        return out, depth

    def _forget_except(self, frames: Sequence[np.ndarray]) -> None:
        live = {id(f) for f in frames}
        for key in [k for k in self._cache if k not in live]:
            del self._cache[key]
