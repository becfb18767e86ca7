"""Engine ``autoencoder``: self-supervised autoencoder features for focal stacking (paper 003).

``prepare_frame`` runs the exported encoder + feature-gradient graph once per frame (the live
buffer caches the HxW activity map). ``fuse_prepared`` makes the per-pixel arg-max decision with
the classical engine's own decision code (``surgifuse.decision.fuse_stack``: arg-max, majority filter for
consistency, boundary blend), the activity maps quantised to uint32 for it, and takes each pixel
from the chosen frame. ONNX Runtime only, no torch import.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from surgifuse.decision import MAX_RADIUS, MAX_STACK_SIZE
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
from .spec import EngineLimits, EngineOption, EngineSpec

# Activity values (mean absolute feature gradient of [0, 1] images) are below ~10; 2^20 keeps
# ~1e-6 resolution and cannot overflow uint32.
ACTIVITY_SCALE = float(2**20)


SPEC = EngineSpec(
    name="autoencoder",
    summary="self-supervised autoencoder feature gradients (paper 003) with the classical decision",
    options=(
        model_option("autoencoder", "<model>_activity.onnx"),
        EngineOption("filter_radius", int, 3, "majority filter of the labels over (2r+1)^2 px (0: off)",
                     minimum=0, maximum=MAX_RADIUS),
        EngineOption("blend_radius", int, 2, "label-fraction blend at boundaries over (2r+1)^2 px (0: hard seams)",
                     minimum=0, maximum=MAX_RADIUS),
        DEVICE_OPTION,
        THREADS_OPTION,
    ),
    # The classical decision: a tie in activity goes to the earlier frame.
    limits=EngineLimits(max_k=MAX_STACK_SIZE, dtypes=("uint8",), channels=(1, 3), order_invariant=False),
    runtime_options=frozenset({"device", "threads"}),
)


class AutoencoderEngine(Engine):
    """Fusion by the arg-max of autoencoder feature gradients (paper 003).

    Options (keyword-only) are declared in ``SPEC``: the model, ``device`` (auto, cpu, cuda: ONNX
    Runtime's execution providers) and ``threads`` (intra-op threads on the CPU, 0: its default).
    """

    name = "autoencoder"
    prepare_stage = "encoder"

    spec = SPEC

    def __init__(self, **options):
        o = SPEC.resolve(options)
        model, device, threads = o["model"], o["device"], o["threads"]
        self.model, self.device, self.threads = model, device, threads
        sidecar, folder = load_model_info(model, graph_suffix="_activity")
        if sidecar.get("kind") != "autoencoder":
            raise InputError(f"model {model!r} is a {sidecar.get('kind')!r} model, not an autoencoder", field="model")
        self.filter_radius = o["filter_radius"]
        self.blend_radius = o["blend_radius"]
        self.providers = choose_providers(device)
        self.on_gpu = self.providers[0] != "CPUExecutionProvider"
        self.session = open_session(folder / sidecar["graphs"]["activity"], providers=self.providers, threads=threads)
        self.model_info = sidecar

    def prepare_frame(self, frame: np.ndarray) -> np.ndarray:
        """HxW uint32 activity map (quantised feature gradient) of one uint8 frame."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise InputTypeError(f"the autoencoder engine takes uint8 frames, got {frame.dtype}")
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"the autoencoder engine takes HxW or HxWx3 frames, got shape {frame.shape}")
        x = (np.moveaxis(frame, 2, 0).astype(np.float32) / np.float32(255))[None]
        act = run_session(self.session, {"image": x}, on_gpu=self.on_gpu)[0][0, 0]
        return np.ascontiguousarray(np.clip(np.rint(act * ACTIVITY_SCALE), 0, 2**32 - 1).astype(np.uint32))

    def fuse_prepared(self, frames: Sequence[np.ndarray], prepared: Sequence[np.ndarray]) -> FusionResult:
        from surgifuse.decision import fuse_stack

        frames = validate_stack(frames)
        if len(prepared) != len(frames):
            raise InputError(f"got {len(frames)} frames but {len(prepared)} activity maps: they must match")
        t0 = time.perf_counter()
        d = fuse_stack(frames, [np.ascontiguousarray(p) for p in prepared], filter_radius=self.filter_radius, blend_radius=self.blend_radius)
        t1 = time.perf_counter()
        return FusionResult(image=d.image, depth_index=d.depth_index, confidence=d.confidence, timings={"decision": (t1 - t0) * 1e3})
