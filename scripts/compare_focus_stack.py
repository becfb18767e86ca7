"""Side by side with focus-stack (PetteriAimonen/focus-stack, built from its README in a scratch
folder outside this repository): whole command against whole command on the same files, and the
sharpness of each output judged against the input frames registered onto it by a method neither
uses (ORB features + RANSAC, refined by OpenCV's ECC).

    .venv/bin/python scripts/compare_focus_stack.py /path/to/focus-stack [--runs 3]
    .venv/bin/python scripts/compare_focus_stack.py /path/to/focus-stack \\
        --stacks pcb-macro,pcb-depthmap,algae,deep --deep-frames 120 --deep-size 1600x1200 --runs 2

Stacks (``--stacks``, default the two unaligned PCB stacks):

- ``pcb-macro``, ``pcb-depthmap``: focus-stack's own example stacks (shared/data/real), 2048x1536 JPEG.
- ``algae``: shared/data/real/algae-microscope, 5 frames of 5440x3648 (JPEG data in ``.png`` files:
  both programs sniff the content, the files are passed as they are).
- ``deep``: a generated stack with its truth (``surgifuse.synth.generate_stack``, synthetic fundus
  with an instrument, noise on; 120 frames of 1600x1200 by default), written as PNG to a temporary
  folder, the truth kept in memory.

Prints markdown: per stack and command the wall time (median of the runs, the two commands
interleaved: ours then focus-stack, run after run), peak memory (maximum resident set size over the
runs, GNU time's %M) and, with any other choice of ``--stacks`` than the default, that per megapixel
of one frame, CPU seconds (user + system, median), PSNR against the truth for the deep stack, then
the ratios against issue 14's goals (5x faster, a third of the memory, Q^AB/F at least
focus-stack's), the machine, the date and the load average. Q^AB/F of each output in both. Both
commands run with their defaults (focus-stack writes PNG; ``surgifuse fuse ... --quiet``).

Q^AB/F is computed at JUDGE_SIDE px (the longer side) against every frame registered onto the output,
or against ``--judge-frames N`` evenly spaced ones (deep stack: all by default). PSNR: each output
is registered onto the truth (ORB + RANSAC, ECC affine, full resolution; focus-stack crops its
output to the area all its aligned frames cover), resampled (Lanczos) into the truth's frame, and
both outputs are scored on the same pixels: those both cover, 8 px in from any edge.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.evaluation.metrics import qabf
from surgifuse.imageio import read_image, read_stack

SHARED = REPO.parent / "shared" / "data" / "real"
#: Side the judging works at (both outputs alike): ECC and Q^AB/F on 2048x1536 take minutes.
JUDGE_SIDE = 1024
#: Pixels left out at every edge of the PSNR (as ``surgifuse.evaluation.metrics.psnr``).
PSNR_BORDER = 8
STACKS = ("pcb-macro", "pcb-depthmap", "algae", "deep")
REAL_FOLDERS = {"pcb-macro": "pcb-macro", "pcb-depthmap": "pcb-depthmap", "algae": "algae-microscope"}


@dataclass
class Stack:
    """The files both commands get, the frames the judge registers, the truth where there is one."""

    name: str
    files: list[str]
    frames: list[np.ndarray]
    truth: np.ndarray | None = None
    note: str = ""

    @property
    def label(self) -> str:
        h, w = self.frames[0].shape[:2]
        return f"{self.name} ({len(self.files)} x {w}x{h})"

    @property
    def megapixels(self) -> float:
        h, w = self.frames[0].shape[:2]
        return h * w / 1e6


def run_timed(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB; GNU time's maximum resident set size) and CPU seconds (user +
    system, GNU time) of one command.

    GNU time forks the command itself, so the figure is the command's alone, whatever the size of
    this process (a child started straight from a large parent would inherit its high-water mark)."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *argv], check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kb, user, system = done.stderr.strip().splitlines()[-1].split()
    return seconds, int(peak_kb) / 1024.0, float(user) + float(system)


def register_onto(frame: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 warp taking ``target`` coordinates to ``frame`` coordinates (both grey float32, of
    any sizes): ORB + RANSAC where the frame has enough features (a defocused one may have
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


def onto_truth(output: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``output`` registered onto ``truth`` (ORB + RANSAC, ECC affine at full resolution) and
    resampled into its frame (Lanczos): (image, mask of the truth's pixels it covers, the warp)."""
    grey = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
    warp = register_onto(grey(output), grey(truth))
    h, w = truth.shape[:2]
    image = cv2.warpAffine(output, warp, (w, h), flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT)
    inside = cv2.warpAffine(np.full(output.shape[:2], 255, np.uint8), warp, (w, h),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    return image, inside > 0, warp


def masked_psnr(truth: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    diff = truth[mask].astype(np.float64) - image[mask].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0.0 else 10 * np.log10(255.0**2 / mse)


def real_stack(name: str) -> Stack:
    folder = SHARED / REAL_FOLDERS[name]
    suffixes = {".jpg"} if name.startswith("pcb") else {".png"}
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in suffixes)
    frames, _ = read_stack(files)
    note = "JPEG data in .png files, passed as they are" if name == "algae" else ""
    return Stack(name, files, frames, note=note)


def deep_stack(args: argparse.Namespace, folder: Path) -> Stack:
    from surgifuse.synth import generate_stack

    width, height = (int(v) for v in args.deep_size.lower().split("x"))
    t0 = time.perf_counter()
    stack = generate_stack(args.deep_seed, height=height, width=width, k=args.deep_frames, scene="fundus",
                           instrument=True, breathing=args.deep_breathing, motion=args.deep_motion)
    render_s = time.perf_counter() - t0
    folder.mkdir()
    files = []
    for i, frame in enumerate(stack.frames):
        files.append(str(folder / f"frame_{i:03d}.png"))
        cv2.imwrite(files[-1], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder.parent / "gt.png"), cv2.cvtColor(stack.gt, cv2.COLOR_RGB2BGR))
    print(f"deep: rendered {args.deep_frames} x {width}x{height} in {render_s:.0f} s, wrote PNG in "
          f"{time.perf_counter() - t0 - render_s:.0f} s", file=sys.stderr)
    note = (f"generated, seed {args.deep_seed}, fundus + instrument, noise on, breathing {args.deep_breathing}, "
            f"motion {args.deep_motion} px")
    return Stack("deep", files, list(stack.frames), truth=stack.gt, note=note)


def judged_frames(stack: Stack, limit: int) -> tuple[list[np.ndarray], str]:
    """The frames Q^AB/F is computed against: all, or ``limit`` evenly spaced."""
    if limit <= 0 or limit >= len(stack.frames):
        return stack.frames, "all"
    every = np.unique(np.linspace(0, len(stack.frames) - 1, limit).round().astype(int))
    return [stack.frames[i] for i in every], f"{len(every)} evenly spaced"


def cpu_name() -> str:
    from surgifuse.bench.machine import cpu_model

    return cpu_model()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("focus_stack", help="the focus-stack binary")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command per stack (default 3)")
    parser.add_argument("--stacks", default="pcb-macro,pcb-depthmap",
                        help=f"comma-separated, of: {', '.join(STACKS)} (default pcb-macro,pcb-depthmap)")
    parser.add_argument("--deep-frames", type=int, default=120, help="frames of the deep stack (default 120)")
    parser.add_argument("--deep-size", default="1600x1200", help="WxH of the deep stack (default 1600x1200)")
    parser.add_argument("--deep-seed", type=int, default=14001, help="seed of the deep stack (default 14001)")
    parser.add_argument("--deep-breathing", type=float, default=0.0, help="deep stack: magnification change across the sweep")
    parser.add_argument("--deep-motion", type=float, default=0.0, help="deep stack: largest frame shift, px")
    parser.add_argument("--judge-frames", type=int, default=0,
                        help="Q^AB/F against at most this many evenly spaced frames (default 0: all)")
    args = parser.parse_args()
    names = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in names if s not in STACKS]
    if unknown:
        parser.error(f"unknown stack(s) {', '.join(unknown)}; choose from {', '.join(STACKS)}")
    extended = names != ["pcb-macro", "pcb-depthmap"]
    surgifuse = str(REPO / ".venv" / "bin" / "surgifuse")
    shown = subprocess.run([args.focus_stack, "--version"], check=False, capture_output=True, text=True)
    version = ((shown.stdout or shown.stderr).strip().splitlines() or ["(version unknown)"])[0]
    started, load_before = datetime.datetime.now(), load()

    rows, ratios, notes = [], [], []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="compare_fs_") as tmp:
            stack = deep_stack(args, Path(tmp) / "frames") if name == "deep" else real_stack(name)
            ours, theirs = Path(tmp) / "surgifuse.png", Path(tmp) / "focus-stack.png"
            commands = {"surgifuse fuse": [surgifuse, "fuse", *stack.files, "-o", str(ours), "--quiet"],
                        "focus-stack": [args.focus_stack, f"--output={theirs}", *stack.files]}
            timings: dict[str, list[tuple[float, float, float]]] = {k: [] for k in commands}
            for run in range(args.runs):  # interleaved: both see the same machine load
                for label, argv in commands.items():
                    timings[label].append(run_timed(argv))
                    print(f"{name} run {run + 1}: {label} {timings[label][-1][0]:.2f} s, "
                          f"{timings[label][-1][1]:.0f} MB, {timings[label][-1][2]:.2f} CPU s", file=sys.stderr)
            outputs = {"surgifuse fuse": read_image(ours), "focus-stack": read_image(theirs)}
            frames, which = judged_frames(stack, args.judge_frames)
            t0 = time.perf_counter()
            scores = {label: judge(frames, out) for label, out in outputs.items()}
            print(f"{name}: judged against {which} frames in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            psnrs: dict[str, float] = {}
            if stack.truth is not None:
                onto = {label: onto_truth(out, stack.truth) for label, out in outputs.items()}
                common = np.logical_and.reduce([mask for _, mask, _ in onto.values()]).astype(np.uint8)
                common = cv2.erode(common, np.ones((2 * PSNR_BORDER + 1,) * 2, np.uint8),  # in from every edge
                                   borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
                psnrs = {label: masked_psnr(stack.truth, image, common) for label, (image, _, _) in onto.items()}
                warps = "; ".join(f"{label} {out.shape[1]}x{out.shape[0]} (warp onto the truth "
                                  f"[{', '.join(f'{v:.3f}' for v in onto[label][2].ravel())}])"
                                  for label, out in outputs.items())
                notes.append(f"{stack.label}: PSNR over {100 * common.mean():.1f} % of the truth's pixels; {warps}.")
            if stack.note or which != "all":
                notes.append(f"{stack.label}: {stack.note}{'; ' if stack.note else ''}Q^AB/F against {which} frames.")
            summary = {}
            for label in commands:
                seconds = statistics.median(t for t, _, _ in timings[label])
                peak = max(m for _, m, _ in timings[label])
                cpu = statistics.median(c for _, _, c in timings[label])
                summary[label] = (seconds, peak, scores[label], psnrs.get(label), cpu)
                rows.append((stack, label, seconds, peak))
            ratios.append((stack, summary))

    if not extended:  # the original table
        print("| stack | command | wall s (median of runs) | peak MB | Q^AB/F vs inputs registered by ORB+ECC |")
        print("|---|---|---|---|---|")
        for stack, summary in ratios:
            for label, (seconds, peak, score, _, _) in summary.items():
                print(f"| {stack.label} | {label} | {seconds:.2f} | {peak:.0f} | {score:.3f} |")
        return

    sys.stderr.flush()
    print(f"{started:%Y-%m-%d %H:%M}, {cpu_name()}, {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
          f"{load_before} before, {load()} after; focus-stack {version}; {args.runs} runs of each command "
          f"per stack, interleaved; {(datetime.datetime.now() - started).total_seconds() / 60:.1f} min in all.")
    print()
    cmd = " ".join(sys.argv[1:])
    print(f"Command: `.venv/bin/python scripts/compare_focus_stack.py {cmd}`")
    print()
    print(f"| stack | command | wall s (median of {args.runs}) | CPU s (user + sys, median) | peak RSS MB (max of runs) "
          "| peak MB per MP of a frame | Q^AB/F vs inputs registered by ORB+ECC | PSNR vs truth dB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for stack, summary in ratios:
        for label, (seconds, peak, score, db, cpu) in summary.items():
            print(f"| {stack.label} | {label} | {seconds:.2f} | {cpu:.1f} | {peak:.0f} | {peak / stack.megapixels:.0f} | "
                  f"{score:.3f} | {'' if db is None else f'{db:.2f}'} |")
    print()
    print("| stack | speed-up (focus-stack wall / ours) | ≥ 5x | memory (ours / focus-stack peak) | ≤ 1/3 | "
          "Q^AB/F ours − focus-stack | ≥ 0 |")
    print("|---|---:|---|---:|---|---:|---|")
    for stack, summary in ratios:
        (t_o, m_o, q_o, _, _), (t_f, m_f, q_f, _, _) = summary["surgifuse fuse"], summary["focus-stack"]
        speed, memory, dq = t_f / t_o, m_o / m_f, q_o - q_f
        yes = lambda ok: "met" if ok else "**missed**"
        print(f"| {stack.label} | {speed:.2f}x | {yes(speed >= 5)} | {memory:.2f} | {yes(memory <= 1 / 3)} | "
              f"{dq:+.3f} | {yes(round(dq, 3) >= 0)} |")
    if notes:
        print()
        for note in notes:
            print(f"- {note}")


if __name__ == "__main__":
    main()
