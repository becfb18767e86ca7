"""Write a validation set with the independent generator (surgifuse.validation), in the layout
``surgifuse eval`` reads: OUT/stack_0000 ... (frame_*.png, gt.png, depth.npy, meta.json).

For selecting checkpoints and for reports only; never train or tune on it. The training data come
from ``surgifuse synth`` (a separate generator).

    .venv/bin/python scripts/make_validation_set.py OUT [--count 8] [--seed 9000] [--size 512|WxH]
        [--k 5] [--no-noise] [--jpeg Q] [--breathing F] [--jitter PX] [--aberration A] [--overwrite]
    .venv/bin/surgifuse eval OUT --engine classical
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surgifuse.validation import VALIDATION_SEED, write_validation_set  # noqa: E402
from surgifuse.validation.stack import SPHERICAL_ABERRATION  # noqa: E402


def size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"1920x1080"`` (W x H) -> (1080, 1920) as (height, width)."""
    m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}")
    w = int(m.group(1))
    return (int(m.group(2)) if m.group(2) else w), w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", metavar="OUT", help="output folder (stacks go to OUT/stack_0000, ...)")
    parser.add_argument("--count", type=int, default=8, help="number of stacks (default 8)")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help=f"seed of the first stack; stack i uses seed+i (default {VALIDATION_SEED})")
    parser.add_argument("--size", type=size, default=(512, 512), help="N or WxH in px (default 512)")
    parser.add_argument("--k", type=int, default=5, help="frames (focus positions) per stack (default 5)")
    parser.add_argument("--no-noise", dest="noise", action="store_false", help="no sensor noise (default: on)")
    parser.add_argument("--jpeg", type=int, default=None, metavar="Q", help="JPEG quality 1-100 (default: lossless)")
    parser.add_argument("--breathing", type=float, default=0.0, metavar="F",
                        help="magnification change from first to last frame, e.g. 0.01 (default 0)")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="PX",
                        help="largest per-frame shift against the middle frame, px (default 0)")
    parser.add_argument("--aberration", type=float, default=SPHERICAL_ABERRATION, metavar="A",
                        help=f"spherical aberration of the defocus disc, -0.5..0.5 (default {SPHERICAL_ABERRATION})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing stacks (default: refuse)")
    args = parser.parse_args(argv)
    height, width = args.size
    try:
        paths = write_validation_set(args.out, count=args.count, seed=args.seed, overwrite=args.overwrite,
                                     progress=args.count >= 2, height=height, width=width, k=args.k,
                                     noise=args.noise, jpeg_quality=args.jpeg, breathing=args.breathing,
                                     jitter=args.jitter, spherical_aberration=args.aberration)
    except (ValueError, FileExistsError) as exc:
        print(f"make_validation_set: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} validation stack(s) to {args.out} (seeds {args.seed}..{args.seed + len(paths) - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
