#!/usr/bin/env python
"""Deep focal stacks through ``surgifuse fuse``: wall time, peak memory and quality beyond K = 31.

Renders one synthetic stack with its truth (``surgifuse.synth.generate_stack``; 120 frames of
1600x1200 by default), writes it as PNG to a temporary folder, runs ``surgifuse fuse`` on it as a
subprocess per variant (the default, registered onto the middle frame; ``--no-align``) and reports
per run the wall time, the peak resident memory of the process (its ``VmHWM`` at exit: ``ru_maxrss``
of a child started by vfork counts the parent's peak too), that per megapixel, the same above the command's fixed cost (its peak on a 2-frame 64x64 stack), PSNR
against the all-in-focus truth and how often the depth index is within one depth of field of the
truth (the frames focused within it are all sharp there: 1 px of blur or less). For
scale: the classical engine in this process on 31 of the frames, evenly spaced (K = 31 is its
largest stack). Markdown on stdout, progress on stderr.

    .venv/bin/python scripts/deep_stack_report.py                         # 120 x 1600x1200
    .venv/bin/python scripts/deep_stack_report.py --k 40 --size 640x480   # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from surgifuse.engines import create_engine
from surgifuse.evaluation.metrics import psnr
from surgifuse.fusion import fuse_focal_stack
from surgifuse.imageio import read_image, write_image
from surgifuse.synth import generate_stack, write_stack

VARIANTS = {
    "default (aligned)": [],
    "--no-align": ["--no-align"],
}


# `surgifuse fuse` as `python -m surgifuse.cli` runs it, writing the process's peak RSS (kB) to argv[1] at exit.
CHILD = """
import atexit, sys
def peak(path=sys.argv.pop(1)):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
atexit.register(peak)
from surgifuse.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_fuse(args: list[str]) -> tuple[float, int, str]:
    """``surgifuse fuse ARGS`` as a child process: (wall s, peak RSS bytes, its stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(peak_file), "fuse", *args], capture_output=True, check=False,
                              text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"surgifuse fuse {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return wall, int(peak_file.read_text()) * 1024, proc.stdout.strip()


def cpu_name() -> str:
    from surgifuse.bench.machine import cpu_model

    return cpu_model()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=120, help="frames (default 120)")
    parser.add_argument("--size", default="1600x1200", help="WxH (default 1600x1200)")
    parser.add_argument("--seed", type=int, default=14001, help="synthetic stack seed (default 14001)")
    parser.add_argument("--breathing", type=float, default=0.0, help="magnification change across the sweep")
    parser.add_argument("--motion", type=float, default=0.0, help="largest frame shift, px")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    variants = [v.strip() for v in args.variants.split(",")]
    megapixels = width * height / 1e6

    with tempfile.TemporaryDirectory(prefix="deep_stack_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        stack = generate_stack(args.seed, height=height, width=width, k=args.k, scene="fundus", instrument=True,
                               breathing=args.breathing, motion=args.motion)
        render_s = time.perf_counter() - t0
        folder = write_stack(stack, tmp / "stack")
        write_s = time.perf_counter() - t0 - render_s
        print(f"rendered K={args.k} {width}x{height} in {render_s:.0f} s, wrote PNG in {write_s:.0f} s",
              file=sys.stderr)
        png_mb = sum(p.stat().st_size for p in folder.glob("frame_*.png")) / 1e6
        focus = np.asarray(stack.focus_positions)
        truth = np.interp(stack.depth, focus, np.arange(args.k))  # the true depth in frames
        # Half the depth of field either side, in frames (at least one frame).
        tolerance = max(1.0, 0.5 * stack.meta["optics"]["depth_of_field_mm"] / float(np.mean(np.diff(focus))))
        gt = stack.gt

        # The classical engine itself on 31 evenly spaced frames (its largest K), for scale.
        every = np.unique(np.linspace(0, args.k - 1, min(31, args.k)).round().astype(int))
        engine = create_engine("classical")
        subsampled = fuse_focal_stack(engine, [stack.frames[i] for i in every]).result  # aligned, as `fuse`
        reference_db = psnr(subsampled.image, gt)
        reference_depth = np.interp(subsampled.depth_index, np.arange(len(every)), every)
        reference_close = np.abs(reference_depth - truth) <= tolerance
        reference_within = (float(np.mean(reference_close)), float(np.mean(reference_close[subsampled.confidence > 0])))
        del stack, subsampled

        small = tmp / "small"
        small.mkdir()
        for i in range(2):
            write_image(small / f"frame_{i}.png", np.full((64, 64, 3), 100 + i, np.uint8))
        _, baseline_rss, _ = run_fuse([str(small), "-o", str(tmp / "small.png"), "--quiet"])

        rows = []
        for name in variants:
            out, depth, confidence = tmp / "fused.png", tmp / "depth.tif", tmp / "confidence.png"
            wall, rss, summary = run_fuse([str(folder), "-o", str(out), "--depth", str(depth), "--confidence",
                                           str(confidence), *VARIANTS[name]])
            print(summary, file=sys.stderr)
            fused = read_image(out)
            close = np.abs(read_image(depth).astype(np.float64) / 65535 * (args.k - 1) - truth) <= tolerance
            informed = read_image(confidence) > 0
            rows.append((name, wall, rss, psnr(fused, gt), float(np.mean(close)), float(np.mean(close[informed]))))

    date = datetime.date.today().isoformat()
    print(f"Deep stack: K={args.k}, {width}x{height} RGB8 ({megapixels:.2f} MP), synthetic fundus with instrument, "
          f"seed {args.seed}, noise on, breathing {args.breathing}, motion {args.motion} px; {png_mb:.0f} MB of PNG. {date}, {cpu_name()}, {os.cpu_count()} CPUs. "
          f"Rendering took {render_s:.0f} s, writing {write_s:.0f} s.")
    print()
    print(f"Command: `.venv/bin/python scripts/deep_stack_report.py --k {args.k} --size {width}x{height} "
          f"--seed {args.seed} --breathing {args.breathing} --motion {args.motion}`; each row is `surgifuse fuse STACK -o fused.png --depth depth.tif --confidence "
          f"conf.png [variant]` in a "
          f"child process. The command's fixed cost (interpreter, libraries; a 2-frame 64x64 stack): "
          f"{baseline_rss / 2**20:.0f} MiB peak RSS.")
    print()
    print(f"| variant | wall s | peak RSS MiB | per MP | above the fixed cost, per MP | PSNR vs truth dB | depth within "
          f"half a depth of field (±{tolerance:.1f} frames) of the truth: all pixels / where confidence > 0 |")
    print("|---|---|---|---|---|---|---|")
    for name, wall, rss, db, within, within_informed in rows:
        print(f"| {name} | {wall:.1f} | {rss / 2**20:.0f} | {rss / 2**20 / megapixels:.0f} | "
              f"{(rss - baseline_rss) / 2**20 / megapixels:.0f} | {db:.2f} | {100 * within:.1f} % / "
              f"{100 * within_informed:.1f} % |")
    print()
    print(f"For scale, the classical engine in memory on {len(every)} of the frames evenly spaced (aligned): PSNR "
          f"{reference_db:.2f} dB, depth within ±{tolerance:.1f} frames {100 * reference_within[0]:.1f} % / "
          f"{100 * reference_within[1]:.1f} %.")


if __name__ == "__main__":
    main()
