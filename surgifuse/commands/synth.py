"""``surgifuse synth``: write synthetic focal stacks with truth (and optionally a focus-sweep video).

Each stack goes to ``OUT/stack_NNNN/`` (frames, gt.png, depth.npy, meta.json), written atomically;
see docs/synthetic-data.md for the model.
"""

from __future__ import annotations

import argparse
import re

from surgifuse.errors import InputError


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"1280x720"`` (W x H) -> (720, 1280) as (height, width)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not m:
        raise InputError(f"--size must be N or WxH (e.g. 512 or 1280x720), got {text!r}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise InputError(f"--size must be between 16 and 8192 px per side, got {w}x{h}")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (stacks go to OUT/stack_0000, ...)")
    parser.add_argument("--count", type=int, default=1, help="number of stacks (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first stack; stack i uses seed+i (default 0)")
    parser.add_argument("--size", default="512", help="N (square) or WxH in pixels (default 512)")
    parser.add_argument("--k", type=int, default=5, help="focus positions per stack (default 5)")
    parser.add_argument("--scene", choices=["fundus", "texture", "mixed"], default="fundus",
                        help="scene kind (default fundus)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--instrument", dest="instrument", action="store_true", default=None,
                       help="always put an instrument in front (default: at random, in about half of the stacks)")
    group.add_argument("--no-instrument", dest="instrument", action="store_false", default=None,
                       help="never put an instrument in front (default: at random, in about half of the stacks)")
    parser.add_argument("--no-noise", dest="noise", action="store_false",
                        help="no sensor noise (default: Poisson-Gaussian sensor noise on)")
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q",
                        help="JPEG-compress frames at quality Q, 1-100 (default: no compression)")
    parser.add_argument("--breathing", type=float, default=0.0, metavar="F",
                        help="fractional magnification change across the sweep, e.g. 0.01 (default 0: none)")
    parser.add_argument("--motion", type=float, default=0.0, metavar="PX",
                        help="largest frame shift against the middle frame, px (default 0: none)")
    parser.add_argument("--video", type=int, default=None, metavar="FRAMES",
                        help="also write OUT/sweep.mp4 (FRAMES frames) with its truth (default: no video)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the sweep video (default 30)")
    parser.add_argument("--overwrite", action="store_true", help="replace stacks that already exist (default: refuse)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from surgifuse.progress import track
    from surgifuse.synth.stack import generate_stack, write_stack

    height, width = parse_size(args.size)
    if args.count < 0:
        raise InputError(f"--count must be >= 0, got {args.count}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.k < 2:
        raise InputError(f"--k must be >= 2, got {args.k}")
    if args.jpeg is not None and not 1 <= args.jpeg <= 100:
        raise InputError(f"--jpeg must be in 1..100, got {args.jpeg}")
    if args.video is not None and args.video < 1:
        raise InputError(f"--video must be >= 1 frames, got {args.video}")
    if args.count == 0 and args.video is None:
        raise InputError("nothing to do: --count 0 and no --video")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT exists and is not a folder: {out}")
    targets = [out / f"stack_{i:04d}" for i in range(args.count)]
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise InputError(f"{existing[0]} already exists ({len(existing)} of {len(targets)} stacks); pass --overwrite to replace")
    options = dict(
        height=height,
        width=width,
        k=args.k,
        scene=args.scene,
        instrument=args.instrument,
        noise=args.noise,
        jpeg_quality=args.jpeg,
        breathing=args.breathing,
        motion=args.motion,
    )
    # generate_stack checks every option: a bad value fails on the first stack, before anything
    # is written.
    for i in track(range(args.count), desc="synth", unit="stack", enabled=args.count >= 2):
        stack = generate_stack(args.seed + i, **options)
        out.mkdir(parents=True, exist_ok=True)
        write_stack(stack, targets[i], overwrite=args.overwrite)
    if args.video is not None:
        from surgifuse.synth.video import write_sweep_video

        video = out / "sweep.mp4"
        if video.exists() and not args.overwrite:
            raise InputError(f"{video} already exists; pass --overwrite to replace")
        write_sweep_video(
            video,
            seed=args.seed,
            height=height,
            width=width,
            k=args.k,
            frames=args.video,
            fps=args.fps,
            noise=args.noise,
            scene="fundus" if args.scene == "mixed" else args.scene,
            progress=True,
        )
        print(f"wrote {video}")
    if args.count:
        print(f"wrote {args.count} stack(s) to {out}")
    return 0
