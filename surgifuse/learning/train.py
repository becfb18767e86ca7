"""Training loop for the autoencoder (paper 003) and the Fusion Network (paper 000).

Adam (paper 000: lr 1e-4), fixed seeds, CPU by default and CUDA when present, progress
(``surgifuse.progress``), a CSV metrics log, checkpoints (``last.pt`` every ``checkpoint_every``
steps, ``best.pt`` by validation PSNR) and resume from ``last.pt``. Budgets are in steps and/or
wall-clock seconds.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from surgifuse.errors import InputError
from surgifuse.progress import progress_bar

from .config import AutoencoderConfig, DataConfig, FusionNetConfig, TrainConfig, config_from_dict, config_to_dict
from .data import CropSampler, load_stacks
from .losses import FusionLoss, ReconstructionLoss
from .models import Autoencoder, FusionNet


def pick_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when present, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(kind: str, model_config: dict | None = None) -> torch.nn.Module:
    """A fresh "fn" or "autoencoder" model from a config dict (missing keys take their defaults)."""
    if kind == "fn":
        return FusionNet(config_from_dict(FusionNetConfig, model_config or {}))
    if kind == "autoencoder":
        return Autoencoder(config_from_dict(AutoencoderConfig, model_config or {}))
    raise InputError(f"model must be 'fn' or 'autoencoder', got {kind!r}")


def load_checkpoint(path: str | Path, *, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, checkpoint dict) from a checkpoint written by ``train``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        raise InputError(f"{path} is not a SurgiFuse checkpoint (no 'kind')")
    model = build_model(ckpt["kind"], ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def load_feature_extractor(path: str | Path) -> torch.nn.Module:
    """The encoder of a trained autoencoder checkpoint: the perceptual loss's feature extractor."""
    model, ckpt = load_checkpoint(path)
    if ckpt["kind"] != "autoencoder":
        raise InputError(f"{path} holds a {ckpt['kind']!r} model; the perceptual loss needs an autoencoder checkpoint")
    return model.encoder


def _psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    mse = float(((pred.clamp(0, 1) - target) ** 2).mean())
    return 99.0 if mse <= 0 else 10 * math.log10(1.0 / mse)


def train(
    train_config: TrainConfig,
    data_config: DataConfig,
    model_config: dict | None = None,
    *,
    val_config: DataConfig | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train one model; returns a summary dict (steps, seconds, last losses, best validation PSNR).

    Writes ``out_dir/metrics.csv``, ``out_dir/last.pt``, ``out_dir/best.pt`` and
    ``out_dir/summary.json``. With ``resume`` and an existing ``last.pt``, training continues
    from it (model, optimiser, step, elapsed time and random states).
    """
    tc = train_config
    out = Path(tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, int(tc.threads)))
    seed_everything(tc.seed)
    device = pick_device(tc.device)

    if tc.model == "fn" and "perceptual" in tc.losses and tc.perceptual_encoder is None:
        raise InputError("the perceptual loss needs --perceptual-encoder (a trained autoencoder checkpoint)")
    model = build_model(tc.model, model_config).to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tc.lr)
    step, elapsed, best = 0, 0.0, -math.inf
    sampler = CropSampler(load_stacks(data_config), crop=data_config.crop, seed=tc.seed + 1, canny_high=data_config.canny_high)
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location=device, weights_only=False)
        if ckpt["kind"] != tc.model:
            raise InputError(f"{last} holds a {ckpt['kind']!r} model, not {tc.model!r}")
        model = build_model(tc.model, ckpt["model_config"]).to(device)
        model.load_state_dict(ckpt["model"])
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tc.lr)
        opt.load_state_dict(ckpt["optimizer"])
        for group in opt.param_groups:  # the optimiser state resumes, the learning rate is this run's
            group["lr"] = tc.lr
        step, elapsed, best = ckpt["step"], ckpt["elapsed_s"], ckpt.get("best_val_psnr", -math.inf)
        if ckpt.get("data_config") != config_to_dict(data_config):
            best = -math.inf  # new data (e.g. aligned stacks): the old validation score does not compare
        torch.set_rng_state(ckpt["rng"]["torch"])
        sampler.rng.bit_generator.state = ckpt["rng"]["sampler"]

    if tc.model == "fn":
        if "perceptual" in tc.losses and tc.perceptual_encoder is None:
            raise InputError("the perceptual loss needs --perceptual-encoder (a trained autoencoder checkpoint)")
        extractor = load_feature_extractor(tc.perceptual_encoder) if "perceptual" in tc.losses else None
        criterion = FusionLoss(tc.losses, feature_extractor=extractor).to(device)
    else:
        criterion = ReconstructionLoss(ssim_weight=model.config.ssim_weight).to(device)

    val_batches = None
    if val_config is not None:
        val_sampler = CropSampler(load_stacks(val_config), crop=val_config.crop, seed=val_config.seed, canny_high=val_config.canny_high)
        val_batches = [val_sampler.batch(tc.batch_size) for _ in range(4)]

    def validate() -> float:
        model.eval()
        scores = []
        with torch.no_grad():
            for b in val_batches:
                if tc.model == "fn":
                    pred = model(b["frames"].to(device))
                    target = b["gt"].to(device)
                else:
                    target = b["gt"].to(device)
                    pred = model(target)
                scores.append(_psnr(pred, target))
        model.train()
        return float(np.mean(scores))

    def save(path: Path) -> None:
        torch.save(
            {
                "kind": tc.model,
                "model_config": config_to_dict(model.config),
                "train_config": config_to_dict(tc),
                "data_config": config_to_dict(data_config),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "elapsed_s": elapsed,
                "best_val_psnr": best,
                "rng": {"torch": torch.get_rng_state(), "sampler": sampler.rng.bit_generator.state},
            },
            path,
        )

    log_path = out / "metrics.csv"
    new_log = not (resume and log_path.is_file())
    log_file = open(log_path, "w" if new_log else "a", newline="")
    writer = None
    model.train()
    bar = progress_bar(total=tc.steps, initial=step, desc=f"train {tc.model}", unit="step", enabled=progress)
    parts: dict[str, float] = {}
    loss_value = float("nan")
    started = time.perf_counter() - elapsed
    try:
        while step < tc.steps and (tc.time_limit_s is None or elapsed < tc.time_limit_s):
            batch = {k: v.to(device) for k, v in sampler.batch(tc.batch_size).items()} if tc.model == "fn" else None
            if tc.model == "fn":
                pred = model(batch["frames"])
                loss, terms = criterion(model, pred, batch["gt"], batch["canny"])
            else:
                images = sampler.images(tc.batch_size).to(device)
                loss = criterion(model(images), images)
                terms = {"reconstruction": loss}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            elapsed = time.perf_counter() - started
            loss_value = float(loss.detach())
            parts = {k: float(v.detach()) for k, v in terms.items()}
            row = None
            if step % tc.log_every == 0 or step == tc.steps:
                row = {"step": step, "elapsed_s": round(elapsed, 2), "loss": loss_value, **parts}
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                if val_batches is not None:
                    v = validate()
                    row = {**(row or {"step": step, "elapsed_s": round(elapsed, 2), "loss": loss_value, **parts}), "val_psnr": v}
                    if v > best:
                        best = v
                        save(out / "best.pt")
                save(last)
            if row is not None:
                if writer is None:
                    fieldnames = ["step", "elapsed_s", "loss", *parts, "val_psnr"]
                    writer = csv.DictWriter(log_file, fieldnames=fieldnames, extrasaction="ignore")
                    if new_log:
                        writer.writeheader()
                writer.writerow(row)
                log_file.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        # A time-limited run ends between checkpoints: save where it stopped.
        if val_batches is not None and step % tc.checkpoint_every != 0:
            v = validate()
            if v > best:
                best = v
                save(out / "best.pt")
        save(last)
    finally:
        log_file.close()
        bar.close()
    summary = {
        "model": tc.model,
        "steps": step,
        "elapsed_s": round(elapsed, 1),
        "last_loss": loss_value,
        "last_terms": parts,
        "best_val_psnr": None if best == -math.inf else best,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
