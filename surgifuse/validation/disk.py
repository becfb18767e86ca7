"""Writing validation stacks in the folder layout ``surgifuse eval`` reads: ``frame_0.png ...``,
``gt.png``, ``depth.npy``, ``instrument_mask.png`` (here: every foreground object) and
``meta.json``; one folder per stack, each written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np

from surgifuse.errors import InputError
from surgifuse.progress import track

from .stack import VALIDATION_SEED, ValidationStack, generate_validation_stack

__all__ = ["write_validation_set", "write_validation_stack"]


def _png(path: Path, image: np.ndarray) -> None:
    data = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), data):
        raise OSError(f"could not write {path}")


def write_validation_stack(stack: ValidationStack, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write one stack to ``folder`` (created; an existing one only with ``overwrite``).

    Returns the folder. The foreground mask goes to ``instrument_mask.png`` (the name the
    evaluation knows), 255 where any foreground object covers at least half the pixel.
    """
    if not isinstance(stack, ValidationStack):
        raise InputError(f"stack must be a ValidationStack, got {type(stack).__name__}")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists (pass overwrite=True to replace it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        names = [f"frame_{i}.png" for i in range(stack.k)]
        for name, frame in zip(names, stack.frames):
            _png(tmp / name, frame)
        _png(tmp / "gt.png", stack.gt)
        np.save(tmp / "depth.npy", stack.depth.astype(np.float32))
        files = {"frames": names, "gt": "gt.png", "depth": "depth.npy", "instrument_mask": None}
        if stack.foreground_mask is not None:
            _png(tmp / "instrument_mask.png", stack.foreground_mask.astype(np.uint8) * 255)
            files["instrument_mask"] = "instrument_mask.png"
        meta = {**stack.meta, "focus_positions": list(stack.focus_positions), "files": files}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            trash = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(trash)
            tmp.rename(folder)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_validation_set(out_dir: str | os.PathLike, *, count: int, seed: int = VALIDATION_SEED,
                         overwrite: bool = False, progress: bool = False, **options) -> list[Path]:
    """Write ``count`` stacks to ``out_dir/stack_0000 ...``, stack ``i`` from seed ``seed + i``.

    ``options`` go to ``generate_validation_stack``; every option is checked on the first stack,
    before anything is written. Existing stacks are refused unless ``overwrite``.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(f"count must be an integer >= 1, got {count!r}", field="count")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder")
    targets = [out_dir / f"stack_{i:04d}" for i in range(int(count))]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists ({len(existing)} of {len(targets)}); pass overwrite")
    written = []
    for i in track(range(int(count)), desc="validation set", unit="stack", enabled=progress):
        stack = generate_validation_stack(int(seed) + i, **options)
        written.append(write_validation_stack(stack, targets[i], overwrite=overwrite))
    return written
