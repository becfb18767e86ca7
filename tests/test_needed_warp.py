"""Moved frames resampled only where the blend reads them (surgifuse.needed_warp,
ClassicalEngine.fuse_registered): the same fusion as warping every frame whole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgifuse import align
from surgifuse.buffer import prepare_aligned
from surgifuse.engines.classical import ClassicalEngine
from surgifuse.errors import InputError
from surgifuse.fusion import fuse_focal_stack
from surgifuse.needed_warp import needed_tiles, warp_needed
from surgifuse.synth import generate_stack

MOVE = align.SimilarityTransform.about_point(scale=1.004, rotation=0.003, center=(100.0, 80.0), shift=(2.6, -1.3))


def _frame(h=150, w=200, seed=0):
    # a camera's frame, not white noise: detail down to about 2 px
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 1.0)


def test_needed_tiles_reach_the_blend_window_around_a_label():
    labels = np.zeros((20, 20), np.uint8)  # frame 0 everywhere...
    labels[10, 10] = 1  # ...but one block of frame 1
    tiles = needed_tiles(labels, 1, k=3, factor=2, blend_radius=4, tile_blocks=4)
    # a pixel's window reaches ceil(4 / 2) = 2 blocks: blocks 8..12, i.e. tiles 2 and 3 in each direction
    expected = np.zeros((5, 5), bool)
    expected[2:4, 2:4] = True
    np.testing.assert_array_equal(tiles, expected)
    assert not needed_tiles(labels, 2, k=3, factor=2, blend_radius=4, tile_blocks=4).any()  # frame 2 never wins
    assert needed_tiles(labels, 0, k=3, factor=2, blend_radius=4, tile_blocks=4).all()


def test_no_information_needs_every_frame():
    labels = np.zeros((8, 8), np.uint8)
    labels[0, 0] = 3  # K: the average of all frames
    for frame in range(3):
        assert needed_tiles(labels, frame, k=3, factor=1, blend_radius=0, tile_blocks=4)[0, 0]


def test_needed_tiles_refuse_a_label_that_is_no_frame():
    with pytest.raises(InputError, match="frame index"):
        needed_tiles(np.zeros((4, 4), np.uint8), 3, k=3, factor=1, blend_radius=1, tile_blocks=2)


@pytest.mark.parametrize("interpolation", ["linear", "lanczos"])
def test_marked_tiles_equal_the_whole_warp_and_the_rest_stays_zero(interpolation):
    frame = _frame()
    whole = align.warp(frame, MOVE, interpolation=interpolation)
    tiles = np.zeros((-(-150 // 32), -(-200 // 32)), bool)
    tiles[1, 1:4] = tiles[3, 0] = tiles[4, 6] = True  # a run, a lone tile, the clipped corner tile
    got = warp_needed(frame, MOVE, tiles, 32, interpolation=interpolation)
    inside = np.kron(tiles, np.ones((32, 32), bool))[:150, :200]
    diff = np.abs(got.astype(int) - whole.astype(int))
    assert diff[inside].max() <= 4  # OpenCV's fixed-point rounding of the shifted origin
    assert np.mean(diff[inside] == 0) > 0.99
    assert not got[~inside].any()


def test_a_tile_grid_of_the_wrong_size_is_refused():
    with pytest.raises(InputError, match="does not cover"):
        warp_needed(_frame(), MOVE, np.ones((2, 2), bool), 32)


@pytest.mark.parametrize("shape", [(240, 320), (1080, 1440)])  # full-scale and block decision
def test_fuse_registered_matches_warping_every_frame_whole(shape):
    stack = generate_stack(5, height=shape[0], width=shape[1], k=5, scene="mixed", breathing=0.01, motion=2)
    engine = ClassicalEngine()
    registrations = align.register_stack(stack.frames)
    transforms = [r.transform if r.significant else None for r in registrations]
    assert sum(t is not None for t in transforms) >= 3
    pairs = [prepare_aligned(engine, f, t, interpolation="lanczos") for f, t in zip(stack.frames, transforms)]
    whole = engine.fuse_prepared([p[0] for p in pairs], [p[1] for p in pairs])
    got = engine.fuse_registered(stack.frames, transforms)
    np.testing.assert_array_equal(got.depth_index, whole.depth_index)
    np.testing.assert_array_equal(got.confidence, whole.confidence)
    diff = np.abs(got.image.astype(int) - whole.image.astype(int))
    assert diff.max() <= 4 and np.mean(diff == 0) > 0.99
    assert got.timings["warp"] >= 0


def test_fuse_registered_without_motion_is_the_engine_itself():
    frames = generate_stack(6, height=96, width=128, k=4).frames
    engine = ClassicalEngine()
    got = engine.fuse_registered(frames, [None] * 4)
    expected = engine.fuse(frames)
    np.testing.assert_array_equal(got.image, expected.image)
    np.testing.assert_array_equal(got.depth_index, expected.depth_index)


def test_fuse_registered_needs_one_transform_per_frame():
    frames = generate_stack(6, height=64, width=64, k=3).frames
    with pytest.raises(InputError, match="3 frames but 2 transforms"):
        ClassicalEngine().fuse_registered(frames, [None, None])


def test_the_offline_path_without_frames_kept_fuses_as_with_them():
    stack = generate_stack(7, height=200, width=260, k=5, scene="mixed", breathing=0.012, motion=2)
    engine = ClassicalEngine()
    kept = fuse_focal_stack(engine, stack.frames)
    lean = fuse_focal_stack(engine, stack.frames, keep_frames=False)
    assert kept.moved > 0 and lean.moved == kept.moved
    assert lean.frames == [] and len(kept.frames) == 5
    np.testing.assert_array_equal(lean.result.depth_index, kept.result.depth_index)
    assert np.abs(lean.result.image.astype(int) - kept.result.image.astype(int)).max() <= 4


def test_maps_can_stay_at_the_decision_scale():
    stack = generate_stack(8, height=1080, width=1440, k=3, scene="mixed", breathing=0.01, motion=2)
    engine = ClassicalEngine()
    transforms = [r.transform if r.significant else None for r in align.register_stack(stack.frames)]
    full = engine.fuse_registered(stack.frames, transforms)
    small = engine.fuse_registered(stack.frames, transforms, full_maps=False)
    assert full.map_factor == 1 and full.depth_index.shape == (1080, 1440)
    assert small.map_factor == 4 and small.depth_index.shape == small.confidence.shape == (270, 360)
    np.testing.assert_array_equal(small.image, full.image)
    # the full map is the small one enlarged: block centres agree
    np.testing.assert_allclose(full.depth_index[2::4, 2::4], small.depth_index, atol=0.5)
