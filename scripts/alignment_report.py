"""Alignment before/after figures for docs/alignment.md: still and moving stacks, the real stacks,
the live sweep. Run: .venv/bin/python scripts/alignment_report.py [--quick] > report.md

Every figure is computed here in one run, against the truth where the material has one:
* offline stacks (surgifuse/fusion.py, the path of `surgifuse fuse`): seeds 1000+ (never used
  while the thresholds were chosen), 768x1024, disc defocus with NA 0.13, a sharp instrument in
  front, Poisson-Gaussian noise, JPEG 90; still, and with 1.2 % breathing and 1.5 px jitter;
* ../shared/data/real: the Lytro pairs (registered) and the two unaligned PCB stacks;
* the live sweep (surgifuse/keyframes.py): a still eye with a moving instrument (600 frames), a
  wandering eye, breathing, both, jumps (720p).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.align import SimilarityTransform  # noqa: E402
from surgifuse.engines import create_engine  # noqa: E402
from surgifuse.evaluation.metrics import psnr, qabf  # noqa: E402
from surgifuse.fusion import fuse_focal_stack  # noqa: E402
from surgifuse.imageio import read_image, read_stack  # noqa: E402
from surgifuse.keyframes import KeyframeAligner  # noqa: E402
from surgifuse.synth import generate_stack  # noqa: E402
from surgifuse.synth.video import EyeMotion, FocusSweepRenderer  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "real"


def _rms(a: np.ndarray, b: np.ndarray, shape) -> float:
    h, w = shape
    ys, xs = np.mgrid[0:h:8, 0:w:8]
    p = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    d = (a @ p)[:2] - (b @ p)[:2]
    return float(np.sqrt(np.mean(np.sum(d * d, axis=0))))


def offline_stacks(seeds: list[int]) -> None:
    engine = create_engine("classical")
    print("| stacks | frames moved | registration error px RMS (median / max) | PSNR aligned | PSNR --no-align | bit-equal |")
    print("|---|---|---|---|---|---|")
    for kind, na in (("still", 0.13), ("breathing 1.2 % + jitter 1.5 px", 0.13), ("still, heavy defocus (NA 0.3)", 0.3),
                     ("breathing 1.2 % + jitter 1.5 px, heavy defocus (NA 0.3)", 0.3)):
        moved = total = equal = 0
        errors, aligned_db, plain_db = [], [], []
        moving = not kind.startswith("still")
        for seed in seeds:
            stack = generate_stack(seed, height=768, width=1024, k=5, scene="mixed", instrument=True, noise=True,
                                   jpeg_quality=90, numerical_aperture=na,
                                   breathing=0.012 if moving else 0.0, motion=1.5 if moving else 0.0)
            frames = list(stack.frames)
            fused = fuse_focal_stack(engine, frames)
            plain = engine.fuse(frames)
            moved += fused.moved
            total += len(frames) - 1
            equal += int(np.array_equal(fused.result.image, plain.image))
            for i, r in enumerate(fused.registrations):
                truth = (SimilarityTransform.from_matrix(np.asarray(stack.meta["frame_transforms"][i])).inverse()
                         if moving else SimilarityTransform.identity())
                errors.append(_rms(r.transform.matrix3, truth.matrix3, frames[0].shape[:2]))
            aligned_db.append(psnr(stack.gt, fused.result.image))
            plain_db.append(psnr(stack.gt, plain.image))
        print(f"| {kind} ({len(seeds)}) | {moved} of {total} | {np.median(errors):.2f} / {max(errors):.2f} | "
              f"{np.mean(aligned_db):.2f} dB | {np.mean(plain_db):.2f} dB | {equal} of {len(seeds)} |")


def lytro() -> None:
    engine = create_engine("classical")
    aligned, plain, moved = [], [], 0
    for i in range(1, 21):
        pair = [read_image(SHARED / "lytro" / f"color_lytro_{i:02d}_{j}.png") for j in (1, 2)]
        fused = fuse_focal_stack(engine, pair)
        moved += fused.moved
        aligned.append(qabf(pair, fused.result.image))
        plain.append(qabf(pair, engine.fuse(pair).image))
    print(f"| Lytro, 20 registered pairs | {moved} of 20 frames moved | Q^AB/F {np.mean(aligned):.3f} aligned, "
          f"{np.mean(plain):.3f} --no-align |")


def pcb() -> None:
    engine = create_engine("classical")
    for name in ("pcb-macro", "pcb-depthmap"):
        frames, _ = read_stack(SHARED / name)
        t0 = time.perf_counter()
        fused = fuse_focal_stack(engine, frames)
        seconds = time.perf_counter() - t0
        largest = max(r.displacement for r in fused.registrations)
        print(f"| {name}, {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} | {fused.moved} of "
              f"{len(frames) - 1} frames moved, the most by {largest:.1f} px | Q^AB/F {qabf(fused.frames, fused.result.image):.3f} "
              f"(against the registered frames) | {seconds:.1f} s |")


def live(height: int, width: int, frames: int) -> None:
    cases = [("still eye, moving instrument", None), ("wander 2 % of the width", EyeMotion(wander_px=0.02 * width)),
             ("breathing 1.2 %", EyeMotion(breathing=0.012)),
             ("wander 1.5 % + breathing 1 %", EyeMotion(wander_px=0.015 * width, breathing=0.01)),
             ("jump 15 % every 97 frames", EyeMotion(jump_px=0.15 * width, jump_every_frames=97))]
    print(f"| live sweep {width}x{height}, K=5, {frames} frames | frames resampled | error px RMS from the 2nd sweep "
          "(median / p95 / max) | restarts | registration ms (median) |")
    print("|---|---|---|---|---|")
    for name, eye in cases:
        renderer = FocusSweepRenderer(4, height=height, width=width, k=5, eye=eye)
        aligner, anchor, since, errors, moved, restarts, ms = KeyframeAligner(), None, 0, [], 0, 0, []
        for t in range(frames):
            f = renderer.render(t)
            t0 = time.perf_counter()
            step = aligner.step(f.image, f.focus_position)
            ms.append((time.perf_counter() - t0) * 1000)
            if step.restarted:
                anchor, since, restarts = f.view, 0, restarts + 1
                continue
            since += 1
            moved += step.transform is not None
            estimate = np.eye(3) if step.transform is None else step.transform.matrix3
            if since >= 8:
                errors.append(_rms(estimate, anchor @ np.linalg.inv(f.view), (height, width)))
        e = np.array(errors)
        print(f"| {name} | {moved} | {np.median(e):.3f} / {np.percentile(e, 95):.3f} / {e.max():.3f} | {restarts - 1} | "
              f"{np.median(ms):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer stacks and frames")
    parser.add_argument("--skip-live", action="store_true", help="no live sweep")
    args = parser.parse_args()
    print("## Offline stacks\n")
    offline_stacks(list(range(1000, 1003 if args.quick else 1006)))
    print("\n## Real stacks\n")
    print("| data | registration | quality | time |\n|---|---|---|---|")
    lytro()
    pcb()
    print("\n## Live sweep\n")
    if not args.skip_live:
        live(720, 1280, 200 if args.quick else 600)


if __name__ == "__main__":
    main()
