"""ClassicalEngine: options, known-value fusions, invariants, timings."""

from __future__ import annotations

import numpy as np
import pytest

from surgifuse.engines import create_engine
from surgifuse.engines.classical import ClassicalEngine
from surgifuse.focus_measure import focus_map


def checkerboard(h, w, period, low, high, dtype=np.uint8):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where(((yy // period) + (xx // period)) % 2 == 0, low, high).astype(dtype)


def region_stack(k=3, band=40, h=48, channels=3, dtype=np.uint8, flat=120):
    """Frame i is sharp (a checkerboard of its own colours) in vertical band i only, flat elsewhere."""
    w = k * band
    frames = []
    for i in range(k):
        grey = np.full((h, w), flat, dtype)
        grey[:, i * band : (i + 1) * band] = checkerboard(h, band, 2, 20 + 10 * i, 220 - 10 * i, dtype)
        frames.append(np.repeat(grey[..., None], channels, axis=2) if channels else grey)
    return frames


@pytest.mark.parametrize("mode", ["fmb3", "fmb1"])
def test_each_region_comes_from_its_sharp_frame(mode):
    k, band = 3, 40
    frames = region_stack(k, band)
    engine = ClassicalEngine(mode=mode)
    result = engine.fuse(frames)
    margin = 1 + engine.filter_radius + engine.blend_radius  # away from the band edges
    for i in range(k):
        inner = np.s_[:, i * band + margin : (i + 1) * band - margin]
        np.testing.assert_array_equal(result.image[inner], frames[i][inner])
        assert (result.depth_index[inner] == i).all()
        assert (result.confidence[inner] == 1.0).all()  # other frames have no focus there at all


def test_identical_frames_fuse_to_that_frame():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    frame[10:40, 10:50] = 90  # flat patch
    result = ClassicalEngine().fuse([frame] * 5)
    np.testing.assert_array_equal(result.image, frame)
    assert result.depth_index.shape == (64, 80)


def test_uint16_and_grey_frames():
    frames16 = region_stack(3, 32, dtype=np.uint16)
    frames16 = [f * np.uint16(200) for f in frames16]
    r16 = ClassicalEngine().fuse(frames16)
    assert r16.image.dtype == np.uint16 and r16.image.shape == frames16[0].shape
    grey = region_stack(4, 24, channels=0)
    rg = ClassicalEngine().fuse(grey)
    assert rg.image.shape == grey[0].shape and rg.image.dtype == np.uint8
    assert 0 <= rg.depth_index.min() and rg.depth_index.max() <= 3
    assert 0 <= rg.confidence.min() and rg.confidence.max() <= 1


def test_fuse_equals_fuse_prepared_and_timings():
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(4)]
    engine = ClassicalEngine(filter_radius=2, blend_radius=1)
    whole = engine.fuse(frames)
    assert set(whole.timings) == {"focus_measure", "decision"}
    assert whole.timings["focus_measure"] > 0 and whole.timings["decision"] > 0
    prepared = [engine.prepare_frame(f) for f in frames]
    assert all(p.dtype == np.uint32 and p.shape == (40, 48) for p in prepared)
    np.testing.assert_array_equal(prepared[0], focus_map(frames[0]))
    streamed = engine.fuse_prepared(frames, prepared)
    np.testing.assert_array_equal(whole.image, streamed.image)
    np.testing.assert_array_equal(whole.depth_index, streamed.depth_index)
    np.testing.assert_array_equal(whole.confidence, streamed.confidence)


def test_create_engine_by_name_and_options():
    engine = create_engine("classical", mode="fmb1", filter_radius=0, blend_radius=0, threshold=5)
    assert isinstance(engine, ClassicalEngine) and engine.name == "classical"
    assert engine.options["mode"] == "fmb1" and engine.options["threshold"] == 5
    assert ClassicalEngine(**engine.options).options == engine.options


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"mode": "fmb2"}, ValueError, "mode"),
        ({"filter_radius": 8}, ValueError, "filter_radius"),
        ({"blend_radius": -1}, ValueError, "blend_radius"),
        ({"step": 0}, ValueError, "step"),
        ({"threshold": -1}, ValueError, "threshold"),
        ({"window": 2.5}, TypeError, "window"),
        ({"flat_threshold": True}, TypeError, "flat_threshold"),
        ({"device": "tpu"}, ValueError, "device"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        ClassicalEngine(**options)


def test_bad_stacks_raise_clear_errors():
    engine = ClassicalEngine()
    frames = [np.zeros((16, 16, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match="K must match"):
        engine.fuse_prepared(frames, [engine.prepare_frame(f) for f in frames[:2]])
    with pytest.raises(ValueError, match="shape"):
        engine.fuse(frames[:2] + [np.zeros((16, 17, 3), np.uint8)])
    with pytest.raises(ValueError, match="at least one frame"):
        engine.fuse([])


def test_beats_the_best_single_frame_on_a_synthetic_stack():
    from surgifuse import synth
    from surgifuse.evaluation.metrics import psnr

    stack = synth.generate_stack(4242, height=128, width=160, k=5, noise=True)
    fused = ClassicalEngine().fuse(stack.frames).image
    best_single = max(psnr(stack.gt, f) for f in stack.frames)
    assert psnr(stack.gt, fused) > best_single


def test_a_moved_frame_is_kept_as_block_sums_moved_on_the_block_grid():
    """prepare_moved_frame (a live buffer's moved frames): the raw focus map summed over the
    decision's blocks, then moved; for a shift by whole blocks that is the moved map summed."""
    import cv2

    from surgifuse.align import SimilarityTransform
    from surgifuse.buffer import warp_pixel_map
    from surgifuse.engines.classical import BlockFocusMap
    from surgifuse.scaled_decision import reduce_focus_map

    engine = ClassicalEngine(decision_scale=2)
    rng = np.random.default_rng(4)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (0, 0), 0.8)
    shift = SimilarityTransform(tx=6.0, ty=-4.0)  # 3 and -2 blocks
    kept = engine.prepare_moved_frame(frame, shift)
    assert isinstance(kept, BlockFocusMap) and kept.factor == 2 and kept.blocks.shape == (32, 48)
    expected = reduce_focus_map(warp_pixel_map(engine.prepare_frame(frame), shift), 2)
    np.testing.assert_array_equal(kept.blocks[4:-4, 6:-6], expected[4:-4, 6:-6])
    # fused among full maps, as the buffer holds them (frames that did not move keep theirs)
    frames = [frame, cv2.GaussianBlur(frame, (0, 0), 2.0)]
    moved = [kept, engine.prepare_frame(frames[1])]
    same = [expected, reduce_focus_map(moved[1], 2)]
    a = engine.fuse_prepared(frames, moved)
    from surgifuse.scaled_decision import fuse_stack_scaled

    b = fuse_stack_scaled(frames, [engine.prepare_frame(f) for f in frames], factor=2, reduced_maps=same)
    assert a.image.shape == frame.shape and np.mean(a.image == b.image) > 0.95
    with pytest.raises(ValueError, match="blocks"):
        ClassicalEngine(decision_scale=1).fuse_prepared(frames, moved)
    full = ClassicalEngine(decision_scale=1).prepare_moved_frame(frame, shift)
    np.testing.assert_array_equal(full, warp_pixel_map(engine.prepare_frame(frame), shift))


def test_focus_measure_time_is_reported_until_the_next_fusion():
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(3)]
    engine = ClassicalEngine()
    assert engine.focus_measure_ms == 0.0
    maps = [engine.prepare_frame(f) for f in frames]
    spent = engine.focus_measure_ms
    assert spent > 0
    result = engine.fuse_prepared(frames, maps)
    assert result.timings["focus_measure"] == spent and engine.focus_measure_ms == 0.0
