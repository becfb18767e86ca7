"""Measure the motion guard on a generated focus-sweep video whose instrument moves.

Each frame of the video goes through the live processing step (rolling stack of K, engine, guard on
and guard off side by side) and the published image is compared with that frame's all-in-focus
truth: inside the instrument's region (where it is now and where it was during the last K-1
frames, where a ghost would show), in the ghost region alone (old positions only), and over the
whole frame. The newest raw frame is scored too, as the reference "never stale, never sharp".

    python -m surgifuse.live.motion_guard_eval --frames 120 --height 480 --width 640 --k 5

Numbers are in docs/live-pipeline.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from surgifuse.errors import InputError

from .frames import CapturedFrame
from .motion_guard import MotionGuard
from .processor import FrameProcessor

#: A pixel whose largest channel error exceeds this many levels counts as a ghost pixel.
GHOST_LEVELS = 30


def read_video(path: str | Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise InputError(f"{path}: no frames")
    return frames


def _scores(image: np.ndarray, truth: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    err = np.abs(image.astype(np.int16) - truth.astype(np.int16))
    per_pixel = err.max(axis=2)
    out = {}
    for name, mask in regions.items():
        if mask.any():
            out[f"mae_{name}"] = float(err[mask].mean())
            out[f"ghost_px_{name}"] = float((per_pixel[mask] > GHOST_LEVELS).mean())
    mse = float((err.astype(np.float32) ** 2).mean())
    out["psnr_frame"] = float(10 * np.log10(255.0 ** 2 / max(mse, 1e-9)))
    return out


def evaluate(video: str | Path | None = None, *, frames: int = 120, height: int = 480, width: int = 640, k: int = 5,
             seed: int = 0, engine: str = "classical", align: bool = False, threshold: float = 16.0,
             engine_factory=None, guard_options: dict | None = None) -> dict:
    """Run the sweep through guard-off and guard-on processors; return mean scores per variant.

    Parameters
    ----------
    video : path, optional
        A sweep ``.mp4`` written by ``surgifuse.synth.video.write_sweep_video`` (truth beside it).
        Default: one is generated in a temporary folder from ``frames``, ``height``, ``width``,
        ``k``, ``seed``.
    engine : str
        Engine name (``surgifuse.engines.create_engine``), or use ``engine_factory``.
    """
    from surgifuse.synth.video import load_sweep_truth, write_sweep_video

    if engine_factory is None:
        from surgifuse.engines import create_engine as engine_factory
    with tempfile.TemporaryDirectory() as tmp:
        if video is None:
            video, _ = write_sweep_video(Path(tmp) / "sweep.mp4", seed=seed, height=height, width=width, k=k,
                                         frames=frames)
        truth = load_sweep_truth(video)
        images = read_video(video)
    renderer = truth.renderer()
    k = int(truth.params["k"])
    variants = {
        "guard_off": FrameProcessor(engine_factory(engine), k=k, align=align, guard=None),
        "guard_on": FrameProcessor(engine_factory(engine), k=k, align=align, guard=MotionGuard(threshold=threshold,
                                                                                 **(guard_options or {}))),
    }
    sums: dict[str, dict[str, list[float]]] = {name: {} for name in (*variants, "newest_raw")}
    guard_ms, guard_fraction = [], []
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    masks: list[np.ndarray] = []
    for t, image in enumerate(images):
        masks.append(truth.instrument_mask(t))
        masks = masks[-k:]
        captured = CapturedFrame(image, t, 0.0)
        outs = {name: proc.process(captured) for name, proc in variants.items()}
        if t < k - 1:
            continue  # the stack is still filling
        aif = renderer.render(t).aif
        now = masks[-1]
        before = np.logical_or.reduce(masks[:-1])
        regions = {
            "instrument": cv2.dilate((now | before).astype(np.uint8), ring).astype(bool),
            "ghost": before & ~now,
            "frame": np.ones_like(now),
        }
        for name, out in outs.items():
            for key, value in _scores(out.image, aif, regions).items():
                sums[name].setdefault(key, []).append(value)
        for key, value in _scores(image, aif, regions).items():
            sums["newest_raw"].setdefault(key, []).append(value)
        guard_ms.append(outs["guard_on"].timings["guard"])
        guard_fraction.append(outs["guard_on"].guard_fraction)
    result = {name: {key: float(np.mean(v)) for key, v in scores.items()} for name, scores in sums.items()}
    result["guard_cost_ms_mean"] = float(np.mean(guard_ms))
    result["guard_fraction_mean"] = float(np.mean(guard_fraction))
    result["setup"] = {"frames_scored": len(guard_ms), "k": k, "height": int(truth.params["height"]),
                       "width": int(truth.params["width"]), "seed": int(truth.params["seed"]), "engine": engine,
                       "align": align, "threshold": threshold, "ghost_levels": GHOST_LEVELS}
    return result


def format_table(result: dict) -> str:
    rows = ["| variant | MAE instrument region | MAE ghost region | ghost pixels (>30 levels) | MAE frame | PSNR frame (dB) |",
            "|---|---|---|---|---|---|"]
    for name in ("guard_off", "guard_on", "newest_raw"):
        r = result[name]
        rows.append(f"| {name} | {r['mae_instrument']:.2f} | {r['mae_ghost']:.2f} | {100 * r['ghost_px_ghost']:.2f} % "
                    f"| {r['mae_frame']:.2f} | {r['psnr_frame']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", help="a sweep .mp4 with its .truth.npz (default: generate one)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="classical")
    parser.add_argument("--align", action="store_true")
    parser.add_argument("--threshold", type=float, default=16.0)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = evaluate(args.video, frames=args.frames, height=args.height, width=args.width, k=args.k, seed=args.seed,
                      engine=args.engine, align=args.align, threshold=args.threshold)
    result["wall_s"] = time.perf_counter() - t0
    print(format_table(result))
    print(f"guard: {result['guard_cost_ms_mean']:.2f} ms/frame, overrides {100 * result['guard_fraction_mean']:.2f} % "
          f"of the frame on average; {result['setup']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
