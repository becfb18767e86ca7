"""Engine ``fn``: the Fusion Network (paper 000) on ONNX Runtime, streaming.

``prepare_frame`` computes the frame's FMB with the C++ core (``_core.focus_measure``, the same
definition the network was trained on) and runs the per-frame encoder graph once; the live buffer
caches the features. ``fuse_prepared`` runs the max + refinement graph on the K cached feature
maps, so a new frame costs one encoder pass, not K. CPU by default; CUDA / TensorRT execution
providers (with IO binding) when onnxruntime-gpu is installed. No torch import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

from .base import Engine, FusionResult, validate_stack
from .onnx_models import (
    DEVICE_OPTION,
    THREADS_OPTION,
    choose_providers,
    load_model_info,
    model_option,
    open_session,
    run_session,
)
from .spec import EngineLimits, EngineSpec


def fmb_settings(sidecar: dict, model: str) -> tuple[str, dict, float]:
    """The FMB input of a Fusion Network model from its sidecar: ``(mode, focus-measure options,
    scale)``; ``ValueError`` when the model is not a Fusion Network."""
    if sidecar.get("kind") != "fn":
        raise InputError(f"model {model!r} is a {sidecar.get('kind')!r} model, not a Fusion Network")
    cfg = sidecar["model_config"]
    options = dict(step=int(cfg["fmb_step"]), threshold=int(cfg["fmb_threshold"]), window=int(cfg["fmb_window"]))
    return cfg["fmb"], options, float(cfg["fmb_scale"])


@dataclass
class PreparedFrame:
    """What the buffer caches per frame: encoder features (C, H, W) and the frame as float (3, H, W)."""

    features: np.ndarray
    rgb: np.ndarray


def _as_rgb_uint8(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise InputTypeError(f"the fn engine takes uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"the fn engine takes HxW or HxWx3 frames, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


SPEC = EngineSpec(
    name="fn",
    summary="the Fusion Network of paper 000 (ONNX Runtime): per-frame encoder, max over the stack, refinement",
    options=(
        model_option("fusion_net", "<model>_encoder.onnx and <model>_fuse.onnx"),
        DEVICE_OPTION,
        THREADS_OPTION,
    ),
    # The network takes 8-bit RGB (it was trained on it); the max over K features is symmetric in
    # the frames, and the two stride-2 convolutions round odd sizes up.
    limits=EngineLimits(max_k=31, dtypes=("uint8",), channels=(1, 3)),
    runtime_options=frozenset({"device", "threads"}),
)


class FusionNetEngine(Engine):
    """The Fusion Network engine.

    Options (keyword-only) are declared in ``SPEC``: the model, ``device`` (auto, cpu, cuda: ONNX
    Runtime's execution providers) and ``threads`` (intra-op threads on the CPU, 0: its default).

    Notes
    -----
    ``depth_index`` is the blend-weight average of the frame indices, ``confidence`` the largest
    blend weight rescaled so that 1/K (no preference) maps to 0.
    """

    name = "fn"
    prepare_stage = "encoder"
    spec = SPEC

    def __init__(self, **options):
        o = SPEC.resolve(options)
        model, device, threads = o["model"], o["device"], o["threads"]
        self.model, self.device, self.threads = model, device, threads
        sidecar, folder = load_model_info(model, graph_suffix="_encoder")
        self.fmb_mode, self.fmb_params, self.fmb_scale = fmb_settings(sidecar, model)
        self.providers = choose_providers(device)
        self.on_gpu = self.providers[0] != "CPUExecutionProvider"
        self.encoder = open_session(folder / sidecar["graphs"]["encoder"], providers=self.providers, threads=threads)
        self.fuser = open_session(folder / sidecar["graphs"]["fuse"], providers=self.providers, threads=threads)
        self.model_info = sidecar

    def network_input(self, frame: np.ndarray) -> np.ndarray:
        """(1, 3 + FMB channels, H, W) float32: RGB in [0, 1] then FM / fmb_scale (C++ FMB)."""
        rgb = _as_rgb_uint8(frame)
        parts = [np.moveaxis(rgb, 2, 0).astype(np.float32) / np.float32(255)]
        if self.fmb_mode == "fmb3":
            from surgifuse.focus_measure import focus_measure

            fm = focus_measure(rgb, **self.fmb_params)  # (H, W, 3) uint16, the C++ core
            parts.append(np.moveaxis(fm, 2, 0).astype(np.float32) / np.float32(self.fmb_scale))
        elif self.fmb_mode == "fmb1":
            from surgifuse.focus_measure import focus_map

            fm = focus_map(rgb, mode="fmb1", **self.fmb_params)  # (H, W) on the grey image
            parts.append(fm[None].astype(np.float32) / np.float32(self.fmb_scale))
        return np.concatenate(parts, axis=0)[None]

    def prepare_frame(self, frame: np.ndarray) -> PreparedFrame:
        x = self.network_input(frame)
        features = run_session(self.encoder, {"x": x}, on_gpu=self.on_gpu)[0]
        return PreparedFrame(features=features[0], rgb=np.ascontiguousarray(x[0, :3]))

    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared: Sequence[PreparedFrame]) -> FusionResult:
        frames = validate_stack(frames)
        if len(prepared) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(prepared)} prepared entries: they must match")
        for i, p in enumerate(prepared):
            if not isinstance(p, PreparedFrame):
                raise InputTypeError(f"prepared[{i}] is {type(p).__name__}, not what FusionNetEngine.prepare_frame returns")
            if p.rgb.shape[1:] != frames[0].shape[:2]:
                raise InputError(f"prepared[{i}] is {p.rgb.shape[1:]}, frames are {frames[0].shape[:2]}")
        t0 = time.perf_counter()
        feats = np.stack([p.features for p in prepared])  # K x (C, H, W) -> (K, C, H, W)
        rgb = np.stack([p.rgb for p in prepared])
        image, weights = run_session(self.fuser, {"features": feats, "frames": rgb}, on_gpu=self.on_gpu)
        t1 = time.perf_counter()
        img = np.moveaxis(image[0], 0, 2)  # (3, H, W) -> (H, W, 3)
        if frames[0].ndim == 2:
            img = img.mean(axis=2)  # grey in (fed as three equal channels), grey out
        out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        w = weights[0]  # (K, H, W)
        k = w.shape[0]
        depth = np.tensordot(np.arange(k, dtype=np.float32), w, axes=1).astype(np.float32)
        conf = np.ones_like(depth) if k == 1 else ((w.max(axis=0) - 1.0 / k) / (1.0 - 1.0 / k)).astype(np.float32)
        t2 = time.perf_counter()
        return FusionResult(
            image=out, depth_index=np.clip(depth, 0, k - 1), confidence=np.clip(conf, 0, 1),
            timings={"fuse_refine": (t1 - t0) * 1e3, "postprocess": (t2 - t1) * 1e3},
        )
