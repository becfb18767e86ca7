"""Halos (issue 14): the halo measure on known cases (none, a glow, ringing), the halo test scene
(its truth and the glow its defocused instrument casts), and the classical engine on it: a convex
blend (every output value between the frames' values at that pixel, so it cannot ring) whose glow
beside the instrument stays well below the depth oracle's."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from surgifuse.engines import create_engine
from surgifuse.errors import InputError
from surgifuse.evaluation.halo import HALO_KEYS, halo_measure, high_contrast_edges, mask_edges
from surgifuse.evaluation.references import depth_oracle
from surgifuse.validation.halo import halo_scene_stack

BRIGHT, DARK = 200, 20


def half_plane(bright=BRIGHT, dark=DARK, shape=(64, 256)) -> np.ndarray:
    """Columns 0..127 bright, 128.. dark: a vertical step between columns 127 and 128."""
    image = np.full(shape, dark, np.uint8)
    image[:, : shape[1] // 2] = bright
    return image


# ------------------------------------------------------------------------------------ the measure


def test_identical_images_measure_zero():
    truth = half_plane()
    m = halo_measure(truth, truth.copy())
    assert all(m[key] == 0.0 for key in HALO_KEYS)
    assert m["psnr_band"] == math.inf
    # 1..12 px on both sides of the two edge columns (127, 128), 8 px border rows excluded.
    assert m["dark_pixels"] == m["bright_pixels"] == 12 * (64 - 16)


def test_edges_from_the_truth_and_from_a_mask():
    assert np.flatnonzero(high_contrast_edges(half_plane())[32]).tolist() == [127, 128]
    # A faint step (30 levels: a gradient of 15 per px) is no high-contrast edge.
    assert not high_contrast_edges(half_plane(bright=50, dark=20)).any()
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    outline = mask_edges(mask)
    assert outline[8, 8:24].all() and outline[7, 8:24].all() and not outline[12, 12] and not outline[4, 4]


def test_glow_on_the_dark_side_is_measured_at_its_size():
    """A Gaussian-blurred copy of the bright half, added on the dark side: the defocused light of a
    bright object over a dark background."""
    truth = half_plane()
    sigma, amplitude = 4.0, 100.0
    bright = (truth == BRIGHT).astype(np.float64)
    glow = amplitude * cv2.GaussianBlur(bright, (0, 0), sigma) * (1.0 - bright)
    fused = np.clip(np.rint(truth + glow), 0, 255).astype(np.uint8)
    m = halo_measure(fused, truth, band_px=12)
    # The dark side of the band is columns 129..140 (1..12 px from the edge column 128).
    expected = np.rint(glow[32, 129:141])
    assert m["dark_overshoot_mean"] == pytest.approx(expected.mean(), abs=0.5)
    assert m["dark_overshoot_p99"] == pytest.approx(expected.max(), abs=1.0)
    assert expected.max() > 30  # the case is not trivial: a glow of tens of grey levels
    assert m["bright_undershoot_p99"] == m["bright_overshoot_p99"] == m["dark_undershoot_p99"] == 0.0
    assert m["band_overshoot_mean"] == pytest.approx(expected.mean() / 2, abs=0.5)  # half the band is dark
    assert 10 < m["psnr_band"] < 40


def test_ringing_gives_overshoot_and_undershoot():
    """An unsharp mask rings: brighter than the truth on the bright side, darker on the dark side."""
    truth = half_plane(bright=180, dark=60)
    grey = truth.astype(np.float64)
    sharpened = grey + 1.0 * (grey - cv2.GaussianBlur(grey, (0, 0), 2.0))
    fused = np.clip(np.rint(sharpened), 0, 255).astype(np.uint8)
    m = halo_measure(fused, truth)
    assert m["bright_overshoot_p99"] > 20 and m["dark_undershoot_p99"] > 20
    assert m["bright_overshoot_mean"] == pytest.approx(m["dark_undershoot_mean"], rel=0.1)  # symmetric step
    assert m["dark_overshoot_p99"] == m["bright_undershoot_p99"] == 0.0
    assert m["band_overshoot_p99"] > 20 and m["band_undershoot_p99"] > 20


def test_colour_and_float_inputs():
    truth = np.repeat(half_plane()[..., None], 3, axis=2)
    fused = truth.copy()
    fused[:, 129:133] += 40
    m8 = halo_measure(fused, truth)
    mf = halo_measure(fused.astype(np.float32) / 255, truth.astype(np.float32) / 255)
    assert m8["dark_overshoot_p99"] == pytest.approx(40.0)
    assert mf["dark_overshoot_p99"] == pytest.approx(40.0 / 255, rel=1e-5)
    assert m8["psnr_band"] == pytest.approx(mf["psnr_band"], abs=1e-3)


def test_bad_inputs_raise():
    truth = half_plane()
    with pytest.raises(InputError, match="same shape"):
        halo_measure(truth[:, :100], truth)
    with pytest.raises(InputError, match="edges"):
        halo_measure(truth, truth, np.ones(truth.shape, np.uint8))
    with pytest.raises(InputError, match="band_px"):
        halo_measure(truth, truth, band_px=0)
    m = halo_measure(np.full((64, 64), 9, np.uint8), np.full((64, 64), 9, np.uint8))  # no edge at all
    assert m["band_pixels"] == 0 and math.isnan(m["dark_overshoot_mean"])


# ------------------------------------------------------------------------------------ the scene


@pytest.fixture(scope="module")
def scene():
    return halo_scene_stack(2, size=256, k=5)


def test_scene_is_deterministic_and_has_truth(scene):
    again = halo_scene_stack(2, size=256, k=5)
    assert all(np.array_equal(a, b) for a, b in zip(scene.frames, again.frames))
    assert np.array_equal(scene.gt, again.gt)
    assert scene.foreground_mask.any() and not scene.foreground_mask.all()
    assert set(np.unique(scene.depth).tolist()) == {0.0, 4.0}
    assert np.array_equal(scene.depth == 0.0, scene.foreground_mask)
    assert not np.array_equal(halo_scene_stack(3, size=256, k=5).gt, scene.gt)


def test_scene_is_bright_on_dark_with_saturated_speculars(scene):
    grey = cv2.cvtColor(scene.gt, cv2.COLOR_RGB2GRAY)
    inner = cv2.erode(scene.foreground_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.median(grey[inner]) > 150 and np.median(grey[~scene.foreground_mask]) < 40
    assert (scene.gt[inner] == 255).all(axis=-1).any()  # the specular stripe saturates
    assert (scene.gt[~scene.foreground_mask] == 255).all(axis=-1).any()  # glints on the background


def test_scene_frames_focus_at_their_depths_and_the_instrument_glows(scene):
    inner = cv2.erode(scene.foreground_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(scene.frames[0][inner], scene.gt[inner])  # the instrument sharp in frame 0
    distance = cv2.distanceTransform((~scene.foreground_mask).astype(np.uint8), cv2.DIST_L2, 5)
    grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(float) for x in (scene.gt, scene.frames[-1])]
    beside = (distance >= 2) & (distance <= 6)
    # What makes halos: the background-focused frame is brighter than the truth beside the instrument.
    assert (grey[1] - grey[0])[beside].mean() > 30


# ------------------------------------------------------------------------------------ the classical engine


@pytest.mark.parametrize("options", [{}, {"blend_radius": 0}, {"blend_radius": 7}, {"decision_scale": 2}],
                         ids=["defaults", "blend0", "blend7", "scale2"])
@pytest.mark.parametrize("noise", [False, True], ids=["clean", "noisy"])
def test_classical_blend_stays_between_the_frames(options, noise):
    """A label-fraction blend is convex: per pixel and channel the output lies between the darkest
    and the brightest frame, so it can neither ring nor darken beyond what a frame shows."""
    stack = halo_scene_stack(4, size=256, k=5, noise=noise)
    fused = create_engine("classical", **options).fuse(stack.frames).image
    frames = np.stack(stack.frames)
    assert (frames.min(axis=0) <= fused).all() and (fused <= frames.max(axis=0)).all()


@pytest.mark.parametrize("seed", [1, 2])
def test_classical_glow_beside_the_instrument_is_below_the_oracle(seed):
    """Bounds measured on seeds 1-8 (noise-free, the harder case: with noise the faint background
    texture is lost and the glow falls to a tenth of the oracle's): beside the instrument's outline
    the classical engine keeps 30-39 % of the depth oracle's mean glow and 31-42 % of its 99th
    percentile, because its arg-max and majority filter give the instrument-focused frame a few px
    beyond the edge, where the background-focused frame (the oracle's pick) glows most. The bounds
    leave room for one seed that is a little worse, not for losing that."""
    stack = halo_scene_stack(seed, size=256, k=5)
    fused = create_engine("classical").fuse(stack.frames).image
    oracle = depth_oracle(stack.frames, stack.depth, stack.focus_positions)
    outline = mask_edges(stack.foreground_mask)
    ours, theirs = halo_measure(fused, stack.gt, outline), halo_measure(oracle, stack.gt, outline)
    assert ours["dark_overshoot_mean"] < 0.45 * theirs["dark_overshoot_mean"]
    assert ours["dark_overshoot_p99"] < 0.5 * theirs["dark_overshoot_p99"]
    # No darkened rim: the background-focused frame alone darkens the rim by ~40 levels (p99).
    assert ours["bright_undershoot_p99"] < 12
    # All high-contrast edges, glints included: glow rings around the glints (their defocused discs'
    # sharp rims win the arg-max in the middle frames) keep the 99th percentile near the oracle's
    # (-13 to +29 levels on seeds 1-8).
    everywhere = halo_measure(fused, stack.gt)
    assert everywhere["dark_overshoot_p99"] < halo_measure(oracle, stack.gt)["dark_overshoot_p99"] + 40


def test_docstring_examples():
    import doctest

    from surgifuse.evaluation import halo as measure
    from surgifuse.validation import halo as scene

    for module in (measure, scene):
        assert doctest.testmod(module).failed == 0
