"""Presenting evaluation results: a text table, a JSON file and a PNG figure grid per engine
(inputs, fused, truth, error map).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .stacks import EvalStack

__all__ = ["format_table", "write_json", "to_jsonable", "write_figure"]


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def format_table(results: dict) -> str:
    """The aggregates of ``evaluate`` as a fixed-width text table, one row per engine and reference.

    Columns: stacks scored, mean PSNR (dB) and SSIM on stacks with truth, mean gap to the oracle
    (oracle minus engine: dB and SSIM below the ceiling; negative beats it), mean Q^AB/F and NMI,
    and mean seconds per stack (engines only). Stacks that were skipped, not scored, are named
    below the table with the reason.
    """
    header = ("method", "stacks", "PSNR", "SSIM", "gap dB", "gap SSIM", "Q^AB/F", "NMI", "s/stack")
    rows = [header]
    for name, agg in results["aggregates"].items():
        rows.append((
            name,
            str(agg["n_stacks"]),
            _fmt(agg.get("psnr"), ".2f"),
            _fmt(agg.get("ssim"), ".4f"),
            _fmt(agg.get("gap_to_oracle_psnr"), "+.2f"),
            _fmt(agg.get("gap_to_oracle_ssim"), "+.4f"),
            _fmt(agg.get("qabf"), ".4f"),
            _fmt(agg.get("nmi"), ".4f"),
            _fmt(agg.get("seconds"), ".3f"),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    skipped = results.get("skipped") or []
    if skipped:
        lines.append(f"skipped {len(skipped)} of {len(skipped) + len(results['stacks'])} stacks, not scored:")
        lines.extend(f"  {s['name']}: {s['reason']}" for s in skipped)
    return "\n".join(lines)


def to_jsonable(value):
    """Plain JSON types: NumPy scalars become Python numbers; non-finite floats become None
    (an infinite PSNR, identical images, is written as null)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write_json(path: str | os.PathLike, results: dict) -> None:
    """Write ``results`` as strict JSON (indent 2), atomically."""
    from ..imageio import write_bytes_atomic

    text = json.dumps(to_jsonable(results), indent=2, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode())


def _thumb(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if image.dtype == np.uint16:
        image = (image / 257).astype(np.uint8)
    return image


def write_figure(path: str | os.PathLike, stack: EvalStack, name: str, fused: np.ndarray, *,
                 scores: dict | None = None, thumb_side: int = 256) -> None:
    """A PNG grid for one method on one stack: the K inputs on top; fused, truth and the error map
    ``|fused - truth|`` (mean over channels, 0-32 grey levels on the inferno scale) below.

    Stacks without truth show the fused image alone on the second row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(stack.frames)
    ncols = max(k, 3)
    fig, axes = plt.subplots(2, ncols, figsize=(2.2 * ncols, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    cmap = "gray" if stack.frames[0].ndim == 2 else None
    for i, frame in enumerate(stack.frames):
        axes[0, i].imshow(_thumb(frame, thumb_side), cmap=cmap)
        label = f"frame {i}"
        if stack.focus_positions is not None:
            label += f" @ {stack.focus_positions[i]:.3g}"
        axes[0, i].set_title(label, fontsize=8)
    title = name
    if scores:
        parts = [f"{scores['psnr']:.2f} dB" if "psnr" in scores and math.isfinite(scores["psnr"]) else None,
                 f"SSIM {scores['ssim']:.3f}" if "ssim" in scores else None,
                 f"Q {scores['qabf']:.3f}" if "qabf" in scores else None]
        title += "\n" + ", ".join(p for p in parts if p)
    axes[1, 0].imshow(_thumb(fused, thumb_side), cmap=cmap)
    axes[1, 0].set_title(title, fontsize=8)
    if stack.gt is not None:
        axes[1, 1].imshow(_thumb(stack.gt, thumb_side), cmap=cmap)
        axes[1, 1].set_title("truth", fontsize=8)
        err = np.abs(fused.astype(np.float32) - stack.gt.astype(np.float32))
        if err.ndim == 3:
            err = err.mean(axis=2)
        if stack.gt.dtype == np.uint16:
            err /= 257.0
        elif stack.gt.dtype != np.uint8:
            err *= 255.0
        im = axes[1, 2].imshow(_thumb(err, thumb_side), cmap="inferno", vmin=0, vmax=32)
        axes[1, 2].set_title("|fused - truth|", fontsize=8)
        fig.colorbar(im, ax=axes[1, 2], fraction=0.046, pad=0.04)
    fig.suptitle(f"{stack.name}: {name}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
