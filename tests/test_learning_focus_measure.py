"""The torch FMB (what the Fusion Network trains on) equals the C++ core (what the engine feeds it)."""

import numpy as np
import pytest
from optional import optional_import

torch = optional_import("torch")

from surgifuse.focus_measure import focus_map, focus_measure  # noqa: E402
from surgifuse.learning.torch_focus_measure import fmb_input, focus_measure_torch, grey_torch  # noqa: E402


def _t(img):
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("h,w,step,window,threshold", [(37, 41, 1, 1, 7), (20, 30, 2, 2, 0), (16, 17, 3, 1, 30), (9, 12, 1, 0, 7)])
def test_equals_core_per_channel(rng, h, w, step, window, threshold):
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = focus_measure(img, step=step, threshold=threshold, window=window).astype(np.float64)
    got = focus_measure_torch(_t(img), step=step, threshold=threshold, window=window)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, ref)


def test_fmb1_equals_core_grey_focus_map(rng):
    img = rng.integers(0, 256, (33, 29, 3), dtype=np.uint8)
    ref = focus_map(img, mode="fmb1")
    got = focus_measure_torch(grey_torch(_t(img)))[0, 0].numpy()
    np.testing.assert_array_equal(got, ref.astype(np.float64))


def test_known_value_single_bright_pixel():
    img = np.zeros((5, 5, 1), np.float32)
    img[2, 2] = 10
    fm = focus_measure_torch(torch.from_numpy(img).permute(2, 0, 1)[None], threshold=0, window=0)[0, 0]
    assert float(fm[2, 2]) == 40  # |2*10| + |2*10|
    assert float(fm[2, 1]) == 10  # one neighbour on the horizontal axis


def test_fmb_input_scales_and_modes(rng):
    img = rng.integers(0, 256, (2, 3, 16, 16)).astype(np.float32) / 255
    x = torch.from_numpy(img)
    assert fmb_input(x, mode="fmb3", scale=2040.0).shape == (2, 3, 16, 16)
    assert fmb_input(x, mode="fmb1", scale=2040.0).shape == (2, 1, 16, 16)
    assert fmb_input(x, mode="none", scale=2040.0).shape == (2, 0, 16, 16)
    ref = focus_measure(np.ascontiguousarray((img[0] * 255).round().astype(np.uint8).transpose(1, 2, 0)))
    np.testing.assert_allclose(fmb_input(x, mode="fmb3", scale=2040.0)[0].permute(1, 2, 0).numpy(), ref / 2040.0, rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        fmb_input(x, mode="fmb2", scale=1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="4-D"):
        focus_measure_torch(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="image size"):
        focus_measure_torch(torch.zeros(1, 1, 4, 4), step=4)
