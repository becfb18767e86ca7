"""``surgifuse export CHECKPOINT``: write a trained model as ONNX graphs (dynamic K, H, W) with a
JSON sidecar, after checking ONNX Runtime against PyTorch (max abs difference < 1e-4). Needs torch.

The default output folder is ``models/``, where the shipped models live: an existing model file
is never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys

from surgifuse.errors import InputError

DEFAULT_NAMES = {"fn": "fusion_net", "autoencoder": "autoencoder"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `surgifuse train` (last.pt or best.pt)")
    parser.add_argument("--out", default="models", help="output folder (default: models, the shipped models' folder)")
    parser.add_argument("--name", help="file name stem (default: fusion_net or autoencoder, after the model kind)")
    parser.add_argument("--activity-window", type=int, default=2,
                        help="autoencoder: feature-gradient window radius (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace model files that already exist (default: refuse, naming them)")


def run(args: argparse.Namespace) -> int:
    from surgifuse.learning.export import existing_outputs, export_autoencoder, export_fusion_net, output_paths
    from surgifuse.learning.train import load_checkpoint

    # Reading the checkpoint tells the model kind, hence the files; nothing is written before the
    # check below.
    model, ckpt = load_checkpoint(args.checkpoint)
    kind = ckpt["kind"]
    name = args.name or DEFAULT_NAMES[kind]
    existing = [] if args.overwrite else existing_outputs(kind, args.out, name)
    if existing:
        raise InputError(f"model files already exist: {', '.join(map(str, existing))}; pass --overwrite to replace "
                         f"them, or choose another --out or --name", field="--out", file=str(existing[0]))
    extra = {"training": {"step": ckpt["step"], "elapsed_s": round(ckpt["elapsed_s"], 1), "train_config": ckpt["train_config"], "data_config": ckpt["data_config"]}}
    if kind == "fn":
        sidecar = export_fusion_net(model, args.out, name=name, extra=extra, overwrite=args.overwrite)
    else:
        sidecar = export_autoencoder(model, args.out, name=name, window=args.activity_window, extra=extra,
                                     overwrite=args.overwrite)
    written = [str(p) for p in output_paths(kind, args.out, name)]
    print(f"wrote {', '.join(written)}", file=sys.stderr)
    print(json.dumps({"written": written, "graphs": sidecar["graphs"], "export_check": sidecar["export_check"]},
                     indent=2))
    return 0
