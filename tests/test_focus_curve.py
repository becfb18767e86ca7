"""Depth from each pixel's focus curve (surgifuse/focus_curve.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgifuse.errors import InputError, InputTypeError
from surgifuse.focus_curve import WORK_SIZE, FocusCurve, depth_from_focus_curve


def _texture(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 0.7)


def _stack_at(depth: float, k: int = 5, per_step: float = 1.2, h=96, w=128):
    """K frames of one texture whose defocus grows with the distance from a (sub-frame) depth."""
    base = _texture(h, w)
    return [cv2.GaussianBlur(base, (0, 0), max(0.3, per_step * abs(i - depth))) for i in range(k)]


@pytest.mark.parametrize("truth", [1.0, 1.3, 2.5, 2.8])
def test_the_peak_lands_between_frames_where_focus_does(truth):
    depth, confidence = depth_from_focus_curve(_stack_at(truth))
    inner = (slice(16, -16), slice(16, -16))
    assert abs(float(np.median(depth[inner])) - truth) < 0.15
    assert float(np.median(confidence[inner])) > 0.3


def test_a_flat_scene_has_no_confidence_and_texture_has_some():
    flat = [np.full((64, 64, 3), 120, np.uint8) for _ in range(4)]
    _, confidence = depth_from_focus_curve(flat)
    assert float(confidence.max()) == 0.0
    frames = _stack_at(2.0, h=64, w=64)
    for f in frames:
        f[:, :32] = 120  # the left half flat in every frame
    depth, confidence = depth_from_focus_curve(frames)
    assert float(np.median(confidence[:, :24])) < 0.05 < float(np.median(confidence[:, 40:]))
    assert abs(float(np.median(depth[:, 40:])) - 2.0) < 0.15


def test_frames_one_at_a_time_large_frames_and_16_bit():
    frames = [cv2.resize(f, (WORK_SIZE * 2, WORK_SIZE), interpolation=cv2.INTER_NEAREST) for f in _stack_at(1.5)]
    curve = FocusCurve(frames[0].shape)
    for f in frames:
        curve.add(f)
    depth, confidence = curve.result()
    assert depth.shape == confidence.shape == frames[0].shape[:2] and curve.work_shape == (WORK_SIZE // 2, WORK_SIZE)
    assert curve.result(full_size=False)[0].shape == curve.work_shape
    sixteen, _ = depth_from_focus_curve([f.astype(np.uint16) * 257 for f in _stack_at(1.5)])
    eight, _ = depth_from_focus_curve(_stack_at(1.5))
    np.testing.assert_allclose(sixteen, eight, atol=1e-3)


def test_bad_input_is_named():
    curve = FocusCurve((32, 32, 3))
    with pytest.raises(InputError, match="no frames"):
        curve.result()
    with pytest.raises(InputError, match=r"shape \(16, 16, 3\)"):
        curve.add(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InputTypeError, match="int32"):
        curve.add(np.zeros((32, 32, 3), np.int32))
    with pytest.raises(InputError, match="HxW"):
        FocusCurve((5,))
    with pytest.raises(InputError, match="at least one frame"):
        depth_from_focus_curve([])


@pytest.mark.parametrize("h, w", [(120, 200), (1230, 2050)])  # measured as it is, and reduced 2x to WORK_SIZE
def test_raw_frames_with_their_registration_give_the_registered_stack_s_depth(h, w):
    from surgifuse.align import SimilarityTransform

    # left half in focus at frame 1, right half at frame 3
    s = w / 200  # motion and band scale with the frame
    near, far = _stack_at(1.0, h=h, w=w), _stack_at(3.0, h=h, w=w)
    still = [np.concatenate([a[:, :w // 2], b[:, w // 2:]], axis=1) for a, b in zip(near, far)]
    expected, _ = depth_from_focus_curve(still)

    def depth_of(registered: bool) -> np.ndarray:
        curve = FocusCurve(still[0].shape)
        for i, frame in enumerate(still):
            # frame i as the camera saw it: moved by (8i, -2i) px (at 200 px) and a little magnified
            seen = SimilarityTransform.about_point(scale=1 + 0.004 * i, center=(w / 2, h / 2),
                                                   shift=(8.0 * i * s, -2.0 * i * s))
            raw = cv2.warpAffine(frame, seen.matrix, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
            curve.add(raw, seen.inverse() if registered else None)  # raw -> the stack's coordinates
        return curve.result()[0]

    band = (slice(int(20 * s), -int(20 * s)), slice(int(60 * s), int(140 * s)))  # across the depth step
    error = float(np.mean(np.abs(depth_of(True)[band] - expected[band])))
    assert error < 0.2
    assert float(np.mean(np.abs(depth_of(False)[band] - expected[band]))) > 2 * error  # the test can tell
