"""``surgifuse export CHECKPOINT``: write a trained model as ONNX graphs (dynamic K, H, W) with a
JSON sidecar, after checking ONNX Runtime against PyTorch (max abs difference < 1e-4). Needs torch.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by `surgifuse train` (last.pt or best.pt)")
    parser.add_argument("--out", default="models", help="output folder (default: models)")
    parser.add_argument("--name", help="file name stem (default: fusion_net or autoencoder)")
    parser.add_argument("--activity-window", type=int, default=2, help="autoencoder: feature-gradient window radius (default 2)")


def run(args: argparse.Namespace) -> int:
    from surgifuse.learning.export import export_autoencoder, export_fusion_net
    from surgifuse.learning.train import load_checkpoint

    model, ckpt = load_checkpoint(args.checkpoint)
    extra = {"training": {"step": ckpt["step"], "elapsed_s": round(ckpt["elapsed_s"], 1), "train_config": ckpt["train_config"], "data_config": ckpt["data_config"]}}
    if ckpt["kind"] == "fn":
        sidecar = export_fusion_net(model, args.out, name=args.name or "fusion_net", extra=extra)
    else:
        sidecar = export_autoencoder(model, args.out, name=args.name or "autoencoder", window=args.activity_window, extra=extra)
    print(json.dumps({"graphs": sidecar["graphs"], "export_check": sidecar["export_check"]}, indent=2))
    return 0
