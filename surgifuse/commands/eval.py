"""``surgifuse eval``: score fusion engines on focal stacks, print a table, write JSON and figures."""

from __future__ import annotations

import argparse
import sys

from surgifuse.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="a stack folder (frame_*.png [+ gt.png, depth.npy, meta.json], or any images) "
                             "or a folder of stack folders")
    parser.add_argument("--engine", dest="engines", action="append", metavar="NAME",
                        help="engine to score (repeat for several): classical, fn, autoencoder, msmfm "
                             "(required: no default)")
    parser.add_argument("--json", dest="json_path", metavar="OUT.json",
                        help="write the full results here (default: not written)")
    parser.add_argument("--figures", metavar="DIR",
                        help="write a PNG grid (inputs, fused, truth, error map) per engine and stack here "
                             "(default: no figures)")
    parser.add_argument("--figure-stacks", type=int, default=3, metavar="N",
                        help="figures for the first N stacks only (default 3)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--align", dest="align", action="store_true", default=None,
                       help="align every stack to its middle frame before fusing (default: only real stacks "
                            "and synthetic ones with breathing or motion)")
    group.add_argument("--no-align", dest="align", action="store_false", default=None,
                       help="fuse the frames as given (default: auto, see --align)")
    parser.add_argument("--limit", type=int, metavar="N", help="score only the first N stacks (default: all)")
    parser.add_argument("--border", type=int, default=8, metavar="PX",
                        help="border excluded from PSNR/SSIM (default 8)")
    parser.add_argument("--max-side", type=int, metavar="PX",
                        help="shrink stacks whose longer side exceeds PX, for quick looks at large real data "
                             "(default: no shrinking)")
    parser.add_argument("--no-nr", dest="no_reference", action="store_false",
                        help="skip Q^AB/F and NMI on stacks that have truth, faster (default: computed on every stack)")
    parser.add_argument("--quiet", action="store_true",
                        help="no per-stack progress lines (default: one per stack on stderr; warnings always show)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluation import report
    from ..evaluation.run import evaluate

    if not args.engines:
        raise InputError("name at least one engine with --engine NAME")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.figure_stacks < 0:
        raise InputError(f"--figure-stacks must be >= 0, got {args.figure_stacks}")
    if args.json_path and not Path(args.json_path).resolve().parent.is_dir():
        raise FileNotFoundError(f"--json: folder {Path(args.json_path).resolve().parent} does not exist")

    figure_dir = Path(args.figures) if args.figures else None
    if figure_dir is not None:
        figure_dir.mkdir(parents=True, exist_ok=True)
    seen: list[str] = []
    written: list[Path] = []

    def on_fused(stack, name, image, scores):
        if figure_dir is None:
            return
        if stack.path not in seen:
            seen.append(stack.path)
        if seen.index(stack.path) < args.figure_stacks:
            path = figure_dir / f"{stack.name}_{name}.png"
            report.write_figure(path, stack, name, image, scores=scores)
            written.append(path)

    def progress(line):
        if not args.quiet:
            print(line, file=sys.stderr)

    def warn(line):  # even with --quiet: a skipped stack changes what the means cover
        print(f"surgifuse eval: warning: {line}", file=sys.stderr)

    results = evaluate(
        args.data_dir, args.engines, align=args.align, limit=args.limit, border=args.border,
        no_reference=args.no_reference, max_side=args.max_side, on_fused=on_fused, progress=progress, warn=warn,
    )
    print(report.format_table(results))
    if args.json_path:
        report.write_json(args.json_path, results)
        print(f"results: {args.json_path}")
    if figure_dir is not None:
        print(f"figures: {figure_dir} ({len(written)} PNG)")
    return 0
