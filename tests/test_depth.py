"""refine_depth: edges kept where the image has them, noise smoothed, confidence respected."""

from __future__ import annotations

import numpy as np
import pytest

from surgifuse.depth import refine_depth, resolve_params
from surgifuse.errors import InputError
from surgifuse.evaluation.depth import depth_accuracy, depth_in_steps, edge_band


def _two_halves(h=96, w=128, edge=64):
    image = np.empty((h, w, 3), np.uint8)
    image[:, :edge] = (205, 95, 45)   # orange retina
    image[:, edge:] = (140, 142, 146)  # grey steel
    depth = np.where(np.arange(w)[None, :] < edge, 3.0, 1.0).astype(np.float32) * np.ones((h, 1), np.float32)
    return image, depth


def test_keeps_a_step_edge_aligned_with_an_image_edge():
    image, depth = _two_halves()
    rng = np.random.default_rng(0)
    noisy = depth + rng.normal(0, 0.05, depth.shape).astype(np.float32)
    conf = np.full(depth.shape, 0.5, np.float32)
    refined, _ = refine_depth(noisy, conf, image)
    rows = slice(8, -8)
    left, right = refined[rows, :64 - 3], refined[rows, 64 + 3:]
    assert np.abs(left - 3.0).max() < 0.1, np.abs(left - 3.0).max()
    assert np.abs(right - 1.0).max() < 0.1, np.abs(right - 1.0).max()


def test_smooths_noise_on_a_flat_region():
    rng = np.random.default_rng(1)
    depth = (2.0 + rng.normal(0, 0.3, (120, 160))).astype(np.float32)
    guide = np.full((120, 160, 3), 128, np.uint8)
    refined, _ = refine_depth(depth, np.ones_like(depth), guide)
    assert depth.std() / refined.std() > 3.0
    assert abs(float(refined.mean()) - 2.0) < 0.05


def test_a_pixel_without_confidence_takes_its_neighbours_value():
    depth = np.full((80, 80), 2.0, np.float32)
    conf = np.ones_like(depth)
    depth[40, 40], conf[40, 40] = 4.0, 0.0
    guide = np.full((80, 80, 3), 100, np.uint8)
    refined, support = refine_depth(depth, conf, guide)
    assert abs(float(refined[40, 40]) - 2.0) < 0.01
    assert support[40, 40] > 0.9
    # a hole far from any confident pixel is filled from afar, and says so
    depth2, conf2 = np.full((80, 80), 2.0, np.float32), np.zeros((80, 80), np.float32)
    conf2[:, :10] = 1.0
    depth2[:, 10:] = 0.0
    refined2, support2 = refine_depth(depth2, conf2, guide)
    assert np.abs(refined2 - 2.0).max() < 0.05
    assert support2[:, -1].max() < support2[:, 0].min()


def test_large_frames_are_filtered_at_the_working_size():
    rng = np.random.default_rng(2)
    depth = rng.uniform(0, 4, (540, 960)).astype(np.float32)
    image = rng.integers(0, 255, (540, 960, 3), dtype=np.uint8)
    full, conf = refine_depth(depth, None, image)
    small, _ = refine_depth(depth, None, image, full_size=False)
    assert full.shape == conf.shape == (540, 960) and small.shape == resolve_params((540, 960)).work_shape
    assert full.dtype == np.float32 and 0.0 <= full.min() and full.max() <= 4.0


@pytest.mark.parametrize("bad, match", [
    ({"confidence": np.ones((5, 5), np.float32)}, "confidence has shape"),
    ({"guide_image": np.zeros((4, 4, 3), np.uint8)}, "guide_image must be"),
    ({"work_size": 4}, "work_size"),
    ({"radius": 0}, "radius"),
])
def test_bad_input_names_the_problem(bad, match):
    args = {"depth_index": np.zeros((16, 16), np.float32), "confidence": None, "guide_image": np.zeros((16, 16, 3), np.uint8)}
    args.update(bad)
    with pytest.raises(InputError, match=match):
        refine_depth(args.pop("depth_index"), args.pop("confidence"), args.pop("guide_image"), **args)


def test_depth_in_steps_and_accuracy():
    assert depth_in_steps(np.array([9.0, 10.25, 12.0]), [10.0, 10.5, 11.0]).tolist() == [0.0, 0.5, 2.0]
    assert depth_in_steps(9.5, [10.0, 10.5, 11.0], clamp=False) == pytest.approx(-1.0)
    assert depth_in_steps(np.array([10.0]), [11.0, 10.5, 10.0]).tolist() == [2.0]  # far-to-near order
    truth = np.tile(np.linspace(0, 4, 64, dtype=np.float32), (64, 1))
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    perfect = depth_accuracy(truth, truth, instrument_mask=mask)
    assert perfect["rank_correlation"] == pytest.approx(1.0) and perfect["mean_error_steps"] == 0.0
    assert perfect["edge_error_steps"] == 0.0
    assert edge_band(mask, 2).sum() > 0 and not edge_band(mask, 2)[30, 30]
