"""Shared test configuration: opt-in slow tests, GPU detection, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo with ../shared beside it: tests that read it fail without it (the real stacks are
# part of what every change is checked against).
SHARED = Path(os.environ.get("SURGIFUSE_SHARED", REPO.parent / "shared"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (load tests)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def cuda_device_available() -> bool:
    try:
        from surgifuse import _core
    except ImportError:
        return False
    probe = getattr(_core, "cuda_device_count", None)
    return bool(probe and probe() > 0)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared data folder not found at {SHARED} (set SURGIFUSE_SHARED or clone ../shared)"
    return SHARED


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
