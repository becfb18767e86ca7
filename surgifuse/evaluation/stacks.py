"""Finding and loading the focal stacks an evaluation scores: synthetic stack folders (frames plus
``gt.png``, ``depth.npy``, ``meta.json``) and plain folders of real images without truth.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from surgifuse.errors import InputError

__all__ = ["EvalStack", "find_stacks", "load_eval_stack"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff")
# Files of a synthetic stack folder that are not frames.
_TRUTH_NAMES = ("gt", "depth", "instrument_mask")


@dataclass
class EvalStack:
    """One focal stack as the evaluation sees it.

    Attributes
    ----------
    name : str
        The folder's name.
    path : str
        The folder.
    frames : list of ndarray
        K frames, RGB (or grey), one shape and dtype.
    gt : ndarray or None
        All-in-focus truth, the shape and dtype of a frame; None for real stacks.
    depth : ndarray of float32 (HxW) or None
        True depth per pixel, in the units of ``focus_positions``.
    focus_positions : list of float or None
        One per frame.
    meta : dict
        ``meta.json`` as read (empty when absent).
    """

    name: str
    path: str
    frames: list[np.ndarray]
    gt: np.ndarray | None = None
    depth: np.ndarray | None = None
    focus_positions: list[float] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def has_truth(self) -> bool:
        return self.gt is not None

    @property
    def has_oracle(self) -> bool:
        return self.depth is not None and self.focus_positions is not None


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in _IMAGE_SUFFIXES


def _frame_files(folder: Path) -> list[Path]:
    from ..imageio import natural_sort_key

    images = [p for p in folder.iterdir() if _is_image(p)]
    frames = [p for p in images if p.stem.startswith("frame_")]
    if not frames:  # a plain folder of real images: every image but a truth image is a frame
        frames = [p for p in images if p.stem not in _TRUTH_NAMES]
    return sorted(frames, key=lambda p: natural_sort_key(p.name))


def find_stacks(data_dir: str | os.PathLike) -> list[Path]:
    """The stack folders under ``data_dir``: itself if it holds images, else its sub-folders that do.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` when no stack is found.
    """
    from ..imageio import natural_sort_key

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if _frame_files(root):
        return [root]
    stacks = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _frame_files(d)]
    if not stacks:
        raise InputError(f"{root}: no focal stack found (neither images in it nor sub-folders of images)")
    return sorted(stacks, key=lambda p: natural_sort_key(p.name))


def load_eval_stack(folder: str | os.PathLike) -> EvalStack:
    """Load one stack folder: frames in natural order, plus truth, depth and focus positions if present.

    Synthetic folders (with ``meta.json`` or ``gt.*``) are read by ``surgifuse.synth.load_stack``;
    plain folders of real images by ``surgifuse.imageio.read_stack``, which sniffs the content
    (JPEG bytes named ``.png`` load). Frames are RGB. Raises ``ValueError`` naming the file for
    unreadable or inconsistent content.
    """
    folder = Path(folder)
    files = _frame_files(folder)
    if not files:
        raise InputError(f"{folder}: no frame images")
    synthetic = (folder / "meta.json").is_file() or any((folder / f"gt{s}").is_file() for s in _IMAGE_SUFFIXES)
    if synthetic:
        frames, gt, depth, positions, meta = _load_synthetic(folder)
    else:
        from ..imageio import read_stack

        frames, _ = read_stack(files)
        gt = depth = positions = None
        meta = {}
    frames = list(frames)
    if gt is not None and (gt.shape != frames[0].shape or gt.dtype != frames[0].dtype):
        raise InputError(f"{folder}: truth is {gt.shape} {gt.dtype}, frames are {frames[0].shape} {frames[0].dtype}")
    if depth is not None and depth.shape != frames[0].shape[:2]:
        raise InputError(f"{folder / 'depth.npy'}: depth is {depth.shape}, frames are {frames[0].shape[:2]}")
    if positions is not None and len(positions) != len(frames):
        raise InputError(f"{folder / 'meta.json'}: {len(positions)} focus_positions for {len(frames)} frames")
    return EvalStack(folder.name, str(folder), frames, gt, depth, positions, meta)


def _load_synthetic(folder: Path):
    try:
        from ..synth import load_stack
    except ImportError:
        load_stack = None
    if load_stack is not None:
        s = load_stack(folder)
        return s.frames, s.gt, s.depth, s.focus_positions, dict(s.meta)
    # Without the synth package: the same on-disk format, read directly.
    from ..imageio import read_image, read_stack

    frames, _ = read_stack(_frame_files(folder))
    meta: dict = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from exc
    gt_path = next((folder / f"gt{s}" for s in _IMAGE_SUFFIXES if (folder / f"gt{s}").is_file()), None)
    gt = read_image(gt_path) if gt_path is not None else None
    depth = np.load(folder / "depth.npy").astype(np.float32, copy=False) if (folder / "depth.npy").is_file() else None
    positions = meta.get("focus_positions")
    positions = None if positions is None else [float(p) for p in positions]
    return frames, gt, depth, positions, meta


def resize_stack(stack: EvalStack, max_side: int) -> EvalStack:
    """A copy of ``stack`` shrunk (area interpolation; depth by nearest) so its longer side is at most
    ``max_side``; the stack itself if already small enough. For quick looks at 20-megapixel real data."""
    import cv2

    h, w = stack.frames[0].shape[:2]
    if max_side < 16:
        raise InputError(f"max_side must be >= 16, got {max_side}")
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return stack
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def shrink(image):
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    depth = None if stack.depth is None else cv2.resize(stack.depth, size, interpolation=cv2.INTER_NEAREST)
    gt = None if stack.gt is None else shrink(stack.gt)
    return EvalStack(stack.name, stack.path, [shrink(f) for f in stack.frames], gt, depth,
                     stack.focus_positions, stack.meta)
