"""Whether a CUDA device is usable, for ``surgifuse bench --device cuda`` and the machine report.

The engines run their own CUDA paths (the classical decision in the C++ CUDA core, the learned
engines through ONNX Runtime's CUDA provider); this module only answers, before any work starts,
whether there is a device to run them on, and says what was probed when there is none.
"""

from __future__ import annotations

import sys

__all__ = ["CudaUnavailableError", "cuda_device_count", "gpu_available", "ort_cuda_available", "require_cuda"]


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
    """True when a CUDA device is usable by the core or by PyTorch.

    PyTorch is consulted only if it is already imported, so that this probe stays cheap and never
    imports torch.
    """
    if cuda_device_count() > 0:
        return True
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
