"""Print the project's requirements from pyproject.toml, one per line: the runtime dependencies,
plus those of the extras named on the command line (``python scripts/project_requirements.py test
train``). The installer uses it to install dependencies apart from building the native core."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip carries a copy of the same parser
    from pip._vendor import tomli as tomllib


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    out = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {', '.join(optional)}")
        out += optional[extra]
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
