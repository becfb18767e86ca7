"""Registration speed at 1080p: the live keyframe step (one frame onto the keyframe of its focus
position, robust, from the predicted estimate) and the offline significance-tested registration.

Run: .venv/bin/python -m pytest -p no:cacheprovider --benchmark-only tests/benchmarks/test_bench_align.py
Target (issue 12, docs/alignment.md): the live alignment stage at most 4 ms median at 1080p on
two cores; measured 2026-12-03 on an Intel Xeon 2-vCPU VM: see docs/alignment.md.
"""

from __future__ import annotations

import pytest

from surgifuse import align
from surgifuse.keyframes import KeyframeAligner
from surgifuse.synth.video import EyeMotion, FocusSweepRenderer


@pytest.fixture(scope="module")
def sweep():
    renderer = FocusSweepRenderer(4, height=1080, width=1920, k=5,
                                  eye=EyeMotion(wander_px=9.6, wander_period_frames=120, breathing=0.005))
    return [renderer.render(t) for t in range(48)]


def test_live_keyframe_step_1080p(benchmark, sweep):
    aligner = KeyframeAligner()
    for f in sweep[:16]:  # two sweeps: every focus position has its keyframe, the motion is learned
        aligner.step(f.image, f.focus_position)
    frames = iter(sweep[16:] * 100)

    def step():
        f = next(frames)
        return aligner.step(f.image, f.focus_position)

    result = benchmark(step)
    assert not result.restarted


def test_offline_register_1080p(benchmark, sweep):
    reference = align.prepare_alignment(sweep[0].image)
    moving = align.prepare_alignment(sweep[4].image)
    registration = benchmark(align.register, reference, moving)
    assert registration.displacement < 50
