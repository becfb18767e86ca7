"""Fusion engines behind one interface (``base.Engine``), found by name.

``classical``: FMB decision map, the real-time default. ``fn``: the Fusion Network (ONNX Runtime).
``autoencoder``: self-supervised autoencoder features. ``msmfm``: multi-scale morphological focus
measure (the ground-truth method of the paper).
"""

from __future__ import annotations

import importlib

from surgifuse.errors import InputError

from .base import Engine, FusionResult, validate_stack
from .spec import EngineSpec

# name -> "module:Class"; imported on demand so that a missing optional dependency of one engine
# does not break the others.
_ENGINES = {
    "classical": "surgifuse.engines.classical:ClassicalEngine",
    "fn": "surgifuse.engines.fusion_net:FusionNetEngine",
    "autoencoder": "surgifuse.engines.autoencoder:AutoencoderEngine",
    "msmfm": "surgifuse.engines.msmfm:MultiScaleMorphologyEngine",
}


def engine_names() -> list[str]:
    """Names accepted by ``create_engine``."""
    return list(_ENGINES)


def engine_class(name: str) -> type[Engine]:
    """The class registered as ``name``; ``InputError(field="engine")`` for an unknown name or an
    engine whose module cannot be imported in this build."""
    try:
        target = _ENGINES[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown engine {name!r}; choose one of {', '.join(_ENGINES)}", field="engine",
                         allowed=", ".join(_ENGINES)) from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"engine {name!r} is not available in this build ({exc})", field="engine") from exc
    return getattr(module, class_name)


def engine_spec(name: str) -> EngineSpec:
    """What the engine called ``name`` declares it accepts (options, limits)."""
    return engine_class(name).spec


def create_engine(name: str, **options) -> Engine:
    """Build the engine called ``name`` with keyword ``options``, checked against its declaration
    (``InputError`` naming the field for an unknown name, option or value)."""
    return engine_class(name)(**options)


__all__ = ["Engine", "EngineSpec", "FusionResult", "validate_stack", "create_engine", "engine_class", "engine_names",
           "engine_spec"]
