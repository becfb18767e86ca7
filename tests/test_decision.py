"""The C++ stack decision against a small NumPy reference of the same rules, plus invariants and errors."""

from __future__ import annotations

import numpy as np
import pytest

from surgifuse import _core, decision

F32 = np.float32


# ----------------------------------------------------------------------------- NumPy reference


def window_counts(labels: np.ndarray, n_labels: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (n_labels, H, W) of each label over the (2r+1)^2 window clipped to the image, and
    the number of pixels in each clipped window."""
    h, w = labels.shape
    padded = np.pad(labels.astype(np.int64), r, constant_values=-1)
    counts = np.zeros((n_labels, h, w), np.int64)
    n = np.zeros((h, w), np.int64)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            shifted = padded[dy : dy + h, dx : dx + w]
            n += shifted >= 0
            for lab in range(n_labels):
                counts[lab] += shifted == lab
    return counts, n


def reference_decision(maps, filter_radius, flat_threshold):
    f = np.stack(maps).astype(np.int64)  # (K, H, W)
    k = f.shape[0]
    best = f.max(0)
    label = f.argmax(0)  # first maximum: lowest index on ties
    second = np.sort(f, axis=0)[-2] if k > 1 else np.zeros_like(best)
    flat = best <= flat_threshold
    raw = np.where(flat, k, label)
    contrast = np.zeros(best.shape, F32)
    np.divide((best - second).astype(F32), best.astype(F32), out=contrast, where=~flat)
    before = np.take_along_axis(f, np.clip(label - 1, 0, k - 1)[None], 0)[0].astype(F32)
    after = np.take_along_axis(f, np.clip(label + 1, 0, k - 1)[None], 0)[0].astype(F32)
    denom = before - F32(2) * best.astype(F32) + after
    fit = (label > 0) & (label < k - 1) & (denom < 0) & ~flat
    offset = np.zeros(best.shape, F32)
    np.divide(before - after, F32(2) * denom, out=offset, where=fit)
    offset = np.clip(offset, F32(-0.5), F32(0.5))

    counts, n = window_counts(raw, k + 1, filter_radius)
    mode = counts.argmax(0)  # lowest label on ties
    count = counts.max(0)
    own = raw == mode
    depth = np.where(mode == k, F32(0.5 * (k - 1)), np.where(own, mode.astype(F32) + offset, mode.astype(F32)))
    agreement = count.astype(F32) / n.astype(F32)
    confidence = np.where((mode < k) & own, contrast * agreement, F32(0))
    return mode.astype(np.uint8), depth.astype(F32), confidence.astype(F32)


def reference_blend(frames, labels, blend_radius):
    stack = np.stack(frames).astype(np.int64)  # (K, H, W[, C])
    k = stack.shape[0]
    if stack.ndim == 3:
        stack = stack[..., None]
    counts, n = window_counts(labels, k + 1, blend_radius)
    weights = counts[:k] * k + counts[k][None]  # frame i: K per vote for i, 1 per "no information" vote
    total = (n * k)[..., None]
    acc = (weights[..., None] * stack).sum(0)
    out = (acc + total // 2) // total
    centre = labels.astype(np.int64)
    uniform = (centre < k) & (np.take_along_axis(counts, np.minimum(centre, k)[None], 0)[0] == n)
    copied = np.take_along_axis(stack, np.minimum(centre, k - 1)[None, ..., None], 0)[0]
    out = np.where(uniform[..., None], copied, out)
    out = out.astype(frames[0].dtype)
    return out if frames[0].ndim == 3 else out[..., 0]


def random_case(rng, *, k, h, w, channels=3, dtype=np.uint8, max_focus=6):
    # A small focus range makes ties, flats and label changes frequent; blocks make regions.
    block = rng.integers(1, 6)
    coarse = rng.integers(0, max_focus, (k, h // block + 1, w // block + 1))
    maps = [np.ascontiguousarray(np.kron(c, np.ones((block, block)))[:h, :w].astype(np.uint32)) for c in coarse]
    maps = [np.where(rng.random((h, w)) < 0.1, rng.integers(0, max_focus, (h, w)), m).astype(np.uint32) for m in maps]
    shape = (h, w) if channels == 0 else (h, w, channels)
    high = np.iinfo(dtype).max
    frames = [rng.integers(0, high, shape, endpoint=True).astype(dtype) for _ in range(k)]
    return frames, maps


# ----------------------------------------------------------------------------- against the reference

CASES = [
    # k, h, w, channels, filter_radius, blend_radius, flat_threshold
    (1, 9, 13, 3, 1, 1, 0),
    (2, 17, 23, 3, 0, 0, 0),
    (3, 1, 1, 3, 2, 2, 0),
    (3, 5, 37, 1, 3, 2, 1),
    (5, 31, 37, 3, 3, 2, 0),
    (5, 40, 33, 0, 2, 3, 2),
    (5, 64, 70, 4, 7, 7, 0),
    (7, 33, 29, 2, 1, 4, 3),
    (8, 30, 41, 3, 3, 2, 0),
    (12, 26, 19, 3, 2, 1, 1),
    (31, 12, 21, 3, 1, 1, 0),
]


@pytest.mark.parametrize("k,h,w,channels,rf,rb,flat", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_fuse_stack_matches_numpy_reference(k, h, w, channels, rf, rb, flat, seed):
    rng = np.random.default_rng(seed * 1000 + k * 31 + h)
    frames, maps = random_case(rng, k=k, h=h, w=w, channels=channels)
    out = decision.fuse_stack(frames, maps, filter_radius=rf, blend_radius=rb, flat_threshold=flat)
    labels, depth, confidence = reference_decision(maps, rf, flat)
    np.testing.assert_array_equal(out.labels, labels)
    np.testing.assert_allclose(out.depth_index, depth, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.confidence, confidence, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.image, reference_blend(frames, labels, rb))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_do_not_change_the_result(threads):
    rng = np.random.default_rng(7)
    frames, maps = random_case(rng, k=5, h=203, w=61)
    one = decision.fuse_stack(frames, maps, threads=1)
    many = decision.fuse_stack(frames, maps, threads=threads)
    for a, b in zip((one.image, one.depth_index, one.confidence, one.labels), (many.image, many.depth_index, many.confidence, many.labels)):
        np.testing.assert_array_equal(a, b)


def test_decision_alone_and_blend_alone_compose_to_fuse_stack():
    rng = np.random.default_rng(3)
    frames, maps = random_case(rng, k=4, h=45, w=52)
    labels, depth, confidence = decision.stack_decision(maps, filter_radius=2)
    fused = decision.fuse_stack(frames, maps, filter_radius=2, blend_radius=3)
    np.testing.assert_array_equal(labels, fused.labels)
    np.testing.assert_array_equal(depth, fused.depth_index)
    np.testing.assert_array_equal(confidence, fused.confidence)
    np.testing.assert_array_equal(decision.stack_blend(frames, labels, blend_radius=3), fused.image)


def test_stack_blend_matches_reference_with_flat_labels():
    rng = np.random.default_rng(11)
    frames, _ = random_case(rng, k=5, h=33, w=47, dtype=np.uint16)
    labels = rng.integers(0, 6, (33, 47)).astype(np.uint8)  # includes K = 5, "no information"
    labels[:10, :20] = 5  # a whole flat region: the average of every frame
    np.testing.assert_array_equal(decision.stack_blend(frames, labels, blend_radius=2), reference_blend(frames, labels, 2))


# ----------------------------------------------------------------------------- known values


def test_argmax_parabola_known_values():
    # One pixel, K=3: focus 2, 4, 3 -> peak at frame 1, vertex at 1 + (2-3)/(2*(2-8+3)) = 1 + 1/6.
    maps = [np.full((1, 1), v, np.uint32) for v in (2, 4, 3)]
    labels, depth, confidence = decision.stack_decision(maps, filter_radius=0)
    assert labels[0, 0] == 1
    assert depth[0, 0] == pytest.approx(1 + 1 / 6, abs=1e-6)
    assert confidence[0, 0] == pytest.approx((4 - 3) / 4)


def test_end_frames_and_flat_pixels_have_no_offset():
    maps = [np.array([[9, 0]], np.uint32), np.array([[5, 0]], np.uint32), np.array([[1, 0]], np.uint32)]
    labels, depth, confidence = decision.stack_decision(maps, filter_radius=0)
    assert labels.tolist() == [[0, 3]]  # second pixel: no information (label K)
    assert depth.tolist() == [[0.0, 1.0]]  # flat pixel: the middle of the stack
    assert confidence[0, 1] == 0.0


def test_majority_filter_removes_an_isolated_label():
    maps = [np.full((9, 9), 5, np.uint32), np.zeros((9, 9), np.uint32)]
    maps[1][4, 4] = 50  # one pixel says frame 1
    labels, _, confidence = decision.stack_decision(maps, filter_radius=1)
    assert (labels == 0).all()
    assert confidence[4, 4] == 0.0  # its own arg-max disagrees with the filtered label
    assert confidence[0, 0] == pytest.approx(1.0)


def test_blend_is_a_ramp_across_a_boundary():
    frames = [np.zeros((1, 8), np.uint8), np.full((1, 8), 200, np.uint8)]
    labels = np.array([[0, 0, 0, 0, 1, 1, 1, 1]], np.uint8)
    out = decision.stack_blend(frames, labels, blend_radius=1)
    # windows of 3 (2 at the ends): 0, 0, 0, 1/3, 2/3, 1, 1, 1 of frame 1
    assert out.tolist() == [[0, 0, 0, 67, 133, 200, 200, 200]]


def test_identical_frames_fuse_to_that_frame_exactly():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    frame[:, :20] = 77  # a flat part: no focus information, averaged
    maps = [rng.integers(0, 3, (40, 50)).astype(np.uint32) for _ in range(4)]
    out = decision.fuse_stack([frame] * 4, maps, blend_radius=3)
    np.testing.assert_array_equal(out.image, frame)


def test_uint16_preserved_and_ranges():
    rng = np.random.default_rng(9)
    frames, maps = random_case(rng, k=6, h=50, w=44, dtype=np.uint16, max_focus=40)
    out = decision.fuse_stack(frames, maps)
    assert out.image.dtype == np.uint16 and out.image.shape == frames[0].shape
    assert out.depth_index.dtype == np.float32 and out.confidence.dtype == np.float32
    assert 0.0 <= out.depth_index.min() and out.depth_index.max() <= 5.0
    assert 0.0 <= out.confidence.min() and out.confidence.max() <= 1.0
    lo, hi = np.min(frames, axis=0), np.max(frames, axis=0)
    assert (out.image >= lo).all() and (out.image <= hi).all()  # a convex blend never overshoots


def test_large_focus_values_keep_unsigned_order():
    maps = [np.full((4, 8), v, np.uint32) for v in (2**31 + 5, 2**31 - 1, 7)]
    labels, _, _ = decision.stack_decision(maps, filter_radius=0)
    assert (labels == 0).all()


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_problem():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 3
    maps = [np.zeros((8, 8), np.uint32)] * 3
    with pytest.raises(ValueError, match="3 frames but 2 focus maps"):
        decision.fuse_stack(frames, maps[:2])
    with pytest.raises(ValueError, match="shape"):
        decision.fuse_stack(frames[:2] + [np.zeros((8, 9, 3), np.uint8)], maps)
    with pytest.raises(ValueError, match="sizes must match|focus maps are"):
        decision.fuse_stack(frames, [np.zeros((8, 9), np.uint32)] * 3)
    with pytest.raises(TypeError, match="uint32"):
        decision.fuse_stack(frames, [np.zeros((8, 8), np.int32)] * 3)
    with pytest.raises(TypeError, match="uint8 or uint16"):
        decision.fuse_stack([np.zeros((8, 8, 3), np.float32)] * 3, maps)
    with pytest.raises(ValueError, match="filter_radius"):
        decision.fuse_stack(frames, maps, filter_radius=8)
    with pytest.raises(ValueError, match="blend_radius"):
        decision.fuse_stack(frames, maps, blend_radius=-1)
    with pytest.raises(ValueError, match="at least one frame"):
        decision.fuse_stack([], [])
    with pytest.raises(ValueError, match="at most 31"):
        decision.stack_decision([np.zeros((4, 4), np.uint32)] * 32)
    with pytest.raises(ValueError, match="device"):
        decision.fuse_stack(frames, maps, device="tpu")
    with pytest.raises(TypeError, match="labels must be uint8"):
        decision.stack_blend(frames, np.zeros((8, 8), np.int64))


def test_core_rejects_bad_inputs_without_copying():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    maps = [np.zeros((8, 8), np.uint32)] * 2
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.fuse_stack(frames, [np.zeros((8, 16), np.uint32)[:, ::2]] * 2)
    with pytest.raises(TypeError, match="numpy array"):
        _core.fuse_stack(frames, [[0] * 8] * 2)
    with pytest.raises(TypeError, match="dtype"):
        _core.fuse_stack([frames[0], frames[1].astype(np.uint16)], maps)
    with pytest.raises(ValueError, match="labels must be in"):
        _core.stack_blend(frames, np.full((8, 8), 3, np.uint8))


# ----------------------------------------------------------------------------- CUDA (skipped without a device)


def _cuda_available() -> bool:
    from conftest import cuda_device_available

    return cuda_device_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("k,h,w,channels,rf,rb,flat", CASES)
def test_cuda_equals_cpu(k, h, w, channels, rf, rb, flat):
    for dtype in (np.uint8, np.uint16):
        rng = np.random.default_rng(k * 7 + h)
        frames, maps = random_case(rng, k=k, h=h, w=w, channels=channels, dtype=dtype)
        cpu = decision.fuse_stack(frames, maps, filter_radius=rf, blend_radius=rb, flat_threshold=flat)
        gpu = decision.fuse_stack(frames, maps, filter_radius=rf, blend_radius=rb, flat_threshold=flat, device="cuda")
        np.testing.assert_array_equal(gpu.labels, cpu.labels)
        np.testing.assert_array_equal(gpu.image, cpu.image)
        np.testing.assert_allclose(gpu.depth_index, cpu.depth_index, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gpu.confidence, cpu.confidence, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- the two compiled copies


ISA_SCRIPT = """
import hashlib, sys
import numpy as np
from surgifuse import _core, decision
rng = np.random.default_rng(11)
out = [_core.decision_isa()]
# The last case is the largest stack and blend window: the greatest weights (K * 225) of the blend.
for k, h, w, c, dtype, rb in ((5, 97, 203, 3, np.uint8, 4), (4, 61, 77, 1, np.uint8, 4), (5, 45, 90, 3, np.uint16, 4),
                              (3, 33, 50, 2, np.uint8, 4), (31, 40, 150, 3, np.uint8, 7)):
    shape = (h, w, c) if c > 1 else (h, w)
    frames = [rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype) for _ in range(k)]
    # Noisy focus, as on flat fundus regions: almost every window holds several labels.
    maps = [rng.integers(0, 50, (h, w)).astype(np.uint32) for _ in range(k)]
    r = decision.fuse_stack(frames, maps, filter_radius=2, blend_radius=rb)
    digest = hashlib.sha256()
    for a in (r.image, r.labels, r.depth_index, r.confidence):
        digest.update(np.ascontiguousarray(a).tobytes())
    out.append(digest.hexdigest())
print(" ".join(out))
"""


def test_compiled_copies_agree_bit_for_bit():
    # Every copy this CPU can run (avx512 > avx2 > baseline; SURGIFUSE_DECISION_ISA caps the choice)
    # must give the same bits, the vector blend kernels included.
    import os
    import subprocess
    import sys

    order = ["baseline", "avx2", "avx512"]
    best = _core.decision_isa()
    if best == "baseline":
        pytest.skip("this CPU runs only the baseline copy of the stack decision")
    runs = {}
    for isa in order[: order.index(best) + 1]:
        env = {**os.environ, "SURGIFUSE_DECISION_ISA": isa}
        done = subprocess.run([sys.executable, "-c", ISA_SCRIPT], env=env, capture_output=True, text=True, check=True)
        runs[isa] = done.stdout.split()
        assert runs[isa][0] == isa
    assert len(runs) >= 2
    for isa, digests in runs.items():
        assert digests[1:] == runs["baseline"][1:], f"the {isa} copy differs from the baseline"


def test_noisy_labels_blend_matches_reference_rgb8():
    # Long boundary runs (the vectorised eight-pixel blend) and their tails, against the NumPy rule.
    rng = np.random.default_rng(5)
    k, h, w = 5, 40, 203
    frames = [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(k)]
    maps = [rng.integers(0, 50, (h, w)).astype(np.uint32) for _ in range(k)]
    out = decision.fuse_stack(frames, maps, filter_radius=1, blend_radius=4)
    np.testing.assert_array_equal(out.image, reference_blend(frames, out.labels, 4))
