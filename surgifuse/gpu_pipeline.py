"""The GPU path: frames go to the device once; the focus measure and the Fusion Network run there
with no host round trip between them (FMB paper 000 eqs. 1-2, then the FN).

Two back-ends for the FN, the same weights: ONNX Runtime's CUDA (or TensorRT) provider through IO
binding, where onnxruntime-gpu is installed; PyTorch CUDA otherwise. The FMB on the device is
``learning.torch_focus_measure.focus_measure_torch``, which equals the C++ core bit for bit (tested
on the CPU in tests/test_bench.py). The classical engine's CUDA path is ``_core.focus_measure_cuda``.

NOT RUN in this task: no GPU was lent to it. Everything here that touches a device is written
against the documented ONNX Runtime / PyTorch APIs and is exercised by the ``gpu``-marked tests,
which skip without a device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from surgifuse.errors import InputError


class CudaUnavailableError(RuntimeError):
    """Raised where a CUDA path is asked for on a machine without a usable CUDA device."""


def cuda_device_count() -> int:
    """CUDA devices the C++ core can see (0 without a CUDA build or a device)."""
    try:
        from surgifuse import _core
    except ImportError:
        return 0
    probe = getattr(_core, "cuda_device_count", None)
    try:
        return int(probe()) if probe else 0
    except Exception:  # a CUDA build on a machine without a driver reports through an exception
        return 0


def ort_cuda_available() -> bool:
    """True when ONNX Runtime offers the CUDA provider (onnxruntime-gpu is installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def gpu_available() -> bool:
    """True when a CUDA device is usable by the core (classical path) or by PyTorch (FN fallback).

    PyTorch is consulted only if it is already imported, so that this probe stays cheap and the
    service never imports torch.
    """
    if cuda_device_count() > 0:
        return True
    import sys

    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def require_cuda() -> None:
    """``CudaUnavailableError`` with what was probed, unless a CUDA device is usable."""
    if gpu_available():
        return
    try:
        from surgifuse import _core

        built = bool(getattr(_core, "built_with_cuda", False))
    except ImportError:
        built = False
    raise CudaUnavailableError(
        "no CUDA device: the C++ core "
        + ("was built with CUDA but sees no device" if built else "was built without CUDA")
        + ("; ONNX Runtime has the CUDA provider" if ort_cuda_available() else "; ONNX Runtime has no CUDA provider (install onnxruntime-gpu)")
        + ". Run the GPU figures on a CUDA workstation: surgifuse bench --device cuda --size 1080p --k 5"
    )


def _torch_cuda():
    import torch

    if not torch.cuda.is_available():
        raise CudaUnavailableError("no CUDA device visible to PyTorch")
    return torch


class FusionNetCuda:
    """The Fusion Network on the GPU: upload once, FMB on the device, encoder per frame, fusion over K.

    Parameters
    ----------
    model : str, keyword-only
        The FN sidecar name or path (as ``FusionNetEngine``).
    backend : {"auto", "ort", "torch"}, keyword-only
        "ort": ONNX Runtime CUDA with IO binding (needs onnxruntime-gpu); "torch": PyTorch CUDA with
        the same weights, from the training checkpoint the ONNX graphs were exported from;
        "auto": ort when available, else torch.
    checkpoint : str, keyword-only
        The training checkpoint (``best.pt``) for the torch back-end.

    Notes
    -----
    ``prepare(frame)`` returns the encoder features as a device-resident value (an ``OrtValue`` or
    a CUDA tensor); ``fuse(prepared)`` returns the fused uint8 image on the host. The only
    host<->device copies per streaming step are the new frame in and the fused image out.
    """

    def __init__(self, *, model: str = "fusion_net", backend: str = "auto", checkpoint: str | None = None) -> None:
        if backend not in ("auto", "ort", "torch"):
            raise InputError(f"backend must be 'auto', 'ort' or 'torch', got {backend!r}")
        from surgifuse.engines.fusion_net import fmb_settings
        from surgifuse.engines.onnx_models import load_sidecar

        sidecar, folder = load_sidecar(model)
        self.fmb_mode, self.fmb_params, self.fmb_scale = fmb_settings(sidecar, model)
        self.torch = _torch_cuda()
        self.device = self.torch.device("cuda", 0)
        if backend == "auto":
            backend = "ort" if ort_cuda_available() else "torch"
        self.backend = backend
        if backend == "ort":
            if not ort_cuda_available():
                raise CudaUnavailableError("backend 'ort' needs onnxruntime-gpu (CUDAExecutionProvider)")
            from surgifuse.engines.onnx_models import open_session

            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            self.encoder = open_session(folder / sidecar["graphs"]["encoder"], providers=providers)
            self.fuser = open_session(folder / sidecar["graphs"]["fuse"], providers=providers)
        else:
            if checkpoint is None:
                raise InputError("the PyTorch CUDA back-end needs checkpoint= (the training checkpoint); "
                                 "install onnxruntime-gpu to use the ONNX graphs instead")
            from surgifuse.learning.train import load_checkpoint

            net, _ = load_checkpoint(checkpoint, map_location=self.device)
            net = net.to(self.device)
            # Same modules the ONNX graphs were exported from (learning/export.py).
            self.encoder = net.encoder
            self.fuser = lambda feats, frames: net.fuse(feats.unsqueeze(0), frames.unsqueeze(0))

    def upload(self, frame: np.ndarray):
        """HxWx3 uint8 RGB -> (1, 3, H, W) float32 0..255 on the device (the one upload per frame)."""
        t = self.torch.from_numpy(np.ascontiguousarray(frame)).to(self.device, non_blocking=True)
        return t.permute(2, 0, 1).unsqueeze(0).float()

    def network_input(self, frame_255):
        """Device tensor (1, 3 + FMB channels, H, W): RGB / 255 and FM / fmb_scale, computed on the device."""
        from surgifuse.learning.torch_focus_measure import focus_measure_torch, grey_torch

        parts = [frame_255 / 255.0]
        if self.fmb_mode == "fmb3":
            parts.append(focus_measure_torch(frame_255, **self.fmb_params) / self.fmb_scale)
        elif self.fmb_mode == "fmb1":
            parts.append(focus_measure_torch(grey_torch(frame_255), **self.fmb_params) / self.fmb_scale)
        return self.torch.cat(parts, dim=1).contiguous()

    def prepare(self, frame: np.ndarray):
        x = self.network_input(self.upload(frame))
        if self.backend == "torch":
            with self.torch.no_grad():
                return x[:, :3], self.encoder(x)
        return x[:, :3], self._ort_run(self.encoder, {"x": x})[0]

    def fuse(self, prepared: Sequence) -> np.ndarray:
        rgb = self.torch.cat([p[0] for p in prepared], dim=0).contiguous()
        if self.backend == "torch":
            with self.torch.no_grad():
                feats = self.torch.cat([p[1] for p in prepared], dim=0)
                image = self.fuser(feats, rgb)[0]
        else:
            feats = self.torch.cat([self._as_tensor(p[1]) for p in prepared], dim=0).contiguous()
            image = self._as_tensor(self._ort_run(self.fuser, {"features": feats, "frames": rgb})[0])
        out = (image[0].clamp(0, 1) * 255).round().to(self.torch.uint8).permute(1, 2, 0)
        return out.contiguous().cpu().numpy()  # the one download per step

    def _ort_run(self, session, feeds: dict):
        """IO binding: inputs bound from CUDA tensors by pointer, outputs left on the device."""
        binding = session.io_binding()
        for name, tensor in feeds.items():
            binding.bind_input(name=name, device_type="cuda", device_id=0, element_type=np.float32,
                               shape=tuple(tensor.shape), buffer_ptr=tensor.data_ptr())
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", 0)
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    def _as_tensor(self, value):
        if isinstance(value, self.torch.Tensor):
            return value
        # OrtValue on the device -> torch tensor without a copy, through DLPack.
        return self.torch.utils.dlpack.from_dlpack(value.to_dlpack())
