"""Alignment: similarity algebra, warping, estimation on known transforms, stacks, real data."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from surgifuse.align import (
    AlignmentImage,
    SimilarityTransform,
    align_stack,
    estimate_similarity,
    prepare_alignment,
    warp,
)


def _moving_view(scene: np.ndarray, truth: SimilarityTransform) -> np.ndarray:
    """The frame a camera moved by ``truth`` (moving -> reference) sees: moving(p) = scene(truth(p))."""
    h, w = scene.shape[:2]
    return cv2.warpAffine(scene, truth.matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def _focus(image: np.ndarray, sharp_left: bool, sigma: float = 2.5) -> np.ndarray:
    """Mimic a focal-stack frame: sharp on one half, defocused on the other (smooth transition)."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)
    w = image.shape[1]
    ramp = np.clip((np.arange(w) - 0.4 * w) / (0.2 * w), 0, 1).astype(np.float32)
    weight = (ramp if sharp_left else 1 - ramp)[None, :, None]
    return np.clip(image * (1 - weight) + blurred * weight, 0, 255).astype(np.uint8)


def _residual(estimate: SimilarityTransform, truth: SimilarityTransform, shape) -> float:
    """Largest distance (px) between where the estimate and the truth send a corner."""
    return estimate.compose(truth.inverse()).max_displacement(shape)


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skdata.astronaut()[64:448])  # 384x512 RGB


# ------------------------------------------------------------------------------------ algebra


def test_matrix_inverse_compose_apply(rng):
    t = SimilarityTransform(scale=1.02, rotation=0.1, tx=3.0, ty=-4.5)
    u = SimilarityTransform(scale=0.97, rotation=-0.3, tx=-1.0, ty=2.0)
    points = rng.uniform(-100, 100, (10, 2))
    np.testing.assert_allclose(t.inverse().apply(t.apply(points)), points, atol=1e-9)
    np.testing.assert_allclose(t.compose(u).apply(points), t.apply(u.apply(points)), atol=1e-9)
    np.testing.assert_allclose((t @ t.inverse()).matrix, np.eye(2, 3), atol=1e-12)
    back = SimilarityTransform.from_matrix(t.matrix)
    assert (back.scale, back.rotation, back.tx, back.ty) == pytest.approx((1.02, 0.1, 3.0, -4.5))
    np.testing.assert_allclose(t.apply(np.array([[0.0, 0.0]])), [[3.0, -4.5]])


def test_about_point_fixes_the_centre():
    t = SimilarityTransform.about_point(scale=1.01, rotation=0.02, center=(50.0, 30.0), shift=(2.0, -1.0))
    np.testing.assert_allclose(t.apply(np.array([[50.0, 30.0]])), [[52.0, 29.0]], atol=1e-12)
    assert t.scale == pytest.approx(1.01) and t.rotation == pytest.approx(0.02)


def test_from_matrix_projects_affine_to_similarity():
    shear = np.array([[1.0, 0.02, 5.0], [0.0, 1.0, 1.0]])
    t = SimilarityTransform.from_matrix(shear)
    assert t.scale == pytest.approx(math.hypot(1.0, 0.01)) and (t.tx, t.ty) == (5.0, 1.0)
    with pytest.raises(ValueError, match="2x3"):
        SimilarityTransform.from_matrix(np.eye(2))


def test_max_displacement():
    assert SimilarityTransform(tx=3.0, ty=4.0).max_displacement((10, 10)) == pytest.approx(5.0)
    # 1 % magnification about the top-left corner moves the far corner by 1 % of the diagonal.
    assert SimilarityTransform(scale=1.01).max_displacement((101, 201)) == pytest.approx(0.01 * math.hypot(200, 100))


# ------------------------------------------------------------------------------------ warp


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [0, 3])
def test_warp_integer_shift_matches_roll(rng, dtype, channels):
    shape = (40, 50, channels) if channels else (40, 50)
    frame = rng.integers(0, 200, shape).astype(dtype)
    out = warp(frame, SimilarityTransform(tx=3.0, ty=-2.0))
    assert out.shape == frame.shape and out.dtype == frame.dtype
    # out(p) = frame(p - t): content moves by +3 in x and -2 in y.
    np.testing.assert_array_equal(out[5:-5, 5:-5], np.roll(frame, (-2, 3), axis=(0, 1))[5:-5, 5:-5])


def test_warp_identity_and_mask(rng):
    frame = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp(frame, SimilarityTransform()), frame)
    out, mask = warp(frame, SimilarityTransform(tx=5.0), return_mask=True)
    assert mask.dtype == bool and not mask[:, :5].any() and mask[:, 5:].all()
    np.testing.assert_array_equal(out[:, :5], np.repeat(frame[:, :1], 5, axis=1))  # replicated border


def test_warp_errors(rng):
    with pytest.raises(TypeError, match="SimilarityTransform"):
        warp(np.zeros((8, 8)), np.eye(2, 3))
    with pytest.raises(ValueError, match="interpolation"):
        warp(np.zeros((8, 8)), SimilarityTransform(), interpolation="lanczos9")
    with pytest.raises(ValueError, match="HxW"):
        warp(np.zeros(8), SimilarityTransform())


# ------------------------------------------------------------------------------------ estimation


@pytest.mark.parametrize(
    "scale, rotation_deg, shift",
    [(1.01, 0.0, (0.0, 0.0)), (0.99, 0.0, (7.5, -6.2)), (1.006, 0.8, (-8.0, 3.3)), (0.993, -1.5, (2.2, 7.9))],
)
def test_estimate_known_similarity_across_focus(astronaut, scale, rotation_deg, shift):
    h, w = astronaut.shape[:2]
    truth = SimilarityTransform.about_point(scale=scale, rotation=math.radians(rotation_deg),
                                            center=((w - 1) / 2, (h - 1) / 2), shift=shift)
    reference = _focus(astronaut, sharp_left=True)
    moving = _focus(_moving_view(astronaut, truth), sharp_left=False)  # focused elsewhere
    est = estimate_similarity(reference, moving)
    assert abs(est.scale - scale) < 1e-3
    assert abs(est.rotation - truth.rotation) < math.radians(0.05)
    assert _residual(est, truth, (h, w)) < 0.3
    assert est.score > 0.9


def test_estimate_at_1080p_retina():
    retina = skdata.retina()
    scene = cv2.resize(retina[405:1005, 172:1239], (1920, 1080), interpolation=cv2.INTER_CUBIC)
    truth = SimilarityTransform.about_point(scale=1.008, rotation=math.radians(0.5), center=(959.5, 539.5),
                                            shift=(-6.0, 4.5))
    est = estimate_similarity(_focus(scene, True, 4.0), _focus(_moving_view(scene, truth), False, 4.0))
    assert abs(est.scale - truth.scale) < 1e-3
    assert _residual(est, truth, scene.shape) < 0.3  # at full resolution, registered on 320x180


def test_identity_on_identical_frames(astronaut):
    est = estimate_similarity(astronaut, astronaut.copy())
    assert est.scale == pytest.approx(1.0, abs=1e-6)
    assert abs(est.rotation) < 1e-6 and abs(est.tx) < 1e-3 and abs(est.ty) < 1e-3


def test_estimate_inverse_direction(astronaut):
    truth = SimilarityTransform(tx=6.0, ty=-3.0)
    moving = _moving_view(astronaut, truth)
    forward = estimate_similarity(astronaut, moving)
    backward = estimate_similarity(moving, astronaut)
    assert forward.tx == pytest.approx(6.0, abs=0.15) and forward.ty == pytest.approx(-3.0, abs=0.15)
    np.testing.assert_allclose(backward.matrix, forward.inverse().matrix, atol=0.15)


def test_grey_and_uint16_inputs_agree(astronaut):
    truth = SimilarityTransform(tx=-4.0, ty=2.5)
    ref, mov = astronaut, _moving_view(astronaut, truth)
    rgb = estimate_similarity(ref, mov)
    grey = estimate_similarity(cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY), cv2.cvtColor(mov, cv2.COLOR_RGB2GRAY))
    deep = estimate_similarity(ref.astype(np.uint16) * 257, mov.astype(np.uint16) * 257)
    for est in (rgb, grey, deep):
        assert _residual(est, truth, ref.shape) < 0.2


def test_prepared_frames_are_reused_untouched(astronaut):
    ref = prepare_alignment(astronaut)
    mov = prepare_alignment(_moving_view(astronaut, SimilarityTransform(tx=3.0)))
    before = ref.image.copy(), mov.image.copy()
    first = estimate_similarity(ref, mov)
    second = estimate_similarity(ref, mov)
    np.testing.assert_array_equal(ref.image, before[0])  # OpenCV's phaseCorrelate writes its inputs
    np.testing.assert_array_equal(mov.image, before[1])
    assert first == second


def test_prepare_alignment_reduces_by_an_integer_factor():
    prepared = prepare_alignment(np.zeros((1080, 1920, 3), np.uint8), max_side=320)
    assert isinstance(prepared, AlignmentImage)
    assert prepared.image.shape == (180, 320) and prepared.factor == 6 and prepared.image.dtype == np.float32
    odd = prepare_alignment(np.zeros((1536, 2048), np.uint8), max_side=320)
    assert odd.factor == 7 and odd.image.shape == (1536 // 7, 2048 // 7)


def test_chained_estimates_match_direct(astronaut):
    h, w = astronaut.shape[:2]
    centre = ((w - 1) / 2, (h - 1) / 2)
    t1 = SimilarityTransform.about_point(scale=1.004, center=centre, shift=(2.0, -1.0))
    t2 = SimilarityTransform.about_point(scale=1.004, center=centre, shift=(1.5, 2.0))
    f0 = astronaut
    f1 = _moving_view(astronaut, t1)  # f1 -> f0 by t1
    f2 = _moving_view(astronaut, t1 @ t2)  # f2 -> f1 by t2
    chained = estimate_similarity(f0, f1) @ estimate_similarity(f1, f2)
    assert _residual(chained, t1 @ t2, (h, w)) < 0.3


def test_flat_frames_fall_back_without_crashing():
    flat = np.full((64, 64), 100, np.uint8)
    est = estimate_similarity(flat, flat)
    assert np.isfinite(est.matrix).all() and math.isnan(est.score)
    assert est.max_displacement(flat.shape) < 1.0


def test_estimate_errors(astronaut):
    with pytest.raises(ValueError, match="512x384 but moving is 500x384"):
        estimate_similarity(astronaut, astronaut[:, :500])
    with pytest.raises(ValueError, match="too small"):
        estimate_similarity(np.zeros((10, 40)), np.zeros((10, 40)))
    with pytest.raises(ValueError, match="max_side"):
        estimate_similarity(astronaut, astronaut, max_side=4)
    with pytest.raises(ValueError, match="sigma"):
        estimate_similarity(astronaut, astronaut, sigma=-1.0)
    with pytest.raises(ValueError, match="HxW"):
        prepare_alignment(np.zeros((4, 4, 4, 4)))


# ------------------------------------------------------------------------------------ stacks


def test_align_stack_reference_and_order(astronaut):
    shifts = [(-4.0, 2.0), (0.0, 0.0), (3.0, 5.0), (6.0, -2.0)]
    frames = [_moving_view(astronaut, SimilarityTransform(tx=dx, ty=dy)) for dx, dy in shifts]
    aligned, transforms = align_stack(frames, reference=1)
    assert aligned[1] is frames[1] and transforms[1] == SimilarityTransform()
    for (dx, dy), t in zip(shifts, transforms):
        assert t.tx == pytest.approx(dx, abs=0.2) and t.ty == pytest.approx(dy, abs=0.2)
    middle = align_stack(frames)[1]
    assert middle[2] == SimilarityTransform()  # K // 2
    inner = (slice(12, -12), slice(12, -12))
    for a in aligned:
        assert np.abs(a[inner].astype(float) - astronaut[inner]).mean() < 3.0


def test_align_stack_errors(astronaut):
    with pytest.raises(ValueError, match="outside a stack of 2"):
        align_stack([astronaut, astronaut], reference=2)
    with pytest.raises(ValueError, match="reference"):
        align_stack([astronaut, astronaut], reference="centre")
    with pytest.raises(TypeError, match="reference"):
        align_stack([astronaut, astronaut], reference=1.0)
    with pytest.raises(ValueError, match="at least one frame"):
        align_stack([])
    with pytest.raises(ValueError, match="frame 1 has shape"):
        align_stack([astronaut, astronaut[:-1]])


def test_synthetic_breathing_and_motion_is_undone():
    from surgifuse import synth

    h, w = 192, 256
    stack = synth.generate_stack(3, height=h, width=w, k=5, scene="texture", instrument=False,
                                 breathing=0.01, motion=6.0)
    _, transforms = align_stack(stack.frames)
    for est, ref_to_frame in zip(transforms, stack.meta["frame_transforms"]):
        frame_to_ref = SimilarityTransform.from_matrix(np.asarray(ref_to_frame)).inverse()
        before = frame_to_ref.max_displacement((h, w))
        after = _residual(est, frame_to_ref, (h, w))
        assert after < 0.5 and (before == 0 or after < 0.2 * before)


def test_real_pcb_stack_alignment_raises_agreement(shared_dir):
    folder = shared_dir / "data" / "real" / "pcb-macro"
    from surgifuse.imageio import read_stack

    frames, _ = read_stack(folder)
    small = [cv2.resize(f, (512, 384), interpolation=cv2.INTER_AREA) for f in frames]
    aligned, transforms = align_stack(small)
    # The camera moved and magnification changed with focus (upstream: "NOT aligned").
    assert max(t.max_displacement((384, 512)) for t in transforms) > 4.0
    scales = [t.scale for t in transforms]
    assert max(scales) - min(scales) > 0.01

    def structure(frame):
        g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        band = cv2.GaussianBlur(g, (0, 0), 1) - cv2.GaussianBlur(g, (0, 0), 4)
        band = band[20:-20, 20:-20].ravel()
        return (band - band.mean()) / band.std()

    ref = structure(small[len(small) // 2])
    for i, (raw, reg) in enumerate(zip(small, aligned)):
        if i == len(small) // 2:
            continue
        before = float(np.mean(structure(raw) * ref))
        after = float(np.mean(structure(reg) * ref))
        assert after > before + 0.05, (i, before, after)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgb_linear_warp_equals_warping_each_channel(rng, dtype):
    # warp() takes a four-channel detour for speed; it must not change a single value.
    high = np.iinfo(dtype).max
    frame = rng.integers(0, high, (67, 91, 3), endpoint=True).astype(dtype)
    t = SimilarityTransform(scale=1.013, rotation=0.02, tx=2.3, ty=-1.7)
    out = warp(frame, t, interpolation="linear")
    per_channel = np.stack([warp(np.ascontiguousarray(frame[..., c]), t, interpolation="linear") for c in range(3)], axis=-1)
    np.testing.assert_array_equal(out, per_channel)
    assert out.dtype == frame.dtype


def test_warp_onto_keeps_the_background_where_the_source_is_outside(rng):
    from surgifuse.align import warp_onto

    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    background = np.full_like(frame, 7)
    t = SimilarityTransform(tx=5.0, ty=-3.0)
    out = warp_onto(frame, t, background)
    # out(p) = frame(p - t): content moves right by 5 and up by 3; columns 0..4 and the last 3 rows
    # have no source pixel and show the background.
    np.testing.assert_array_equal(out[:-3, 5:], frame[3:, :-5])
    assert (out[:, :5] == 7).all() and (out[-3:, :] == 7).all()
    assert (background == 7).all()  # not written
    grey = warp_onto(frame[..., 0].astype(np.float32), t, np.full((40, 60), -1.0, np.float32))
    assert (grey[:, :5] == -1).all()
    with pytest.raises(ValueError, match="background must match"):
        warp_onto(frame, t, background[..., 0])


def test_warp_onto_fills_exactly_where_the_nearest_source_is_outside_under_rotation_and_scale(rng):
    from surgifuse.align import warp, warp_onto

    frame = rng.integers(10, 256, (90, 120, 3), dtype=np.uint8)
    background = np.zeros_like(frame)
    t = SimilarityTransform(scale=1.03, rotation=0.05, tx=-7.5, ty=4.25)
    out = warp_onto(frame, t, background)
    # brute force: each output pixel's source point, rounded as nearest-neighbour sampling does
    ys, xs = np.mgrid[0:90, 0:120]
    src = t.inverse().apply(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
    sx, sy = np.floor(src[:, 0] + 0.5), np.floor(src[:, 1] + 0.5)
    inside = ((sx >= 0) & (sx < 120) & (sy >= 0) & (sy < 90)).reshape(90, 120)
    assert 0.1 < 1 - inside.mean() < 0.5  # the test covers a real border
    shown = out.max(axis=2) > 0
    # the rounding of a coordinate that lands on a half pixel may go either way: allow those
    border = np.abs(np.stack([src[:, 0] % 1, src[:, 1] % 1]) - 0.5).min(axis=0).reshape(90, 120) < 1e-6
    assert np.array_equal(shown[~border], inside[~border])
    np.testing.assert_array_equal(out[inside], warp(frame, t)[inside])


def test_nearest_warp_with_fill_takes_the_fill_outside_and_never_invents_a_label(rng):
    # The live processor brings the depth (label) map back with fill=: outside the frame the fill
    # value, inside a value one of the source pixels around the mapped position holds, never a mix
    # of two labels. Which of the neighbours wins at a half-pixel tie is OpenCV's choice, not ours.
    from surgifuse.align import warp

    h, w = 90, 130
    labels = rng.integers(0, 5, (h, w)).astype(np.float32)
    fill = 7.0  # not a label, so every fill pixel is visible
    for t in (SimilarityTransform(scale=1.013, rotation=0.004, tx=3.4, ty=-2.6),
              SimilarityTransform(scale=0.987, rotation=-0.01, tx=-6.2, ty=1.5)):
        got = warp(labels, t, interpolation="nearest", fill=fill)
        ys, xs = np.mgrid[0:h, 0:w]
        src = t.inverse().apply(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64))
        sx, sy = src[:, 0].reshape(h, w), src[:, 1].reshape(h, w)
        outside = (sx < -1) | (sy < -1) | (sx > w) | (sy > h)
        inside = (sx >= 0) & (sy >= 0) & (sx <= w - 1) & (sy <= h - 1)
        assert outside.sum() > 0 and (got[outside] == fill).all()
        assert set(np.unique(got)) <= {0.0, 1.0, 2.0, 3.0, 4.0, fill}
        # Inside: the value of one of the four source pixels around the mapped position.
        x0 = np.clip(np.floor(sx[inside]).astype(int), 0, w - 1)
        y0 = np.clip(np.floor(sy[inside]).astype(int), 0, h - 1)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        v = got[inside]
        near = (v == labels[y0, x0]) | (v == labels[y0, x1]) | (v == labels[y1, x0]) | (v == labels[y1, x1])
        assert near.all()
    with pytest.raises(TypeError, match="fill must be a number"):
        warp(labels, SimilarityTransform.identity(), fill="2")


# --------------------------------------------------------------------- alignment that never hurts
def _rms_error(estimate, truth, shape):
    h, w = shape
    ys, xs = np.mgrid[0:h:8, 0:w:8]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    return float(np.sqrt(np.mean(np.sum((estimate.apply(points) - truth.apply(points)) ** 2, axis=1))))


@pytest.mark.parametrize("seed", [500, 502, 505])
def test_a_still_stack_comes_out_exactly_as_it_went_in(seed):
    # Disc defocus, a sharp instrument in front, noise and JPEG: the defocus difference between
    # frames looks like up to a pixel of scale to an intensity fit (it was applied, and cost the
    # fusion up to 1.7 dB on such stacks). Nothing moved, so nothing may be resampled.
    from surgifuse import synth
    from surgifuse.align import register_stack

    stack = synth.generate_stack(seed, height=384, width=512, k=5, scene="mixed", instrument=True, noise=True,
                                 jpeg_quality=90, numerical_aperture=0.13)
    frames = list(stack.frames)
    aligned, transforms = align_stack(frames)
    assert all(a is f for a, f in zip(aligned, frames))
    assert all(t.max_displacement(frames[0].shape) == 0 for t in transforms)
    registrations = register_stack(frames)
    assert not any(r.significant for r in registrations)
    assert max(r.estimate.max_displacement(frames[0].shape) for r in registrations) > 0  # there was a pull


@pytest.mark.parametrize("seed", [500, 501, 503])
def test_breathing_and_motion_are_corrected_to_a_third_of_a_pixel(seed):
    from surgifuse import synth
    from surgifuse.align import register_stack

    h, w = 384, 512
    stack = synth.generate_stack(seed, height=h, width=w, k=5, scene="mixed", instrument=True, noise=True,
                                 jpeg_quality=90, numerical_aperture=0.13, breathing=0.012, motion=1.5)
    registrations = register_stack(list(stack.frames))
    for i, r in enumerate(registrations):
        truth = SimilarityTransform.from_matrix(np.asarray(stack.meta["frame_transforms"][i])).inverse()
        moved = truth.max_displacement((h, w))
        assert r.significant or moved < 0.25, (i, moved, r)
        assert _rms_error(r.transform, truth, (h, w)) <= 0.35, (i, r)


def test_register_needs_frames_of_one_size_and_sane_thresholds(rng):
    from surgifuse.align import register

    a = cv2.GaussianBlur(rng.random((64, 80)).astype(np.float32), (0, 0), 2)
    with pytest.raises(ValueError, match="one size"):
        register(a, a[:-4])
    with pytest.raises(ValueError, match="min_improvement"):
        register(a, a, min_improvement=-1)
    shifted = np.roll(a, 3, axis=1)
    r = register(a, shifted)
    assert r.significant and round(r.transform.tx) == -3 and r.improvement > 0.5
    assert not register(a, shifted, min_displacement=10).significant  # a threshold it does not reach


def test_an_estimate_the_reverse_registration_does_not_confirm_is_not_applied():
    # Heavy defocus (NA 0.3), two frames, nothing moved: the estimate locks onto a wrong optimum
    # of about 100 px that still lowers the residual. Registered the other way round it does not
    # come back, so the round trip keeps the frame as it is.
    from surgifuse import synth
    from surgifuse.align import MAX_ROUND_TRIP_PX, register

    stack = synth.generate_stack(2001, height=520, width=520, k=2, scene="mixed", instrument=True, noise=True,
                                 jpeg_quality=90, numerical_aperture=0.3)
    reference, moving = prepare_alignment(stack.frames[1]), prepare_alignment(stack.frames[0])
    checked = register(reference, moving, round_trip=True)
    assert not checked.significant and checked.transform.max_displacement((520, 520)) == 0
    assert checked.round_trip > MAX_ROUND_TRIP_PX
    assert math.isnan(register(reference, moving).round_trip)  # not checked unless asked


def test_a_true_motion_survives_the_round_trip(astronaut):
    from surgifuse.align import MAX_ROUND_TRIP_PX, register

    truth = SimilarityTransform(scale=1.01, rotation=math.radians(0.4), tx=2.3, ty=-1.6)
    reference = _focus(astronaut, sharp_left=True)
    moving = _focus(_moving_view(astronaut, truth), sharp_left=False)
    r = register(reference, moving, round_trip=True)
    assert r.significant and r.round_trip <= MAX_ROUND_TRIP_PX
    assert _residual(r.transform, truth, astronaut.shape[:2]) < 0.5
