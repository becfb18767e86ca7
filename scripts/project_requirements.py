"""Print the project's requirements from pyproject.toml, one per line: the runtime dependencies,
plus those of the extras named on the command line (``python scripts/project_requirements.py test
train``). The installer uses it to install dependencies apart from building the native core, and
the container images (docker/) to install the same set.

``--build``: the tools that build the native core without build isolation instead (the
``[build-system]`` requirements plus ninja, which an isolated build would fetch itself).
``--gpu``: the ``gpu`` extra's onnxruntime-gpu in place of onnxruntime (both install the module
``onnxruntime``; they cannot sit side by side).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip carries a copy of the same parser
    from pip._vendor import tomli as tomllib


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements(extras: list[str], *, gpu: bool = False) -> list[str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    out = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    if gpu:
        out = [r for r in out if _name(r) != "onnxruntime"] + optional["gpu"]
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {', '.join(optional)}")
        out += optional[extra]
    return out


def build_requirements() -> list[str]:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    return list(pyproject["build-system"]["requires"]) + ["ninja"]


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--build" in args:
        print("\n".join(build_requirements()))
    else:
        gpu = "--gpu" in args
        print("\n".join(requirements([a for a in args if a != "--gpu"], gpu=gpu)))
