"""Tests of the multi-scale morphological focus-measure engine (Zhang, Bai & Wang 2017)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgifuse.engines import create_engine
from surgifuse.engines.msmfm import MultiScaleMorphologyEngine, multiscale_morphological_gradient
from surgifuse.evaluation.metrics import psnr
from surgifuse.evaluation.references import best_single_frame


def region_stack(rng, *, k=3, height=64, band=64, grey=False):
    """Frame i is sharp only in vertical band i (and blurred elsewhere)."""
    shape = (height, band * k) if grey else (height, band * k, 3)
    sharp = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 0.8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    frames = []
    for i in range(k):
        f = blurred.copy()
        f[:, i * band : (i + 1) * band] = sharp[:, i * band : (i + 1) * band]
        frames.append(f)
    return frames, sharp


def test_registry_creates_msmfm():
    engine = create_engine("msmfm")
    assert isinstance(engine, MultiScaleMorphologyEngine) and engine.name == "msmfm"


@pytest.mark.parametrize("k,grey", [(2, False), (3, False), (4, True)])
def test_each_region_comes_from_its_sharp_frame(rng, k, grey):
    frames, sharp = region_stack(rng, k=k, grey=grey)
    result = MultiScaleMorphologyEngine().fuse(frames)
    assert result.image.shape == sharp.shape and result.image.dtype == np.uint8
    assert result.depth_index.shape == sharp.shape[:2] and result.depth_index.dtype == np.float32
    assert result.confidence.dtype == np.float32
    assert 0 <= result.confidence.min() and result.confidence.max() <= 1
    margin = 10  # boundary placement within a few px, then a 3 px blend on each side
    for i in range(k):
        cols = slice(i * 64 + margin, (i + 1) * 64 - margin)
        assert np.array_equal(result.image[:, cols], sharp[:, cols]), f"band {i}"
        assert np.all(result.depth_index[:, cols] == i)
    _, best = best_single_frame(frames, sharp)
    assert psnr(sharp, result.image) > max(35.0, psnr(sharp, best) + 10)


def test_order_of_frames_does_not_matter(rng):
    frames, _ = region_stack(rng, k=3)
    engine = MultiScaleMorphologyEngine()
    a = engine.fuse(frames).image
    b = engine.fuse(frames[::-1]).image
    assert np.array_equal(a, b)


def test_identical_frames_give_that_frame(rng):
    frame = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (0, 0), 1.0)
    result = MultiScaleMorphologyEngine().fuse([frame, frame.copy(), frame.copy()])
    assert np.array_equal(result.image, frame)
    single = MultiScaleMorphologyEngine().fuse([frame])
    assert np.array_equal(single.image, frame) and np.all(single.depth_index == 0)


def test_uint16_frames(rng):
    frames, sharp = region_stack(rng, k=2)
    frames16 = [f.astype(np.uint16) * 257 for f in frames]
    result = MultiScaleMorphologyEngine().fuse(frames16)
    result8 = MultiScaleMorphologyEngine().fuse(frames)
    assert result.image.dtype == np.uint16
    # Nearly the same decision as on the 8-bit frames (the thresholds work on a 0-255 scale; the
    # 16-bit luma differs from the 8-bit one by rounding, which may move a boundary by a pixel).
    assert np.mean(np.abs(result.depth_index - result8.depth_index) < 0.5) > 0.97
    assert psnr(sharp.astype(np.uint16) * 257, result.image) > 35


def test_focus_measure_known_values():
    step = np.zeros((32, 32), np.float32)
    step[:, 16:] = 100.0
    fm = multiscale_morphological_gradient(step, scales=1)  # one disk of radius 3: gradient 100 / 3
    assert fm[10, 15] == pytest.approx(100 / 3) and fm[10, 16] == pytest.approx(100 / 3)
    assert fm[10, 12] == pytest.approx(0.0) and fm[10, 20] == pytest.approx(0.0)
    fm5 = multiscale_morphological_gradient(step)  # all five scales reach columns 13..18
    assert fm5[10, 15] == pytest.approx(100 * sum(1 / (2 * t + 1) for t in range(1, 6)), rel=1e-6)
    assert np.all(multiscale_morphological_gradient(np.full((8, 8), 7, np.float32)) == 0)


def test_option_and_input_errors(rng):
    with pytest.raises(ValueError, match="window"):
        MultiScaleMorphologyEngine(window=4)
    with pytest.raises(ValueError, match="scales"):
        MultiScaleMorphologyEngine(scales=0)
    with pytest.raises(ValueError, match="min_region_fraction"):
        MultiScaleMorphologyEngine(min_region_fraction=1.5)
    engine = MultiScaleMorphologyEngine()
    frames, _ = region_stack(rng, k=2)
    with pytest.raises(ValueError, match="frame 1 has shape"):
        engine.fuse([frames[0], frames[1][:, :10]])
    with pytest.raises(ValueError, match="2 frames but 1 prepared"):
        engine.fuse_prepared(frames, [engine.prepare_frame(frames[0])])
    with pytest.raises(ValueError, match="grey must be HxW"):
        multiscale_morphological_gradient(np.zeros((4, 4, 3), np.float32))


def test_beats_best_single_frame_on_synthetic_stack():
    from surgifuse.synth import generate_stack as generate
    fused_db, best_db = [], []
    for seed in range(3):  # the first three seeds, not chosen: fundus scenes, some with an instrument
        stack = generate(seed, height=160, width=160, k=5)
        _, best = best_single_frame(stack.frames, stack.gt)
        fused = MultiScaleMorphologyEngine().fuse(stack.frames).image
        fused_db.append(psnr(stack.gt, fused))
        best_db.append(psnr(stack.gt, best))
    assert np.mean(fused_db) > np.mean(best_db) + 1.0
