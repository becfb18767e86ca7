"""FocalStackBuffer: ring order, O(1) preparation per push, equality with whole-stack fusion, alignment, errors."""

from __future__ import annotations

import numpy as np
import pytest

from surgifuse.buffer import FocalStackBuffer
from surgifuse.engines.classical import ClassicalEngine


class SpyEngine(ClassicalEngine):
    """A classical engine that counts the frames it prepares."""

    def __init__(self, **options):
        super().__init__(**options)
        self.prepared_frames = 0

    def prepare_frame(self, frame):
        self.prepared_frames += 1
        return super().prepare_frame(frame)


def frames(n, shape=(24, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def test_ring_keeps_the_last_capacity_frames_oldest_first():
    buf = FocalStackBuffer(3)
    pushed = frames(5)
    assert len(buf) == 0 and not buf.full
    for i, f in enumerate(pushed):
        buf.push(f, meta={"seq": 100 + i})
        assert len(buf) == min(i + 1, 3)
    assert buf.full
    assert all(a is b for a, b in zip(buf.frames, pushed[2:]))
    assert [m["seq"] for m in buf.metas] == [102, 103, 104]
    assert [m["sequence"] for m in buf.metas] == [2, 3, 4]
    buf.clear()
    assert len(buf) == 0 and buf.frames == [] and buf.metas == []


def test_one_prepare_per_push():
    spy = SpyEngine()
    buf = FocalStackBuffer(4, engine=spy)
    for i, f in enumerate(frames(9)):
        buf.push(f)
        buf.fuse()
        assert spy.prepared_frames == i + 1  # fusing never re-prepares the frames held


def test_fuse_after_pushes_equals_whole_stack_fusion():
    engine = ClassicalEngine()
    buf = FocalStackBuffer(5, engine=engine)
    pushed = frames(8, seed=3)
    for f in pushed:
        buf.push(f)
    streamed = buf.fuse()
    whole = ClassicalEngine().fuse(pushed[-5:])
    np.testing.assert_array_equal(streamed.image, whole.image)
    np.testing.assert_array_equal(streamed.depth_index, whole.depth_index)
    np.testing.assert_array_equal(streamed.confidence, whole.confidence)
    assert streamed.timings["focus_measure"] > 0  # the last push's focus map


def test_partial_buffer_fuses_what_it_holds():
    buf = FocalStackBuffer(5)
    buf.push(frames(1)[0])
    result = buf.fuse()
    np.testing.assert_array_equal(result.image, buf.frames[0])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        FocalStackBuffer(0)
    with pytest.raises(TypeError, match="capacity must be an int"):
        FocalStackBuffer(2.0)
    with pytest.raises(TypeError, match="engine"):
        FocalStackBuffer(2, engine="classical")
    buf = FocalStackBuffer(2)
    with pytest.raises(ValueError, match="empty buffer"):
        buf.fuse()
    buf.push(frames(1)[0])
    with pytest.raises(ValueError, match="shape"):
        buf.push(np.zeros((24, 33, 3), np.uint8))
    with pytest.raises(TypeError, match="dtype"):
        buf.push(np.zeros((24, 32, 3), np.uint16))
    with pytest.raises(ValueError, match="HxW"):
        buf.push(np.zeros((24,), np.uint8))
    with pytest.raises(TypeError, match="meta"):
        buf.push(frames(1)[0], meta=[1])


def textured(h=120, w=160, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    base = (base - base.min()) / (base.max() - base.min())
    return np.repeat((base * 255).astype(np.uint8)[..., None], 3, axis=2)


def test_align_brings_a_shifted_frame_onto_the_newest():
    import cv2

    reference = textured()
    shift = np.float32([[1, 0, 5], [0, 1, -3]])
    moved = cv2.warpAffine(reference, shift, (160, 120), borderMode=cv2.BORDER_REFLECT)
    buf = FocalStackBuffer(3, align=True)
    buf.push(reference)
    buf.push(moved)
    aligned = buf.frames[-1].astype(np.int16)
    inner = np.s_[10:-10, 10:-10]
    before = np.abs(moved.astype(np.int16) - reference)[inner].mean()
    after = np.abs(aligned - reference)[inner].mean()
    assert after < 0.2 * before


def test_align_restarts_when_the_view_drifts_too_far():
    import cv2

    reference = textured(seed=1)
    far = cv2.warpAffine(reference, np.float32([[1, 0, 30], [0, 1, 0]]), (160, 120), borderMode=cv2.BORDER_REFLECT)
    buf = FocalStackBuffer(3, align=True, max_drift=0.1)  # 30 px > 0.1 * 160
    buf.push(reference)
    buf.push(reference)
    buf.push(far)
    assert len(buf) == 1
    np.testing.assert_array_equal(buf.frames[0], far)  # restarted from the new frame, unwarped


def test_warp_pixel_map_moves_uint32_values_exactly():
    from surgifuse.align import SimilarityTransform
    from surgifuse.buffer import warp_pixel_map

    rng = np.random.default_rng(4)
    values = rng.integers(0, 2**32, (20, 30), dtype=np.uint32)
    moved = warp_pixel_map(values, SimilarityTransform(tx=3.0, ty=-2.0))
    assert moved.dtype == np.uint32
    np.testing.assert_array_equal(moved[0:18, 3:], values[2:20, 0:27])
    np.testing.assert_array_equal(warp_pixel_map(values, SimilarityTransform.identity()), values)


def test_aligning_buffer_measures_focus_on_the_raw_frame():
    import cv2

    from surgifuse.focus_measure import focus_map

    reference = textured(seed=2)
    moved = cv2.warpAffine(reference, np.float32([[1, 0, 5], [0, 1, -3]]), (160, 120), borderMode=cv2.BORDER_REFLECT)
    buf = FocalStackBuffer(2, align=True)
    buf.push(reference)
    buf.push(moved)
    inner = np.s_[12:-12, 12:-12]
    # an integer shift: the raw focus map moved back equals the reference's focus map exactly
    expected = focus_map(reference, threshold=buf.engine.threshold)  # the engine's own focus measure
    np.testing.assert_array_equal(buf.prepared[-1][inner], expected[inner])


def test_fuse_aligned_checks_the_transform_count():
    from surgifuse.align import SimilarityTransform
    from surgifuse.buffer import fuse_aligned

    with pytest.raises(ValueError, match="2 frames but 1 transforms"):
        fuse_aligned(ClassicalEngine(), frames(2), [SimilarityTransform.identity()])
