"""Side by side with focus-stack (PetteriAimonen/focus-stack, built from its README in a scratch
folder outside this repository) on the unaligned real PCB stacks: whole command against whole
command on the same files, and the sharpness of each output judged against the input frames
registered onto it by a method neither uses (ORB features + RANSAC, refined by OpenCV's ECC).

    .venv/bin/python scripts/compare_focus_stack.py /path/to/focus-stack [--runs 3]

Prints a markdown table: wall time (median of the runs, the two commands interleaved), peak memory
(maximum resident set size, GNU time), Q^AB/F of each output.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.evaluation.metrics import qabf  # noqa: E402
from surgifuse.imageio import read_image, read_stack  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "real"
#: Side the judging works at (both outputs alike): ECC and Q^AB/F on 2048x1536 take minutes.
JUDGE_SIDE = 1024


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command (GNU time's maximum resident set size)."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024.0


def register_onto(frame: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 warp taking ``target`` coordinates to ``frame`` coordinates (both grey float32 at
    the judging size): ORB + RANSAC where the frame has enough features (a defocused one may have
    none: then ECC from a coarse 256 px translation search), refined by ECC (MOTION_AFFINE)."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    orb = cv2.ORB_create(4000)
    a8, b8 = (np.clip(x, 0, 255).astype(np.uint8) for x in (frame, target))
    ka, da = orb.detectAndCompute(a8, None)
    kb, db = orb.detectAndCompute(b8, None)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db) if da is not None and db is not None else []
    warp = None
    if len(matches) >= 10:
        src = np.float32([ka[m.queryIdx].pt for m in matches])
        dst = np.float32([kb[m.trainIdx].pt for m in matches])
        to_target, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        if to_target is not None:
            warp = cv2.invertAffineTransform(to_target).astype(np.float32)
    if warp is None:
        factor = 256 / max(target.shape)
        small_t = cv2.resize(target, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        small_f = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        coarse = np.eye(2, 3, dtype=np.float32)
        try:
            _, coarse = cv2.findTransformECC(small_t, small_f, coarse, cv2.MOTION_TRANSLATION, criteria, None, 5)
        except cv2.error:
            pass
        warp = coarse.copy()
        warp[:, 2] /= factor
    try:
        _, warp = cv2.findTransformECC(target, frame, warp, cv2.MOTION_AFFINE, criteria, None, 5)
    except cv2.error:
        pass  # ECC did not converge: keep the first estimate
    return warp


def judge(frames: list[np.ndarray], output: np.ndarray) -> float:
    """Q^AB/F of ``output`` against the frames registered onto it (all at JUDGE_SIDE)."""
    h, w = output.shape[:2]
    scale = JUDGE_SIDE / max(h, w)
    size = (round(w * scale), round(h * scale))
    small_out = cv2.resize(output, size, interpolation=cv2.INTER_AREA)
    grey_out = cv2.cvtColor(small_out, cv2.COLOR_RGB2GRAY).astype(np.float32)
    registered = []
    for f in frames:
        small = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        warp = register_onto(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32), grey_out)
        registered.append(cv2.warpAffine(small, warp, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                         borderMode=cv2.BORDER_REPLICATE))
    return qabf(registered, small_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("focus_stack", help="the focus-stack binary")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    surgifuse = str(REPO / ".venv" / "bin" / "surgifuse")
    print("| stack | command | wall s (median of runs) | peak MB | Q^AB/F vs inputs registered by ORB+ECC |")
    print("|---|---|---|---|---|")
    for name in ("pcb-macro", "pcb-depthmap"):
        files = sorted(str(p) for p in (SHARED / name).iterdir() if p.suffix.lower() == ".jpg")
        frames, _ = read_stack(files)
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = Path(tmp) / "surgifuse.png", Path(tmp) / "focus-stack.png"
            commands = {"surgifuse fuse": [surgifuse, "fuse", *files, "-o", str(ours), "--quiet"],
                        "focus-stack": [args.focus_stack, f"--output={theirs}", *files]}
            timings: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
            for _ in range(args.runs):  # interleaved: both see the same machine load
                for label, argv in commands.items():
                    timings[label].append(run_timed(argv))
            for label, path in (("surgifuse fuse", ours), ("focus-stack", theirs)):
                seconds = statistics.median(t for t, _ in timings[label])
                peak = max(m for _, m in timings[label])
                print(f"| {name} ({len(files)} x {frames[0].shape[1]}x{frames[0].shape[0]}) | {label} | {seconds:.2f} | "
                      f"{peak:.0f} | {judge(frames, read_image(path)):.3f} |")


if __name__ == "__main__":
    main()
