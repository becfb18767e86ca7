"""The Focus Measure Block (paper 000, eqs. 1-2) in PyTorch, equal to the C++ ``_core.focus_measure``.

Per channel: the modified Laplacian with spacing ``step``, values below ``threshold`` masked to
zero, then summed over a (2*window+1)^2 window; both steps use the core's reflect-101 borders
(index -1 -> 1), which is torch's "reflect" padding. Works on 0..255 valued float tensors
so that the result is the exact integer the C++ core returns for uint8 input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from surgifuse.errors import InputError

# ITU-R BT.601 integer luma as the core's rgb_to_luma (FMB1's grey image): (77R + 150G + 29B + 128) >> 8.
_GREY_WEIGHTS = (77, 150, 29)


def focus_measure_torch(image: torch.Tensor, *, step: int = 1, threshold: float = 7, window: int = 1) -> torch.Tensor:
    """Sum-modified-Laplacian focus measure of every channel.

    Parameters
    ----------
    image : Tensor, (N, C, H, W)
        Intensities on the 0..255 scale (float; integer valued for exact agreement with the core).
    step : int, keyword-only
        Spacing of the modified Laplacian (paper: 1).
    threshold : float, keyword-only
        Modified-Laplacian values below this are ignored (paper: 7).
    window : int, keyword-only
        Half-size N of the (2N+1)x(2N+1) summation window (paper: 1, a 3x3 window).

    Returns
    -------
    Tensor, (N, C, H, W), float32
        The focus measure; differentiable almost everywhere with respect to ``image``.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        raise InputError(f"image must be a 4-D tensor (N, C, H, W), got {getattr(image, 'shape', type(image))}")
    if step < 1 or window < 0:
        raise InputError(f"step must be >= 1 and window >= 0, got step={step}, window={window}")
    x = image.float()
    n, c, h, w = x.shape
    if (h > 1 and max(step, window) > h - 1) or (w > 1 and max(step, window) > w - 1):
        raise InputError(f"step {step} and window {window} must be < the image size {h}x{w} (one reflection)")
    p = F.pad(x.reshape(n * c, 1, h, w), (step, step, step, step), mode="reflect")
    centre = p[:, :, step : step + h, step : step + w]
    ml = (2 * centre - p[:, :, step : step + h, : w] - p[:, :, step : step + h, 2 * step :]).abs() + (
        2 * centre - p[:, :, :h, step : step + w] - p[:, :, 2 * step :, step : step + w]
    ).abs()
    ml = ml * (ml >= threshold)
    if window > 0:
        k = 2 * window + 1
        # A ones kernel keeps integer sums exact in float32 (all sums < 2^24).
        ml = F.conv2d(F.pad(ml, (window,) * 4, mode="reflect"), ml.new_ones((1, 1, k, k)))
    return ml.reshape(n, c, h, w)


def grey_torch(image: torch.Tensor) -> torch.Tensor:
    """Grey level of an (N, 3, H, W) 0..255 RGB tensor, exactly ``surgifuse.focus_measure.rgb_to_luma``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise InputError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    acc = r * _GREY_WEIGHTS[0] + g * _GREY_WEIGHTS[1] + b * _GREY_WEIGHTS[2] + 128
    return torch.floor(acc / 256)


def fmb_input(rgb01: torch.Tensor, *, mode: str, step: int = 1, threshold: float = 7, window: int = 1, scale: float) -> torch.Tensor:
    """The FMB channels the Fusion Network sees for (N, 3, H, W) RGB in [0, 1]: FM / ``scale``.

    ``mode`` "fmb3": one map per RGB channel; "fmb1": one map of the grey image; "none": no channel.
    Frames are quantised to 8 bits first, as the run-time engine sees uint8 frames.
    """
    if mode == "none":
        return rgb01.new_zeros((rgb01.shape[0], 0) + tuple(rgb01.shape[2:]))
    with torch.no_grad():
        v = torch.round(rgb01.clamp(0, 1) * 255)
        if mode == "fmb1":
            v = grey_torch(v)
        elif mode != "fmb3":
            raise InputError(f"mode must be 'fmb3', 'fmb1' or 'none', got {mode!r}")
        return focus_measure_torch(v, step=step, threshold=threshold, window=window) / scale
