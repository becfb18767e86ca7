"""Training data for the learned models: synthetic focal stacks (``surgifuse.synth``) as random crops.

Stacks come from a folder written by ``surgifuse synth`` or are generated on the fly from a seed
range; either way they are held in memory (a few hundred small stacks) and sampled as random
crops with random flips and quarter turns. Seed ranges (keep them disjoint): training 20000+,
validation 30000+, test 40000-40019.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from surgifuse.errors import InputError

from .config import DataConfig
from .losses import canny_edges


@dataclass
class StackArrays:
    """One stack in memory: frames (K, H, W, 3) uint8 and the all-in-focus truth (H, W, 3) uint8."""

    frames: np.ndarray
    gt: np.ndarray


def _as_arrays(stack) -> StackArrays:
    frames = np.stack([np.asarray(f) for f in stack.frames])
    gt = np.asarray(stack.gt)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"training stacks must be K x H x W x 3 uint8, got {frames.shape} {frames.dtype}")
    if gt.shape != frames.shape[1:]:
        raise InputError(f"truth {gt.shape} does not match frames {frames.shape[1:]}")
    return StackArrays(frames, gt)


def _aligned(stack: StackArrays) -> StackArrays:
    from surgifuse.align import align_stack

    frames, _ = align_stack(list(stack.frames), reference="middle")
    return StackArrays(np.stack(frames), stack.gt)


def load_stacks(config: DataConfig) -> list[StackArrays]:
    """The stacks ``config`` names: every stack folder under ``data_dir`` (sorted, at most ``count``),
    or ``count`` stacks generated from seeds ``seed``, ``seed + 1``, ...; aligned to the middle
    frame when ``config.align``."""
    stacks = _load_stacks(config)
    return [_aligned(s) for s in stacks] if config.align else stacks


def _load_stacks(config: DataConfig) -> list[StackArrays]:
    from surgifuse import synth

    if config.data_dir is not None:
        root = Path(config.data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"training data folder not found: {root}")
        dirs = sorted(p.parent for p in root.glob("*/meta.json"))
        if (root / "meta.json").is_file():
            dirs = [root]
        if not dirs:
            raise FileNotFoundError(f"no stacks (folders with meta.json) under {root}; write some with `surgifuse synth`")
        return [_as_arrays(synth.load_stack(d)) for d in dirs[: config.count]]
    stacks = []
    for i in range(config.count):
        seed = config.seed + i
        options = {**(randomized_synth_options(seed) if config.randomize else {}), **config.synth_options}
        stacks.append(_as_arrays(synth.generate_stack(seed, height=config.synth_height, width=config.synth_width,
                                                      k=config.k, **options)))
    return stacks


def randomized_synth_options(seed: int) -> dict:
    """``generate_stack`` options drawn for one training seed (domain randomisation): the numerical
    aperture (how fast defocus grows: 0.04 to 0.25, log-uniform), sensor noise (none in one stack
    of five; else 500 to 20,000 photons at white and 0.5 to 3 DN read noise), JPEG (none in three
    of ten; else quality 60 to 100), focus breathing (half the stacks, up to 1.5 %) and jitter
    (half, up to 2 px), scene and instrument at random. Deterministic per seed; a stream of its
    own, so the scene of a seed does not depend on these draws."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    noise = bool(rng.random() >= 0.2)
    return {
        "scene": "mixed",
        "instrument": None,
        "numerical_aperture": float(np.exp(rng.uniform(np.log(0.04), np.log(0.25)))),
        "noise": noise,
        "photons_at_white": float(np.exp(rng.uniform(np.log(500.0), np.log(20000.0)))),
        "read_noise_dn": float(rng.uniform(0.5, 3.0)),
        "jpeg_quality": None if rng.random() < 0.3 else int(rng.integers(60, 101)),
        "breathing": float(rng.uniform(0.0, 0.015)) if rng.random() < 0.5 else 0.0,
        "motion": float(rng.uniform(0.0, 2.0)) if rng.random() < 0.5 else 0.0,
    }


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    # (..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, -3))).float().div_(255.0)


class CropSampler:
    """Random training crops from in-memory stacks, reproducible from ``seed``.

    ``batch(n)`` returns a dict of tensors: ``frames`` (n, K, 3, c, c), ``gt`` (n, 3, c, c) and
    ``canny`` (n, 1, c, c) (the truth's Canny edges, paper 000's edge loss). ``images(n)``
    returns single images (n, 3, c, c) for the autoencoder: stack frames and truths alike.
    """

    def __init__(self, stacks: list[StackArrays], *, crop: int, seed: int, canny_high: int = 100):
        if not stacks:
            raise InputError("CropSampler needs at least one stack")
        k = stacks[0].frames.shape[0]
        for s in stacks:
            if s.frames.shape[0] != k:
                raise InputError(f"all stacks must have the same K, got {k} and {s.frames.shape[0]}")
            if min(s.gt.shape[:2]) < crop:
                raise InputError(f"crop {crop} is larger than a stack of size {s.gt.shape[:2]}")
        self.stacks = stacks
        self.crop = int(crop)
        self.canny_high = int(canny_high)
        self.rng = np.random.default_rng(seed)

    def _crop(self, s: StackArrays):
        h, w = s.gt.shape[:2]
        y = int(self.rng.integers(0, h - self.crop + 1))
        x = int(self.rng.integers(0, w - self.crop + 1))
        frames = s.frames[:, y : y + self.crop, x : x + self.crop]
        gt = s.gt[y : y + self.crop, x : x + self.crop]
        turns = int(self.rng.integers(0, 4))
        flip = bool(self.rng.integers(0, 2))
        frames = np.rot90(frames, turns, axes=(1, 2))
        gt = np.rot90(gt, turns, axes=(0, 1))
        if flip:
            frames, gt = frames[:, :, ::-1], gt[:, ::-1]
        return np.ascontiguousarray(frames), np.ascontiguousarray(gt)

    def batch(self, n: int) -> dict[str, torch.Tensor]:
        frames, gts, edges = [], [], []
        for _ in range(n):
            f, g = self._crop(self.stacks[int(self.rng.integers(0, len(self.stacks)))])
            frames.append(f)
            gts.append(g)
            edges.append(canny_edges(g, low=0, high=self.canny_high))
        return {
            "frames": _to_tensor(np.stack(frames)),
            "gt": _to_tensor(np.stack(gts)),
            "canny": torch.from_numpy(np.stack(edges))[:, None],
        }

    def images(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            f, g = self._crop(self.stacks[int(self.rng.integers(0, len(self.stacks)))])
            i = int(self.rng.integers(0, f.shape[0] + 1))
            out.append(g if i == f.shape[0] else f[i])
        return _to_tensor(np.stack(out))
