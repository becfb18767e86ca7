"""The classical decision at a reduced scale (surgifuse/scaled_decision.py)."""

from __future__ import annotations

import numpy as np
import pytest

from surgifuse import decision
from surgifuse.errors import InputError
from surgifuse.scaled_decision import auto_factor, fuse_stack_scaled, reduce_focus_map


def test_auto_factor_keeps_small_frames_at_full_scale():
    assert auto_factor((512, 512)) == 1
    assert auto_factor((720, 1280, 3)) == 1
    assert auto_factor((1079, 1920, 3)) == 1
    assert auto_factor((1080, 1920, 3)) == 4
    assert auto_factor((2160, 3840)) == 8


def test_reduce_sums_blocks_exactly_and_repeats_the_edge():
    m = np.arange(5 * 7, dtype=np.uint32).reshape(5, 7) * 1000
    r = reduce_focus_map(m, 2)
    assert r.shape == (3, 4) and r.dtype == np.uint32
    assert r[0, 0] == m[0:2, 0:2].sum()
    assert r[1, 2] == m[2:4, 4:6].sum()
    # the last column block holds column 6 twice (repeated edge), the last row block row 4 twice
    assert r[0, 3] == 2 * m[0:2, 6].sum()
    assert r[2, 3] == 4 * m[4, 6]
    assert reduce_focus_map(m, 1) is m


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_reduce_equals_block_sums_of_the_edge_padded_map(rng, factor):
    m = rng.integers(0, 2**24, (37, 53), dtype=np.uint32)
    h, w = m.shape
    padded = np.pad(m, ((0, -h % factor), (0, -w % factor)), mode="edge").astype(np.uint64)
    expected = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).sum(axis=(1, 3))
    assert np.array_equal(reduce_focus_map(m, factor), expected)


def test_reduce_saturates_instead_of_wrapping():
    m = np.full((4, 4), 2**31, np.uint32)
    assert np.all(reduce_focus_map(m, 2) == 2**32 - 1)


def test_reduce_rejects_what_is_not_a_focus_map():
    with pytest.raises(InputError, match="uint32"):
        reduce_focus_map(np.zeros((4, 4), np.float32), 2)
    with pytest.raises(InputError, match="factor"):
        reduce_focus_map(np.zeros((4, 4), np.uint32), 0)


def test_factor_one_is_the_full_scale_decision(rng):
    frames = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    maps = [rng.integers(0, 1000, (40, 48), dtype=np.uint32) for _ in range(3)]
    a = fuse_stack_scaled(frames, maps, factor=1)
    b = decision.fuse_stack(frames, maps)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.depth_index, b.depth_index)


def _banded_stack(rng, k=3, h=96, w=150):
    """Frame i is the only one with focus in vertical band i; the bands are wide (50 px)."""
    frames = [np.full((h, w, 3), 40 * (i + 1), np.uint8) for i in range(k)]
    maps = []
    band = w // k
    for i in range(k):
        m = np.zeros((h, w), np.uint32)
        m[:, i * band:(i + 1) * band] = 100 + rng.integers(0, 10, (h, band), dtype=np.uint32)
        maps.append(m)
    return frames, maps, band


@pytest.mark.parametrize("factor", [2, 3])
def test_each_region_comes_from_its_sharp_frame(rng, factor):
    frames, maps, band = _banded_stack(rng)
    out = fuse_stack_scaled(frames, maps, factor=factor)
    assert out.image.shape == frames[0].shape and out.image.dtype == np.uint8
    margin = 8 * factor  # the blend ramp at the band boundaries
    for i in range(3):
        inner = slice(i * band + margin, (i + 1) * band - margin)
        assert np.all(out.image[:, inner] == frames[i][:, inner])
        assert np.all(out.labels[:, inner] == i)
        assert np.allclose(out.depth_index[:, inner], i, atol=0.5)
    assert out.depth_index.shape == out.confidence.shape == frames[0].shape[:2]


def test_identical_frames_give_that_frame(rng):
    frame = rng.integers(0, 65535, (50, 70, 3), dtype=np.uint16)
    maps = [rng.integers(0, 500, (50, 70), dtype=np.uint32) for _ in range(4)]
    out = fuse_stack_scaled([frame] * 4, maps, factor=2)
    assert np.array_equal(out.image, frame)


def test_reduced_maps_must_match_the_frames(rng):
    frames, maps, _ = _banded_stack(rng)
    with pytest.raises(InputError, match="reduced focus maps"):
        fuse_stack_scaled(frames, maps, factor=2, reduced_maps=[reduce_focus_map(m, 3) for m in maps])
    reduced = [reduce_focus_map(m, 2) for m in maps]
    given = fuse_stack_scaled(frames, maps, factor=2, reduced_maps=reduced)
    assert np.array_equal(given.image, fuse_stack_scaled(frames, maps, factor=2).image)


def test_the_engine_decides_1080p_frames_on_blocks(rng, monkeypatch):
    from surgifuse import scaled_decision
    from surgifuse.buffer import FocalStackBuffer
    from surgifuse.engines import create_engine

    frames = [rng.integers(0, 255, (1080, 1100, 3), dtype=np.uint8) for _ in range(3)]
    engine = create_engine("classical")
    assert engine.scale_for(frames[0].shape) == 4 and engine.scale_for((720, 1280, 3)) == 1
    maps = [engine.prepare_frame(f) for f in frames]
    expected = fuse_stack_scaled(frames, maps, factor=4)
    assert np.array_equal(engine.fuse_prepared(frames, maps).image, expected.image)
    full = create_engine("classical", decision_scale=1)
    assert np.array_equal(full.fuse_prepared(frames, maps).image, decision.fuse_stack(frames, maps).image)

    # A live buffer reduces each frame's map once, not once per fusion it takes part in.
    calls = []
    original = scaled_decision.reduce_focus_map

    def counting(m, factor, **options):
        calls.append(factor)
        return original(m, factor, **options)

    monkeypatch.setattr("surgifuse.engines.classical.reduce_focus_map", counting)
    buffer = FocalStackBuffer(3, engine=engine)
    for f in frames + frames[:2]:
        buffer.push(f)
        buffer.fuse()
    assert len(calls) == 5  # one per pushed frame
