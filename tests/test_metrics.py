"""Known-value and invariant tests of surgifuse.evaluation.metrics (PSNR, SSIM, Q^AB/F, NMI)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from surgifuse.evaluation import metrics
from surgifuse.evaluation.metrics import nmi, psnr, qabf, ssim

QABF_MAX = (metrics.QABF_GAMMA_G / (1 + math.exp(metrics.QABF_KAPPA_G * (1 - metrics.QABF_SIGMA_G)))
            * metrics.QABF_GAMMA_A / (1 + math.exp(metrics.QABF_KAPPA_A * (1 - metrics.QABF_SIGMA_A))))


def texture(rng, shape=(64, 64, 3), sigma=1.0):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma else img


# ---------------------------------------------------------------------------------------------- PSNR


def test_psnr_identical_is_inf(rng):
    a = texture(rng)
    assert psnr(a, a) == math.inf


@pytest.mark.parametrize("offset", [1, 3, 17])
def test_psnr_constant_offset_known_value(offset):
    a = np.full((40, 40, 3), 100, np.uint8)
    assert psnr(a, a + np.uint8(offset)) == pytest.approx(20 * math.log10(255 / offset), rel=1e-12)


def test_psnr_uint16_and_float_ranges():
    a16 = np.full((32, 32), 1000, np.uint16)
    assert psnr(a16, a16 + np.uint16(10)) == pytest.approx(20 * math.log10(65535 / 10), rel=1e-12)
    af = np.full((32, 32), 0.5, np.float32)
    assert psnr(af, af + np.float32(0.01)) == pytest.approx(20 * math.log10(1 / 0.01), rel=1e-5)
    assert psnr(af, af + np.float32(0.01), data_range=2.0) == pytest.approx(20 * math.log10(2 / 0.01), rel=1e-5)


def test_psnr_matches_skimage_without_border(rng):
    from skimage.metrics import peak_signal_noise_ratio

    a, b = texture(rng), texture(rng)
    assert psnr(a, b, border=0) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)


def test_border_exclusion_really_excludes(rng):
    a = texture(rng, (48, 48, 3))
    b = a.copy()
    b[:8] = 255 - b[:8]
    b[:, -8:] = 0
    assert psnr(a, b, border=8) == math.inf
    assert ssim(a, b, border=8) == 1.0
    assert psnr(a, b, border=7) < 30  # the corruption is seen when the border is smaller
    assert ssim(a, b, border=0) < 0.9


# ---------------------------------------------------------------------------------------------- SSIM


def test_ssim_identity_and_degradation(rng):
    a = texture(rng)
    assert ssim(a, a) == 1.0
    noisy = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(a, noisy) < 0.95


def test_ssim_colour_is_mean_of_channels(rng):
    a, b = texture(rng), texture(rng, sigma=2.0)
    per_channel = [ssim(a[..., c], b[..., c]) for c in range(3)]
    assert ssim(a, b) == pytest.approx(np.mean(per_channel), rel=1e-9)


def test_ssim_uses_wang_settings(rng):
    from skimage.metrics import structural_similarity

    a, b = texture(rng, (40, 40), 1.0), texture(rng, (40, 40), 2.0)
    expected = structural_similarity(a.astype(float), b.astype(float), data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(a, b, border=0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("func", [psnr, ssim])
def test_reference_metric_input_errors(func):
    a = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(32, 31, 3\)"):
        func(a, a[:, :31])
    with pytest.raises(TypeError, match="uint8.*uint16"):
        func(a, a.astype(np.uint16))
    with pytest.raises(TypeError, match="NumPy array"):
        func(a.tolist(), a)
    with pytest.raises(TypeError, match="int32"):
        func(a.astype(np.int32), a.astype(np.int32))
    with pytest.raises(ValueError, match="too small for border=16"):
        func(a, a, border=16)
    with pytest.raises(ValueError, match="border"):
        func(a, a, border=-1)
    with pytest.raises(ValueError, match="data_range"):
        func(a, a, data_range=0)
    with pytest.raises(ValueError, match="HxW or HxWxC"):
        func(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32, 3), np.uint8))


# ---------------------------------------------------------------------------------------------- Q^AB/F


def direct_qabf_two_inputs(a, b, f):
    """Q^AB/F written out pixel by pixel after Xydeas & Petrovic (2000), for two grey images."""

    def sobel(img):
        p = np.pad(img.astype(np.float64), 1, mode="symmetric")  # = OpenCV BORDER_REFLECT
        h, w = img.shape
        sx = np.zeros((h, w))
        sy = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                win = p[y : y + 3, x : x + 3]
                sx[y, x] = (win[:, 2] - win[:, 0]) @ [1, 2, 1]
                sy[y, x] = (win[2, :] - win[0, :]) @ [1, 2, 1]
        return sx, sy

    def strength_angle(img):
        sx, sy = sobel(img)
        g = np.sqrt(sx**2 + sy**2)
        alpha = np.zeros_like(g)
        for idx in np.ndindex(g.shape):
            alpha[idx] = math.pi / 2 if sx[idx] == 0 else math.atan(sy[idx] / sx[idx])
        return g, alpha

    def q_xf(gx, ax, gf, af):
        q = np.zeros_like(gx)
        for idx in np.ndindex(gx.shape):
            if gx[idx] == 0 or gf[idx] == 0:
                rel_g = 0.0
            elif gx[idx] > gf[idx]:
                rel_g = gf[idx] / gx[idx]
            else:
                rel_g = gx[idx] / gf[idx]
            rel_a = 1 - abs(ax[idx] - af[idx]) / (math.pi / 2)
            qg = 0.9994 / (1 + math.exp(-15 * (rel_g - 0.5)))
            qa = 0.9879 / (1 + math.exp(-22 * (rel_a - 0.8)))
            q[idx] = qg * qa
        return q

    ga, aa = strength_angle(a)
    gb, ab = strength_angle(b)
    gf, af = strength_angle(f)
    return float(np.sum(q_xf(ga, aa, gf, af) * ga + q_xf(gb, ab, gf, af) * gb) / np.sum(ga + gb))


def test_qabf_two_inputs_matches_direct_implementation(rng):
    a = texture(rng, (20, 24), 1.0)
    b = cv2.GaussianBlur(a, (0, 0), 2.0)
    f = ((a.astype(int) + b) // 2).astype(np.uint8)
    assert qabf([a, b], f) == pytest.approx(direct_qabf_two_inputs(a, b, f), rel=1e-9)


def test_qabf_fused_equal_to_identical_inputs_is_maximal(rng):
    a = texture(rng)
    assert qabf([a, a], a) == pytest.approx(QABF_MAX, rel=1e-12)
    assert 0.97 < QABF_MAX < 0.98


def test_qabf_decreases_when_fused_is_blurred(rng):
    sharp = texture(rng, sigma=0.7)
    inputs = [sharp, cv2.GaussianBlur(sharp, (0, 0), 3.0)]
    q_sharp = qabf(inputs, sharp)
    q_blur1 = qabf(inputs, cv2.GaussianBlur(sharp, (0, 0), 1.0))
    q_blur2 = qabf(inputs, cv2.GaussianBlur(sharp, (0, 0), 2.0))
    assert q_sharp > q_blur1 > q_blur2


def test_qabf_k_input_extension_is_strength_weighted(rng):
    a = texture(rng, (32, 32), 1.0)
    b = cv2.GaussianBlur(a, (0, 0), 2.0)
    c = texture(rng, (32, 32), 1.5)
    f = a
    # Repeating an input does not change the weighted ratio; a featureless input adds nothing.
    assert qabf([a, b, a, b], f) == pytest.approx(qabf([a, b], f), rel=1e-12)
    flat = np.full_like(a, 77)
    assert qabf([a, b, flat], f) == pytest.approx(qabf([a, b], f), rel=1e-12)
    # K = 3 is the strength-weighted combination of the per-input terms.
    g = [cv2.magnitude(cv2.Sobel(x.astype(float), cv2.CV_64F, 1, 0, borderType=cv2.BORDER_REFLECT),
                       cv2.Sobel(x.astype(float), cv2.CV_64F, 0, 1, borderType=cv2.BORDER_REFLECT)).sum()
         for x in (a, b, c)]
    per_input = [qabf([x], f) for x in (a, b, c)]
    assert qabf([a, b, c], f) == pytest.approx(np.dot(per_input, g) / sum(g), rel=1e-9)


def test_qabf_input_errors():
    a = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="at least one"):
        qabf([], a)
    with pytest.raises(ValueError, match=r"inputs\[1\].*\(16, 15\)"):
        qabf([a, a[:, :15]], a)
    with pytest.raises(TypeError, match=r"inputs\[0\].*uint16"):
        qabf([a.astype(np.uint16)], a)
    assert qabf([a], a) == 0.0  # no edge anywhere: nothing to transfer


# ---------------------------------------------------------------------------------------------- NMI


def test_nmi_bounds_and_known_values(rng):
    a = texture(rng, sigma=0)
    assert nmi([a], a) == pytest.approx(1.0)
    assert nmi([a], 255 - a) == pytest.approx(1.0)  # a relabelling keeps all information
    # Independent images: MI near 0 (16 grey levels, so that 4096 pixels fill the joint histogram
    # well enough for the plug-in estimate's upward bias to stay small).
    coarse = (rng.integers(0, 16, (64, 64)) * 16).astype(np.uint8)
    independent = (rng.integers(0, 16, (64, 64)) * 16).astype(np.uint8)
    low = nmi([coarse], independent)
    assert 0.0 <= low < 0.05
    b = cv2.GaussianBlur(a, (0, 0), 2.0)
    mid = nmi([a, b], a)
    assert low < mid < 1.0
    # The mean over K inputs: Hossny's two-input sum is twice this.
    assert mid == pytest.approx((nmi([a], a) + nmi([b], a)) / 2)


def test_nmi_constant_images_and_errors():
    c = np.full((16, 16), 9, np.uint8)
    assert nmi([c], c) == 1.0
    with pytest.raises(ValueError, match="shape"):
        nmi([c], c[:8])
