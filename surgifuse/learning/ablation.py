"""The ablation of paper 000 (its Table 1) on synthetic held-out stacks, with equal training budgets.

Trains each variant for the same number of steps on the same data and seed, exports its
validation-best checkpoint to ONNX and scores it with ``surgifuse.evaluation.evaluate`` next to
the classical and autoencoder engines and the references (best single frame, depth oracle).

    python -m surgifuse.learning.ablation --data DIR --val-data DIR --test DIR --runs DIR \\
        --perceptual-encoder AE.pt --steps 400
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from surgifuse.errors import InputError

# Paper 000 Table 1. The baseline's losses are the paper's general ones (L_aif + L_perceptual).
VARIANTS = {
    "FN": dict(fmb="none", losses=("aif", "perceptual")),
    "FN+FMB1": dict(fmb="fmb1", losses=("aif", "perceptual")),
    "FN+FMB3": dict(fmb="fmb3", losses=("aif", "perceptual")),
    "FN+FMB3+Edge": dict(fmb="fmb3", losses=("aif", "perceptual", "edge")),
    "FN+FMB3+Identity": dict(fmb="fmb3", losses=("aif", "perceptual", "identity")),
    "FN+FMB3+Edge+Identity": dict(fmb="fmb3", losses=("aif", "perceptual", "edge", "identity")),
}


def slug(name: str) -> str:
    return name.lower().replace("+", "_")


def run_variant(name: str, args, model_extra: dict) -> dict:
    from .config import DataConfig, TrainConfig
    from .export import export_fusion_net
    from .train import load_checkpoint, train

    spec = VARIANTS[name]
    out = Path(args.runs) / slug(name)
    data = DataConfig(data_dir=args.data, count=10**9, crop=args.crop)
    val = DataConfig(data_dir=args.val_data, count=10**9, crop=args.crop, seed=30000)
    tc = TrainConfig(
        model="fn", out_dir=str(out), steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        threads=args.threads, checkpoint_every=args.checkpoint_every, losses=spec["losses"],
        perceptual_encoder=args.perceptual_encoder,
    )
    summary_path = out / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text())["steps"] >= args.steps:
        summary = json.loads(summary_path.read_text())
    else:
        summary = train(tc, data, {"fmb": spec["fmb"], **model_extra}, val_config=val, resume=True, progress=False)
    model, ckpt = load_checkpoint(out / "best.pt")
    export_fusion_net(model, out / "onnx", name="fusion_net", extra={"training": {"step": ckpt["step"], "variant": name}},
                      overwrite=True)  # a rerun re-exports its own variant
    return {"summary": summary, "best_step": ckpt["step"], "model": str(out / "onnx" / "fusion_net.json")}


def evaluate_engine(test_dir: str, engine: str, options: dict | None = None) -> dict:
    from surgifuse.evaluation.run import evaluate

    res = evaluate(test_dir, [engine], engine_options={engine: options or {}}, no_reference=False)
    return res["aggregates"]


def paper003_mae(test_dir: str, engines=("classical", "autoencoder"), *, border: int = 8) -> dict:
    """Paper 003's protocol: mean absolute error between fused image and truth, on a [0, 1] scale
    (8 px border excluded, as our PSNR/SSIM), averaged over the stacks (six-image stacks there)."""
    import numpy as np

    from surgifuse.evaluation.run import evaluate

    errors: dict[str, list[float]] = {}

    def on_fused(stack, name, image, scores):
        if stack.gt is None:
            return
        b = border
        diff = np.abs(image.astype(np.float64) - stack.gt.astype(np.float64))[b:-b, b:-b] / 255.0
        errors.setdefault(name, []).append(float(diff.mean()))

    res = evaluate(test_dir, list(engines), engine_options={e: {"threads": 2} for e in engines if e in ("fn", "autoencoder")},
                   no_reference=False, on_fused=on_fused)
    return {name: {"mae": float(np.mean(v)), "n_stacks": len(v), "psnr": res["aggregates"].get(name, {}).get("psnr")}
            for name, v in errors.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--val-data", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--perceptual-encoder", required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--output", choices=["blend", "weights", "rgb"], default="blend")
    p.add_argument("--baselines", default="classical,autoencoder", help="engines scored beside the variants")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results_path = runs / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name not in VARIANTS:
            raise InputError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        t0 = time.time()
        info = run_variant(name, args, {"output": args.output})
        agg = evaluate_engine(args.test, "fn", {"model": info["model"], "threads": args.threads})
        results[name] = {**info, "test": agg["fn"], "references": {k: v for k, v in agg.items() if k != "fn"}, "wall_s": round(time.time() - t0, 1)}
        results_path.write_text(json.dumps(results, indent=2, default=str))
        print(f"{name}: PSNR {agg['fn']['psnr']:.2f} SSIM {agg['fn']['ssim']:.4f} (best step {info['best_step']})", flush=True)
    for engine in [e.strip() for e in args.baselines.split(",") if e.strip()]:
        if f"engine:{engine}" in results:
            continue
        agg = evaluate_engine(args.test, engine, {"threads": args.threads} if engine in ("fn", "autoencoder") else {})
        results[f"engine:{engine}"] = {"test": agg[engine], "references": {k: v for k, v in agg.items() if k != engine}}
        results_path.write_text(json.dumps(results, indent=2, default=str))
        print(f"{engine}: PSNR {agg[engine]['psnr']:.2f} SSIM {agg[engine]['ssim']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
