"""Image-fusion quality metrics: PSNR and SSIM against a truth image, and the no-reference
Q^AB/F (Xydeas & Petrovic 2000, extended to K inputs) and normalised mutual information (Hossny 2008).

All functions are pure: arrays in, a float out. Images are uint8/uint16 (or float in [0, 1]),
HxW grey or HxWxC colour, RGB order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

__all__ = ["psnr", "ssim", "qabf", "nmi", "to_grey"]

# Xydeas & Petrovic (2000), "Objective image fusion performance measure", Electronics Letters 36(4):
# sigmoid constants of the edge-strength (g) and orientation (alpha) preservation terms.
QABF_GAMMA_G, QABF_KAPPA_G, QABF_SIGMA_G = 0.9994, -15.0, 0.5
QABF_GAMMA_A, QABF_KAPPA_A, QABF_SIGMA_A = 0.9879, -22.0, 0.8

# ITU-R BT.601 luma, the weights of OpenCV's and MATLAB's rgb2gray.
_LUMA = np.array([0.299, 0.587, 0.114])


def _check_image(name: str, image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputTypeError(f"{name} must be a NumPy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"{name} must be HxW or HxWxC (C in 1, 3, 4), got shape {image.shape}")
    if not (image.dtype in (np.uint8, np.uint16) or np.issubdtype(image.dtype, np.floating)):
        raise InputTypeError(f"{name} must be uint8, uint16 or float, got dtype {image.dtype}")
    return image


def _check_pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    reference = _check_image("reference", reference)
    test = _check_image("test", test)
    if reference.shape != test.shape:
        raise InputError(f"reference and test must have the same shape, got {reference.shape} and {test.shape}")
    if reference.dtype != test.dtype:
        raise InputTypeError(f"reference and test must have the same dtype, got {reference.dtype} and {test.dtype}")
    return reference, test


def _default_range(dtype: np.dtype, data_range) -> float:
    if data_range is not None:
        if not data_range > 0:
            raise InputError(f"data_range must be > 0, got {data_range}")
        return float(data_range)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0  # project convention: float images are in [0, 1]


def _crop(image: np.ndarray, border: int, *, min_side: int = 1) -> np.ndarray:
    if int(border) != border or border < 0:
        raise InputError(f"border must be a non-negative integer, got {border}")
    border = int(border)
    h, w = image.shape[:2]
    if h - 2 * border < min_side or w - 2 * border < min_side:
        raise InputError(
            f"image of shape {image.shape} is too small for border={border}: "
            f"need at least {2 * border + min_side} px per side"
        )
    return image[border : h - border, border : w - border] if border else image


def psnr(reference: np.ndarray, test: np.ndarray, *, border: int = 8, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``test`` against ``reference``, in dB.

    Parameters
    ----------
    reference, test : ndarray
        Images of identical shape (HxW or HxWxC) and dtype (uint8, uint16 or float).
    border : int, optional
        Pixels excluded on every side before scoring (fused borders are unreliable: every
        focus measure is truncated there). Default 8.
    data_range : float, optional
        Peak value. Default: 255 for uint8, 65535 for uint16, 1.0 for float.

    Returns
    -------
    float
        ``10 log10(data_range^2 / MSE)``, with the MSE over all remaining pixels and channels;
        ``inf`` when the images are identical.

    Examples
    --------
    >>> a = np.full((32, 32), 100, np.uint8)
    >>> round(psnr(a, a + 5), 4)
    34.1514
    """
    reference, test = _check_pair(reference, test)
    peak = _default_range(reference.dtype, data_range)
    diff = _crop(reference, border).astype(np.float64) - _crop(test, border).astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))


def ssim(reference: np.ndarray, test: np.ndarray, *, border: int = 8, data_range: float | None = None) -> float:
    """Structural similarity (Wang et al. 2004) of ``test`` against ``reference``.

    Parameters
    ----------
    reference, test : ndarray
        Images of identical shape (HxW or HxWxC) and dtype.
    border : int, optional
        Pixels excluded on every side before scoring. Default 8.
    data_range : float, optional
        Peak value. Default: 255 for uint8, 65535 for uint16, 1.0 for float.

    Returns
    -------
    float
        Mean SSIM, in [-1, 1]; colour images are scored per channel and averaged.

    Notes
    -----
    The standard settings of Wang et al.: an 11x11 Gaussian window of sigma 1.5,
    K1 = 0.01, K2 = 0.03 and population (not sample) covariances
    (``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``). The cropped image must be at least 11 px per side.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
    visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004.

    Examples
    --------
    >>> a = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64).astype(np.uint8)
    >>> ssim(a, a)
    1.0
    """
    from skimage.metrics import structural_similarity

    reference, test = _check_pair(reference, test)
    peak = _default_range(reference.dtype, data_range)
    ref = _crop(reference, border, min_side=11).astype(np.float64)
    tst = _crop(test, border, min_side=11).astype(np.float64)
    channel_axis = -1 if ref.ndim == 3 else None
    value = structural_similarity(
        ref, tst, data_range=peak, channel_axis=channel_axis,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    return float(value)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Luma (BT.601) of an RGB image as float64 on the image's own scale; grey images pass through."""
    image = _check_image("image", image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.shape[2] == 1:
        return image[..., 0].astype(np.float64)
    return image[..., :3].astype(np.float64) @ _LUMA


def _check_fusion_inputs(inputs, fused) -> tuple[list[np.ndarray], np.ndarray]:
    fused = _check_image("fused", fused)
    if isinstance(inputs, np.ndarray):
        inputs = list(inputs)
    inputs = list(inputs)
    if len(inputs) < 1:
        raise InputError("inputs must hold at least one image, got 0")
    for i, image in enumerate(inputs):
        _check_image(f"inputs[{i}]", image)
        if image.shape != fused.shape:
            raise InputError(f"inputs[{i}] has shape {image.shape}, fused has {fused.shape}: all must match")
        if image.dtype != fused.dtype:
            raise InputTypeError(f"inputs[{i}] has dtype {image.dtype}, fused has {fused.dtype}: all must match")
    return inputs, fused


def _sobel_strength_orientation(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    sx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    sy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    g = np.hypot(sx, sy)
    # alpha = atan(sy / sx) in [-pi/2, pi/2], pi/2 where sx = 0 (as in Petrovic's reference code).
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
    return g, alpha


def _edge_preservation(g_in, a_in, g_f, a_f) -> np.ndarray:
    """Q^{XF}(n, m): how well the fused image keeps the input's edge strength and orientation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(g_in > g_f, g_f / g_in, g_in / g_f)
    ratio = np.where((g_in == 0) | (g_f == 0), 0.0, ratio)
    orient = 1.0 - np.abs(a_in - a_f) / (np.pi / 2)
    q_g = QABF_GAMMA_G / (1.0 + np.exp(QABF_KAPPA_G * (ratio - QABF_SIGMA_G)))
    q_a = QABF_GAMMA_A / (1.0 + np.exp(QABF_KAPPA_A * (orient - QABF_SIGMA_A)))
    return q_g * q_a


def qabf(inputs: Sequence[np.ndarray], fused: np.ndarray, *, weight_exponent: float = 1.0) -> float:
    """Edge-transfer fusion metric Q^AB/F of Xydeas & Petrovic, extended to K inputs.

    Parameters
    ----------
    inputs : sequence of ndarray
        The K source images (K >= 1), each the shape and dtype of ``fused``.
    fused : ndarray
        The fused image.
    weight_exponent : float, optional
        L, the exponent of the edge-strength weights ``w_k = g_k^L``. Default 1 (the paper's).

    Returns
    -------
    float
        In [0, ~0.975]: 0 = no input edge survives; the maximum (perfect transfer of every edge)
        is the product of the two sigmoid gains at 1, ``0.9994/(1+e^-7.5) * 0.9879/(1+e^-4.4)``.

    Notes
    -----
    Computed on the luma (BT.601) of colour images, on the 0-255 (or native) scale. Sobel 3x3
    gradients give the edge strength ``g`` and orientation ``alpha = atan(s_y / s_x)`` of every
    image; per pixel, ``Q^{kF} = Q_g^{kF} Q_alpha^{kF}`` with the paper's sigmoids
    (Gamma_g=0.9994, kappa_g=-15, sigma_g=0.5; Gamma_a=0.9879, kappa_a=-22, sigma_a=0.8) applied
    to the relative strength ``min(g_k, g_F)/max(g_k, g_F)`` (0 where either is 0) and the
    relative orientation ``1 - |alpha_k - alpha_F| / (pi/2)``.

    K inputs: the paper's two-input ratio generalised over the stack,

        Q^{1..K/F} = sum_k sum_{n,m} Q^{kF} w_k / sum_k sum_{n,m} w_k,   w_k = g_k^L,

    which is exactly Q^AB/F for K = 2: every input's edges count in proportion to their strength,
    so a frame with no edges (fully defocused) adds nothing, whatever K is.

    References
    ----------
    C. S. Xydeas, V. Petrovic, "Objective image fusion performance measure", Electronics
    Letters 36(4), 308-309, 2000.
    """
    inputs, fused = _check_fusion_inputs(inputs, fused)
    g_f, a_f = _sobel_strength_orientation(to_grey(fused))
    numerator = 0.0
    denominator = 0.0
    for image in inputs:
        g_k, a_k = _sobel_strength_orientation(to_grey(image))
        w_k = g_k ** weight_exponent
        numerator += float(np.sum(_edge_preservation(g_k, a_k, g_f, a_f) * w_k))
        denominator += float(np.sum(w_k))
    if denominator == 0.0:
        return 0.0  # no input has any edge: nothing could be transferred
    return numerator / denominator


def _grey_levels(image: np.ndarray) -> np.ndarray:
    """8-bit grey levels 0..255 of an image (uint16 and float are rescaled)."""
    grey = to_grey(image)
    if image.dtype == np.uint16:
        grey = grey / 257.0
    elif image.dtype != np.uint8:
        grey = grey * 255.0
    return np.clip(np.rint(grey), 0, 255).astype(np.int64)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def nmi(inputs: Sequence[np.ndarray], fused: np.ndarray) -> float:
    """Normalised mutual information between the inputs and the fused image (Hossny et al.).

    Parameters
    ----------
    inputs : sequence of ndarray
        The K source images (K >= 1), each the shape and dtype of ``fused``.
    fused : ndarray
        The fused image.

    Returns
    -------
    float
        In [0, 1]: the mean over the inputs of ``2 MI(k, F) / (H(k) + H(F))``.

    Notes
    -----
    Histograms of 256 bins on the 8-bit luma (uint16 and float images are rescaled to 0-255).
    Hossny's two-input metric is the *sum* ``2 [MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]``, in
    [0, 2]; we report the mean over the K inputs so that stacks of different K compare on one
    scale: multiply by K for Hossny's value. Each term is 1 when F is a relabelling of input k and 0
    when independent; a term whose two entropies are both 0 (two constant images) counts as 1.

    References
    ----------
    M. Hossny, S. Nahavandi, D. Creighton, "Comments on 'Information measure for performance of
    image fusion'", Electronics Letters 44(18), 1066-1067, 2008.
    """
    inputs, fused = _check_fusion_inputs(inputs, fused)
    f = _grey_levels(fused).ravel()
    p_f = np.bincount(f, minlength=256) / f.size
    h_f = _entropy(p_f)
    terms = []
    for image in inputs:
        a = _grey_levels(image).ravel()
        p_a = np.bincount(a, minlength=256) / a.size
        p_af = np.bincount(a * 256 + f, minlength=256 * 256) / a.size
        h_a = _entropy(p_a)
        if h_a + h_f == 0.0:
            terms.append(1.0)
            continue
        mutual = h_a + h_f - _entropy(p_af)
        terms.append(2.0 * mutual / (h_a + h_f))
    return float(np.clip(np.mean(terms), 0.0, 1.0))
