"""Halos beside high-contrast edges, engine by engine, on the generated halo scene (a polished
instrument sharp in the first frame over a near-black background sharp in the last, with point
speculars; surgifuse.validation.halo), measured against its truth with
surgifuse.evaluation.halo.halo_measure.

    .venv/bin/python scripts/halo_report.py [--seeds 1-4] [--size 256] [--k 5] [--focus-stack PATH]

Rows: our engines (classical with its defaults, with blend_radius 0 and 7; msmfm; fn; autoencoder),
focus-stack (PetteriAimonen/focus-stack, built outside this repository; its alignment cannot be
turned off: run with --align-keep-size so that the output keeps the frame size, scored as it comes
and after registering it onto the truth by a translation, OpenCV's ECC), the depth oracle (the
true depth picks the frame) and the two end frames. Columns: glow (overshoot on the dark side of
the edges) and darkening (undershoot on the bright side), mean and 99th percentile in grey levels,
overshoot on the bright side and undershoot on the dark side (99th percentiles: ringing, or a glow
or noise a picked frame carries), PSNR in the band and over the image; each the mean over the
seeds. One table per noise setting and edge set: every high-contrast edge of the truth (instrument
and speculars), or the instrument's outline only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.engines import create_engine  # noqa: E402
from surgifuse.evaluation.halo import halo_measure, mask_edges  # noqa: E402
from surgifuse.evaluation.metrics import psnr  # noqa: E402
from surgifuse.evaluation.references import depth_oracle  # noqa: E402
from surgifuse.validation.halo import halo_scene_stack  # noqa: E402

FOCUS_STACK = Path("/tmp/fs/build/focus-stack")
#: (label, engine name, options)
ENGINES = (
    ("classical (defaults: filter 5, blend 4)", "classical", {}),
    ("classical, blend_radius 0 (hard seams)", "classical", {"blend_radius": 0}),
    ("classical, blend_radius 7 (the widest)", "classical", {"blend_radius": 7}),
    ("msmfm", "msmfm", {}),
    ("fn", "fn", {}),
    ("autoencoder", "autoencoder", {}),
)
COLUMNS = (("glow mean", "dark_overshoot_mean"), ("glow p99", "dark_overshoot_p99"),
           ("darkening mean", "bright_undershoot_mean"), ("darkening p99", "bright_undershoot_p99"),
           ("bright-side over p99", "bright_overshoot_p99"), ("dark-side under p99", "dark_undershoot_p99"),
           ("PSNR band", "psnr_band"))


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def run_focus_stack(binary: Path, frames: list[np.ndarray]) -> np.ndarray:
    """focus-stack on the frames written as PNG; its output (RGB, the frame size)."""
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, frame in enumerate(frames):
            names.append(str(Path(tmp) / f"frame_{i}.png"))
            cv2.imwrite(names[-1], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        out = Path(tmp) / "fused.png"
        done = subprocess.run([str(binary), f"--output={out}", "--align-keep-size", "--no-opencl", "--threads=2",
                               *names], capture_output=True, text=True, check=False)
        image = cv2.imread(str(out))
        if done.returncode != 0 or image is None:
            raise SystemExit(f"focus-stack failed ({done.returncode}): {done.stderr[-2000:]}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape != frames[0].shape:
        raise SystemExit(f"focus-stack wrote {image.shape}, expected {frames[0].shape}")
    return image


def register_translation(image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` shifted onto ``truth`` by the translation ECC finds (grey, from no shift)."""
    grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (truth, image)]
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    _, warp = cv2.findTransformECC(grey[0], grey[1], warp, cv2.MOTION_TRANSLATION, criteria, None, 5)
    h, w = truth.shape[:2]
    moved = cv2.warpAffine(image, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    return moved, (float(warp[0, 2]), float(warp[1, 2]))


def fusions(stack, focus_stack: Path | None, shifts: list) -> dict[str, np.ndarray]:
    out = {}
    for label, name, options in ENGINES:
        out[label] = create_engine(name, **options).fuse(stack.frames).image
    if focus_stack is not None:
        fs = run_focus_stack(focus_stack, stack.frames)
        out["focus-stack (its alignment on), as it comes"] = fs
        out["focus-stack, registered onto the truth (ECC translation)"], shift = register_translation(fs, stack.gt)
        shifts.append(shift)
    out["reference: depth oracle (the true depth picks the frame)"] = depth_oracle(
        stack.frames, stack.depth, stack.focus_positions)
    out["reference: frame 0 (the instrument sharp)"] = stack.frames[0]
    out[f"reference: frame {stack.k - 1} (the background sharp)"] = stack.frames[-1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-4"), help="halo scene seeds (default 1-4)")
    parser.add_argument("--size", type=int, default=256, help="frame side, px (default 256)")
    parser.add_argument("--k", type=int, default=5, help="frames (default 5)")
    parser.add_argument("--band", type=int, default=12, help="band half-width, px (default 12)")
    parser.add_argument("--focus-stack", type=Path, default=FOCUS_STACK if FOCUS_STACK.exists() else None,
                        help=f"focus-stack binary (default {FOCUS_STACK} when present; else no focus-stack rows)")
    args = parser.parse_args()

    print(f"Halo scene (surgifuse.validation.halo), seeds {args.seeds[0]}-{args.seeds[-1]}, "
          f"{args.size}x{args.size}, K={args.k}; band 1-{args.band} px beside the edges; grey levels of 255, "
          f"mean over the seeds; {datetime.date.today().isoformat()}; CPU: {cpu_name()} ({os.cpu_count()} cores)")
    for noise in (False, True):
        stacks = [halo_scene_stack(seed, size=args.size, k=args.k, noise=noise) for seed in args.seeds]
        shifts: list = []
        results = [fusions(stack, args.focus_stack, shifts) for stack in stacks]
        for edge_set in ("all high-contrast edges of the truth", "the instrument's outline"):
            print(f"\n{'noisy' if noise else 'noise-free'}, {edge_set}:\n")
            header = ["method"] + [c for c, _ in COLUMNS] + ["PSNR image"]
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for label in results[0]:
                rows = []
                for stack, fused in zip(stacks, results):
                    edges = mask_edges(stack.foreground_mask) if "outline" in edge_set else None
                    m = halo_measure(fused[label], stack.gt, edges, band_px=args.band)
                    m["psnr_image"] = psnr(stack.gt, fused[label])
                    rows.append(m)
                cells = [f"{np.mean([r[key] for r in rows]):.1f}" for _, key in COLUMNS]
                cells.append(f"{np.mean([r['psnr_image'] for r in rows]):.2f}")
                print("| " + " | ".join([label, *cells]) + " |")
        if shifts:
            print(f"\nfocus-stack's output against the truth ({'noisy' if noise else 'noise-free'}), ECC "
                  "translation (x, y) px per seed: " + ", ".join(f"({x:+.2f}, {y:+.2f})" for x, y in shifts))


if __name__ == "__main__":
    main()
