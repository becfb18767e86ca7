"""scripts/compare_focus_stack.py: the registration onto the truth behind its PSNR, the frame subset
behind its Q^AB/F, and one whole run on a tiny generated stack with a stand-in for focus-stack (a
script that writes the middle frame cropped by 2 px, as focus-stack crops its output)."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "compare_focus_stack.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_focus_stack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _textured(height: int, width: int, seed: int = 3) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 4, width // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_onto_truth_undoes_a_crop(compare):
    truth = _textured(160, 200)
    cropped = truth[3:-2, 5:-1]  # focus-stack's output: the truth's pixels from (5, 3) on
    image, inside, warp = compare.onto_truth(cropped, truth)
    assert warp[0, 2] == pytest.approx(-5, abs=0.05) and warp[1, 2] == pytest.approx(-3, abs=0.05)
    assert not inside[:3].any() and not inside[:, :5].any() and inside[3:-2, 5:-1].all()
    assert compare.masked_psnr(truth, image, inside) > 40


def test_judged_frames_subset(compare):
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(120)]
    stack = compare.Stack("deep", [f"f{i}" for i in range(120)], frames)
    chosen, which = compare.judged_frames(stack, 0)
    assert len(chosen) == 120 and which == "all"
    chosen, which = compare.judged_frames(stack, 31)
    assert [int(f[0, 0, 0]) for f in chosen][:2] == [0, 4] and int(chosen[-1][0, 0, 0]) == 119
    assert which == "31 evenly spaced"


FAKE_FOCUS_STACK = """#!{python}
import sys
import cv2
if sys.argv[1:] == ["--version"]:
    print("fake focus-stack 0")
    sys.exit(0)
out = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output="))
files = [a for a in sys.argv[1:] if not a.startswith("--")]
cv2.imwrite(out, cv2.imread(files[len(files) // 2])[2:-2, 2:-2])
"""


@pytest.mark.skipif(not os.path.exists("/usr/bin/time"), reason="needs GNU time")
@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "surgifuse").exists(), reason="needs the project's virtualenv")
def test_whole_run_on_a_tiny_deep_stack(tmp_path):
    fake = tmp_path / "focus-stack"
    fake.write_text(FAKE_FOCUS_STACK.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = subprocess.run([sys.executable, str(SCRIPT), str(fake), "--stacks", "deep", "--deep-frames", "5",
                           "--deep-size", "96x80", "--runs", "1"], check=False, capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "focus-stack fake focus-stack 0" in lines[0]
    rows = [line for line in lines if line.startswith("| deep (5 x 96x80)")]
    assert len(rows) == 3  # ours, focus-stack, the ratios
    ours, theirs = (row.split("|") for row in rows[:2])
    assert float(ours[8]) > float(theirs[8])  # fused against one middle frame: ours is closer to the truth
    assert "PSNR over" in done.stdout
