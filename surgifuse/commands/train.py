"""``surgifuse train {autoencoder,fn}``: train a learned model on synthetic focal stacks (needs torch).

Examples::

    surgifuse train autoencoder --generate 192 --out runs/ae --time-limit 600
    surgifuse train fn --generate 192 --perceptual-encoder runs/ae/best.pt --out runs/fn --time-limit 900
"""

from __future__ import annotations

import argparse
import json

from surgifuse.errors import InputError


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=["autoencoder", "fn"], help="which model to train")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder of stacks written by `surgifuse synth` (this or --generate is required)")
    src.add_argument("--generate", type=int, metavar="N",
                     help="generate N training stacks in memory instead (this or --data is required)")
    parser.add_argument("--data-seed", type=int, default=20000,
                        help="first seed of generated training stacks (default 20000)")
    parser.add_argument("--val-data",
                        help="folder of validation stacks, for best.pt (default: generated, see --val-generate)")
    parser.add_argument("--val-generate", type=int, default=8, metavar="N",
                        help="generated validation stacks, seeds 30000+ (default 8; 0: none)")
    parser.add_argument("--synth-size", type=int, default=192,
                        help="height and width of generated stacks (default 192)")
    parser.add_argument("--k", type=int, default=5, help="frames per generated stack (default 5)")
    parser.add_argument("--synth-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra generate_stack option, e.g. noise=0.01 (repeatable; default: none)")
    parser.add_argument("--randomize", action="store_true",
                        help="domain randomisation of generated stacks: each seed draws its own numerical aperture, "
                             "noise, JPEG, breathing and jitter (--synth-option values win)")
    parser.add_argument("--align-frames", action="store_true",
                        help="align every stack to its middle frame first, as `surgifuse eval` does (default: off)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.csv, summary.json (required)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop after this much training time (default: no limit, --steps only)")
    parser.add_argument("--batch-size", type=int, default=4, help="crops per step (default 4)")
    parser.add_argument("--crop", type=int, default=96, help="side of the square training crops, px (default 96)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4, as paper 000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and crop sampling (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (default auto)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="steps between checkpoints: last.pt, and a validation for best.pt (default 200)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (default: start afresh)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress on stderr (default: a bar on a terminal, otherwise a line every 10 s)")
    fn = parser.add_argument_group("Fusion Network")
    fn.add_argument("--losses", default="aif,perceptual,edge,identity",
                    help="comma-separated subset of aif,perceptual,edge,identity (default: all four)")
    fn.add_argument("--perceptual-encoder",
                    help="autoencoder checkpoint whose encoder is the perceptual loss's feature extractor "
                         "(default: none; needed by the perceptual loss)")
    fn.add_argument("--fmb", choices=["fmb3", "fmb1", "none"], default="fmb3",
                    help="Focus Measure Block input: per RGB channel, on grey, or none (default fmb3)")
    fn.add_argument("--output", choices=["blend", "weights", "rgb"], default="blend",
                    help="blend weights + residual (ours), blend weights alone (no residual: a convex blend of the "
                         "frames), or direct RGB (paper) (default blend)")
    fn.add_argument("--encoder-width", type=int, default=16,
                    help="feature channels of the per-frame encoder (default 16)")
    fn.add_argument("--refine-width", type=int, default=32,
                    help="channels of the residual refinement blocks (default 32)")
    fn.add_argument("--refine-downsample", type=int, choices=[1, 2, 4], default=4,
                    help="refinement blocks run at 1/N resolution; 1 is the paper's full resolution (default 4)")
    fn.add_argument("--res-blocks", type=int, default=9, help="residual refinement blocks (default 9, as the paper)")


def run(args: argparse.Namespace) -> int:
    from surgifuse.learning.config import DataConfig, TrainConfig
    from surgifuse.learning.train import train

    options = {}
    for item in args.synth_option:
        if "=" not in item:
            raise InputError(f"--synth-option must be KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        options[key] = _parse_value(value)
    common = dict(crop=args.crop, k=args.k, synth_height=args.synth_size, synth_width=args.synth_size, synth_options=options,
                  align=args.align_frames, randomize=args.randomize)
    if args.data:
        data = DataConfig(data_dir=args.data, count=10**9, **common)
    else:
        if args.generate < 1:
            raise InputError(f"--generate must be >= 1, got {args.generate}")
        data = DataConfig(seed=args.data_seed, count=args.generate, **common)
    val = None
    if args.val_data:
        val = DataConfig(data_dir=args.val_data, count=10**9, **{**common, "seed": 30000})
    elif args.val_generate > 0:
        val = DataConfig(seed=30000, count=args.val_generate, **common)
    model_config = None
    if args.model == "fn":
        model_config = dict(
            fmb=args.fmb, output=args.output, encoder_width=args.encoder_width, refine_width=args.refine_width,
            refine_downsample=args.refine_downsample, res_blocks=args.res_blocks,
        )
    losses = tuple(t.strip() for t in args.losses.split(",") if t.strip()) if args.model == "fn" else ()
    tc = TrainConfig(
        model=args.model, out_dir=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        device=args.device, threads=args.threads, time_limit_s=args.time_limit, checkpoint_every=args.checkpoint_every,
        losses=losses, perceptual_encoder=args.perceptual_encoder,
    )
    summary = train(tc, data, model_config, val_config=val, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
