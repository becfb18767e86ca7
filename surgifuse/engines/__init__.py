"""Fusion engines behind one interface (``base.Engine``), found by name.

``classical``: FMB decision map, the real-time default. ``fn``: the Fusion Network (ONNX Runtime).
``autoencoder``: self-supervised autoencoder features. ``msmfm``: multi-scale morphological focus
measure (the ground-truth method of the paper).
"""

from __future__ import annotations

import importlib

from surgifuse.errors import InputError

from .base import Engine, FusionResult, validate_stack

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


def create_engine(name: str, **options) -> Engine:
    """Build the engine called ``name`` with keyword ``options``; ``ValueError`` for an unknown name."""
    try:
        target = _ENGINES[name]
    except KeyError:
        raise InputError(f"unknown engine {name!r}; choose one of {', '.join(_ENGINES)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


__all__ = ["Engine", "FusionResult", "validate_stack", "create_engine", "engine_names"]
