"""Export trained models to ONNX (dynamic K, height and width) and check ONNX Runtime against PyTorch.

Fusion Network, three graphs (the engine uses the first two; the third is the reference):
  ``<name>_encoder.onnx``  x (N, 3 + FMB, H, W) -> features (N, C, H, W): once per new frame
  ``<name>_fuse.onnx``     features (K, C, H, W), frames (K, 3, H, W) -> image (1, 3, H, W), weights (1, K, H, W)
  ``<name>.onnx``          x (K, 3 + FMB, H, W) -> image, weights: the whole stack in one graph
Autoencoder (paper 003): ``<name>_activity.onnx``  image (N, 3, H, W) -> activity (N, 1, H, W).
Each gets a ``<name>.json`` sidecar with the model config and the export check; the same JSON is
embedded in every graph's metadata (key "surgifuse"), so the .onnx files alone are enough.
Inputs are float32: RGB in [0, 1] and FM / fmb_scale, as ``FusionNet.network_input`` builds them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from surgifuse.errors import InputError

from .config import config_to_dict
from .models import Autoencoder, FeatureActivity, FusionNet

OPSET = 17


def output_paths(kind: str, out_dir: str | Path, name: str) -> list[Path]:
    """The files an export of a ``kind`` model ("fn" or "autoencoder") named ``name`` writes into
    ``out_dir``: its ONNX graphs, then the JSON sidecar."""
    out = Path(out_dir)
    if kind == "fn":
        graphs = [f"{name}_encoder.onnx", f"{name}_fuse.onnx", f"{name}.onnx"]
    elif kind == "autoencoder":
        graphs = [f"{name}_activity.onnx"]
    else:
        raise InputError(f"unknown model kind {kind!r}", field="kind", allowed="fn, autoencoder")
    return [out / g for g in graphs] + [out / f"{name}.json"]


def existing_outputs(kind: str, out_dir: str | Path, name: str) -> list[Path]:
    """Those of ``output_paths`` that already exist (an export would replace them)."""
    return [p for p in output_paths(kind, out_dir, name) if p.exists()]


def _refuse_overwrite(kind: str, out_dir: str | Path, name: str, overwrite: bool) -> None:
    # The shipped models live in models/, the default output folder: replacing one by accident
    # swaps the model every engine loads.
    existing = [] if overwrite else existing_outputs(kind, out_dir, name)
    if existing:
        raise InputError(f"would replace existing model files {', '.join(map(str, existing))}; pass overwrite=True",
                         file=str(existing[0]))


class _FuseGraph(nn.Module):
    """FuseRefine on one stack: (K, C, H, W), (K, 3, H, W) -> (1, 3, H, W), (1, K, H, W)."""

    def __init__(self, net: FusionNet):
        super().__init__()
        self.fuse = net.fuse

    def forward(self, features, frames):
        return self.fuse(features.unsqueeze(0), frames.unsqueeze(0))


class _WholeGraph(nn.Module):
    """Encoder + fuse on one stack of network inputs (K, 3 + FMB, H, W)."""

    def __init__(self, net: FusionNet):
        super().__init__()
        self.encoder = net.encoder
        self.fuse = net.fuse

    def forward(self, x):
        feats = self.encoder(x)
        return self.fuse(feats.unsqueeze(0), x[:, :3].unsqueeze(0))


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False,
        )


def embed_metadata(paths, sidecar: dict) -> None:
    """Store the sidecar in each graph's metadata (key "surgifuse"), so that an installed package
    that ships only the .onnx files still knows the model's configuration."""
    import onnx

    text = json.dumps(sidecar)
    for path in paths:
        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = "surgifuse", text
        onnx.save(model, str(path))


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def feeds_for(session, feeds: dict) -> dict:
    """Only the inputs a graph has: the "rgb" output's fuse graph does not read the frames, and the
    exporter drops unused inputs."""
    names = {i.name for i in session.get_inputs()}
    return {k: v for k, v in feeds.items() if k in names}


def random_network_input(net: FusionNet, k: int, h: int, w: int, *, seed: int) -> torch.Tensor:
    """(K, 3 + FMB, H, W) network input of a random 8-bit stack (blurred noise, so FM is not all zero)."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand((k, 3, h, w), generator=g)
    rgb = torch.round(torch.nn.functional.avg_pool2d(rgb, 3, 1, 1) * 255) / 255
    return net.network_input(rgb)


def export_fusion_net(net: FusionNet, out_dir: str | Path, *, name: str = "fusion_net", check_shapes=((5, 64, 80), (3, 37, 53), (1, 33, 32)), extra: dict | None = None, overwrite: bool = False) -> dict:
    """Write the three Fusion Network graphs and their sidecar; return the sidecar dict.

    Raises ``InputError``, before writing anything, when one of the files exists and ``overwrite``
    is false; ``RuntimeError`` when ONNX Runtime differs from PyTorch by 1e-4 or more on any of the
    random stacks of ``check_shapes`` (K, H, W).
    """
    _refuse_overwrite("fn", out_dir, name, overwrite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = net.eval().float()
    cfg = net.config
    x = random_network_input(net, 3, 40, 48, seed=0)
    with torch.no_grad():
        feats = net.encoder(x)
    *graph_paths, sidecar_path = output_paths("fn", out, name)
    paths = dict(zip(("encoder", "fuse", "whole"), graph_paths))
    _export(net.encoder, (x,), paths["encoder"], ["x"], ["features"], {"x": {0: "N", 2: "H", 3: "W"}, "features": {0: "N", 2: "H", 3: "W"}})
    _export(
        _FuseGraph(net), (feats, x[:, :3]), paths["fuse"], ["features", "frames"], ["image", "weights"],
        {"features": {0: "K", 2: "H", 3: "W"}, "frames": {0: "K", 2: "H", 3: "W"}, "image": {2: "H", 3: "W"}, "weights": {1: "K", 2: "H", 3: "W"}},
    )
    _export(_WholeGraph(net), (x,), paths["whole"], ["x"], ["image", "weights"], {"x": {0: "K", 2: "H", 3: "W"}, "image": {2: "H", 3: "W"}, "weights": {1: "K", 2: "H", 3: "W"}})

    enc, fuse, whole = (_session(paths[k]) for k in ("encoder", "fuse", "whole"))
    worst = 0.0
    for i, (k, h, w) in enumerate(check_shapes):
        xi = random_network_input(net, k, h, w, seed=100 + i)
        with torch.no_grad():
            ref_img, ref_w = net.fuse(net.encoder(xi).unsqueeze(0), xi[:, :3].unsqueeze(0))
        xn = xi.numpy()
        f = enc.run(None, {"x": xn})[0]
        img_s, w_s = fuse.run(None, feeds_for(fuse, {"features": f, "frames": xn[:, :3]}))
        img_w, w_w = whole.run(None, {"x": xn})
        for got, ref in ((img_s, ref_img), (w_s, ref_w), (img_w, ref_img), (w_w, ref_w)):
            worst = max(worst, float(np.abs(got - ref.numpy()).max()))
    if not worst < 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {worst:.3g} (limit 1e-4)")
    sidecar = {
        "kind": "fn",
        "model_config": config_to_dict(cfg),
        "graphs": {k: p.name for k, p in paths.items()},
        "opset": OPSET,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "export_check": {"shapes_kHW": [list(s) for s in check_shapes], "max_abs_diff": worst},
        **(extra or {}),
    }
    sidecar_path.write_text(json.dumps(sidecar, indent=2))
    embed_metadata(paths.values(), sidecar)
    return sidecar


def export_autoencoder(model: Autoencoder, out_dir: str | Path, *, name: str = "autoencoder", window: int = 2, check_shapes=((2, 64, 80), (1, 37, 53)), extra: dict | None = None, overwrite: bool = False) -> dict:
    """Write ``<name>_activity.onnx`` (encoder + feature gradient, paper 003) and its sidecar.

    Raises ``InputError``, before writing anything, when one of the files exists and ``overwrite``
    is false.
    """
    _refuse_overwrite("autoencoder", out_dir, name, overwrite)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    act = FeatureActivity(model.encoder, window=window).eval()
    path, sidecar_path = output_paths("autoencoder", out, name)
    _export(act, (torch.rand(1, 3, 40, 48),), path, ["image"], ["activity"], {"image": {0: "N", 2: "H", 3: "W"}, "activity": {0: "N", 2: "H", 3: "W"}})
    sess = _session(path)
    worst = 0.0
    g = torch.Generator().manual_seed(7)
    for n, h, w in check_shapes:
        xi = torch.rand((n, 3, h, w), generator=g)
        with torch.no_grad():
            ref = act(xi).numpy()
        worst = max(worst, float(np.abs(sess.run(None, {"image": xi.numpy()})[0] - ref).max()))
    if not worst < 1e-4:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {worst:.3g} (limit 1e-4)")
    sidecar = {
        "kind": "autoencoder",
        "model_config": config_to_dict(model.config),
        "activity_window": window,
        "graphs": {"activity": path.name},
        "opset": OPSET,
        "parameters": int(sum(p.numel() for p in model.encoder.parameters())),
        "export_check": {"shapes_NHW": [list(s) for s in check_shapes], "max_abs_diff": worst},
        **(extra or {}),
    }
    sidecar_path.write_text(json.dumps(sidecar, indent=2))
    embed_metadata([path], sidecar)
    return sidecar
