"""What machine a benchmark ran on: CPU model and cores, memory, GPU and driver, library versions.

Latency figures mean nothing without the machine beside them; every JSON report carries this.
Nothing here imports torch (``importlib.metadata`` reads the installed version instead).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

_LIBRARIES = ("numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "torch", "psutil")


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_info() -> list[dict[str, str]]:
    """One entry per NVIDIA GPU (``name``, ``driver``, ``memory``) from ``nvidia-smi``; [] without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries on the hot path (None where not installed)."""
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import cv2  # the build actually loaded (can differ from the wheel metadata)

    versions["cv2"] = cv2.__version__
    from surgifuse import __version__

    versions["surgifuse"] = __version__
    return versions


def machine_info() -> dict:
    """Everything above, as one JSON-ready dict."""
    import psutil

    from surgifuse.bench.cuda import cuda_device_count

    try:
        from surgifuse import _core

        built = bool(getattr(_core, "built_with_cuda", False))
    except ImportError:
        built = False
    core = {"built_with_cuda": built, "cuda_device_count": cuda_device_count()}
    try:
        import onnxruntime

        ort_providers = list(onnxruntime.get_available_providers())
    except ImportError:
        ort_providers = []
    return {
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count() or 0,
        "cpu_physical_cores": psutil.cpu_count(logical=False) or 0,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpu_info(),
        "core": core,
        "onnxruntime_providers": ort_providers,
        "libraries": library_versions(),
    }
