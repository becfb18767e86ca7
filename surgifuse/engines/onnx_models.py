"""Finding shipped ONNX models and opening ONNX Runtime sessions on the best execution provider.

Shared by the learned engines (``fn``, ``autoencoder``); imports onnxruntime only, never torch.
Models live in the repository's ``models/`` (editable install) or the installed package's
``surgifuse/models/`` (the CMake install copies ``models/*.onnx`` there); ``SURGIFUSE_MODELS``
overrides both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from surgifuse.errors import InputError

from .spec import EngineOption

_PACKAGE = Path(__file__).resolve().parents[1]

#: The options every ONNX engine shares (declared once, used in each engine's ``SPEC``).
DEVICE_OPTION = EngineOption("device", str, "auto", "ONNX Runtime execution providers: auto (the GPU when "
                             "onnxruntime-gpu is installed), cpu or cuda", choices=("auto", "cpu", "cuda"))


def model_option(default: str, graphs: str) -> EngineOption:
    """The ``model`` option of an ONNX engine: a model name found in ``model_dirs()`` or a sidecar path."""
    return EngineOption("model", str, default, f"model name ({graphs} in models/ or SURGIFUSE_MODELS) or the "
                        "path of its .json sidecar")


THREADS_OPTION = EngineOption("threads", int, 2, "intra-op threads of ONNX Runtime on the CPU (0: its default)",
                              minimum=0, maximum=64)


def model_dirs() -> list[Path]:
    """Folders searched for model files, first match wins."""
    dirs = []
    if os.environ.get("SURGIFUSE_MODELS"):
        dirs.append(Path(os.environ["SURGIFUSE_MODELS"]))
    dirs += [_PACKAGE / "models", _PACKAGE.parent / "models"]
    return dirs


def find_model(filename: str | os.PathLike) -> Path:
    """The path of a model file: ``filename`` itself if it exists, else the first of ``model_dirs()``
    holding it. ``FileNotFoundError`` lists where it looked."""
    p = Path(filename)
    if p.is_file():
        return p
    for d in model_dirs():
        if (d / p.name).is_file():
            return d / p.name
    looked = ", ".join(str(d) for d in model_dirs())
    raise FileNotFoundError(f"model file {p.name!r} not found (looked in {looked}); train and export one with `surgifuse train` / `surgifuse export`")


def load_model_info(name: str, *, graph_suffix: str) -> tuple[dict, Path]:
    """A model's description and the folder of its graphs.

    ``name`` is a model name or a path to its ``<name>.json`` sidecar. Without a sidecar, the
    description is read from the metadata (key "surgifuse") of ``<name><graph_suffix>.onnx``,
    where ``surgifuse export`` embeds it: an install that copies only the .onnx files works.
    """
    import onnxruntime as ort

    text = str(name)
    if text.endswith(".json"):
        path = find_model(text)
        return json.loads(path.read_text()), path.parent
    try:
        path = find_model(f"{text}.json")
        return json.loads(path.read_text()), path.parent
    except FileNotFoundError:
        pass
    try:
        graph = find_model(f"{text}{graph_suffix}.onnx")
    except FileNotFoundError as exc:
        raise InputError(str(exc), field="model", file=f"{text}{graph_suffix}.onnx") from None
    meta = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if "surgifuse" not in meta:
        raise InputError(f"{graph} carries no 'surgifuse' metadata and has no {text}.json beside it; re-export it with `surgifuse export`",
                         field="model", file=str(graph))
    return json.loads(meta["surgifuse"]), graph.parent


def choose_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device``: "cpu", "cuda" (CUDA, with TensorRT first when present) or
    "auto" (the GPU ones when onnxruntime-gpu is installed, else CPU). CPU always comes last."""
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    available = ort.get_available_providers()
    chosen = []
    if device in ("auto", "cuda"):
        chosen = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        if device == "cuda" and "CUDAExecutionProvider" not in chosen:
            raise InputError(f"device 'cuda' needs onnxruntime-gpu; available providers: {', '.join(available)}",
                             field="device", allowed="auto, cpu")
    return chosen + ["CPUExecutionProvider"]


def open_session(path: Path, *, providers: list[str], threads: int = 0):
    """An ONNX Runtime session; ``threads`` > 0 caps the intra-op threads (0: ONNX Runtime's default)."""
    import onnxruntime as ort

    if threads < 0:
        raise InputError(f"threads must be >= 0, got {threads}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def run_session(session, feeds: dict, *, on_gpu: bool) -> list:
    """Run ``session``; on a GPU provider through IO binding (inputs copied once, outputs allocated on
    the device and copied back once), else plainly. Returns NumPy outputs in graph order.
    Feeds the graph does not declare are left out (the exporter drops unused inputs).
    """
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    if not on_gpu:
        return session.run(None, feeds)
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
