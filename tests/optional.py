"""Modules of optional extras (torch from the ``train`` extra): a test that needs one skips where the
extra is not installed, except under ``SURGIFUSE_REQUIRE_ALL=1`` (CI, which installs every extra),
where a missing module is a failure: a broken install must not pass as a row of skips."""

from __future__ import annotations

import importlib
import os

import pytest


def optional_import(name: str):
    if os.environ.get("SURGIFUSE_REQUIRE_ALL") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)
