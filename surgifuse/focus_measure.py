"""Focus Measure Block (FMB): thresholded sum-modified-Laplacian per channel (Nayar & Nakagawa 1994),
as used by the retinal-microsurgery Fusion Network (FMB3 per RGB channel, FMB1 on the grey image).

The work is done by the native core (``surgifuse._core``, multi-threaded, SIMD, GIL released);
this module documents it and checks inputs. Equations, borders and dtypes: docs/focus-measure.md.
"""

from __future__ import annotations

import numpy as np

from surgifuse import _core
from surgifuse.errors import InputError, InputTypeError

__all__ = ["focus_measure", "focus_map", "rgb_to_luma", "focus_measure_dtype", "set_num_threads", "get_num_threads"]

FOCUS_MAP_MODES = ("fmb3", "fmb1")


def set_num_threads(n: int) -> None:
    """Set the threads used by every native routine (``n <= 0`` restores the default)."""
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads used by native routines: ``SURGIFUSE_NUM_THREADS`` or the usable CPUs by default."""
    return _core.get_num_threads()


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputTypeError(f"image must be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputTypeError(f"image dtype must be uint8 or uint16, got {image.dtype}")
    if image.ndim not in (2, 3):
        raise InputError(f"image must be 2-D (HxW) or 3-D (HxWxC), got shape {image.shape}")
    if image.size == 0:
        raise InputError(f"image is empty: shape {image.shape}")
    return image


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_fits(image: np.ndarray, step: int, window: int) -> None:
    # The reflect-101 border mirrors at most side - 1 pixels: a larger step or window than the
    # image allows is the caller's choice of option, named as such (an axis of length 1 mirrors
    # onto itself and takes any).
    for n, axis in ((image.shape[0], "height"), (image.shape[1], "width")):
        for name, value in (("step", step), ("window", window)):
            if n > 1 and value > n - 1:
                raise InputError(f"{name}={value} is too large for an image {axis} of {n} px (at most {n - 1})",
                                 field=name, allowed=f"<= {n - 1} for this image")


def focus_measure_dtype(dtype, window: int = 1) -> np.dtype:
    """Output dtype of :func:`focus_measure` for an input dtype and window radius.

    uint8 input gives uint16 while the largest possible value ``(2N+1)**2 * 1020`` fits
    (``window <= 3``; ML is at most ``4 * 255``), otherwise uint32; uint16 input always gives uint32.

    Examples
    --------
    >>> focus_measure_dtype(np.uint8, 3), focus_measure_dtype(np.uint8, 4)
    (dtype('uint16'), dtype('uint32'))
    """
    dtype = np.dtype(dtype)
    if dtype == np.uint8 and (2 * window + 1) ** 2 * 1020 <= 0xFFFF:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def focus_measure(image: np.ndarray, *, step: int = 1, threshold: int = 7, window: int = 1, threads: int = 0) -> np.ndarray:
    """Per-channel focus measure (FMB): thresholded sum-modified-Laplacian.

    ``ML(x,y) = |2I(x,y) - I(x-s,y) - I(x+s,y)| + |2I(x,y) - I(x,y-s) - I(x,y+s)|`` and
    ``FM(x,y) = sum of ML * [ML >= threshold]`` over the ``(2N+1) x (2N+1)`` window around
    ``(x, y)``. The threshold masks every summed value (not only the centre one), as the paper's
    text and figure describe. Borders are reflect-101 (index -1 reads index 1).

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, C)
        C-contiguous (it is read in place, never copied).
    step : int, optional
        Laplacian spacing ``s >= 1``. Must be ``<= H - 1`` and ``<= W - 1`` (an axis of length 1
        accepts any value: it reflects onto itself).
    threshold : int, optional
        ML values below it are not summed (``ML >= threshold`` counts; 0 counts all). Paper: 7.
    window : int, optional
        Window radius ``N >= 0`` (0: ML alone, 1: the paper's 3x3). Same size limit as ``step``.
    threads : int, optional
        Threads to use; 0 uses the global setting (:func:`set_num_threads`).

    Returns
    -------
    fm : ndarray, same shape as ``image``
        uint16 for uint8 input with ``window <= 3`` (exact: at most ``49 * 1020``), uint32 for
        uint8 input with ``window >= 4`` and for uint16 input. See :func:`focus_measure_dtype`.

    Raises
    ------
    TypeError
        ``image`` not an ndarray, or dtype not uint8/uint16.
    ValueError
        Wrong number of dimensions, empty or non-contiguous image, negative/zero parameters, or a
        step/window larger than the image allows.

    Examples
    --------
    >>> img = np.zeros((5, 5), dtype=np.uint8)
    >>> img[2, 2] = 10
    >>> fm = focus_measure(img, threshold=0, window=0)
    >>> int(fm[2, 2]), int(fm[2, 1]), fm.dtype
    (40, 10, dtype('uint16'))
    """
    image = _check_image(image)
    step = _check_int("step", step, 1)
    threshold = _check_int("threshold", threshold, 0)
    window = _check_int("window", window, 0)
    threads = _check_int("threads", threads, 0)
    _check_fits(image, step, window)
    return _core.focus_measure(image, step=step, threshold=threshold, window=window, threads=threads)


def rgb_to_luma(image: np.ndarray, *, threads: int = 0) -> np.ndarray:
    """Grey image used by FMB1: ITU-R BT.601 integer luma ``(77R + 150G + 29B + 128) >> 8``.

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (H, W, C) with C >= 3
        RGB order (channels beyond the third, e.g. alpha, are ignored); C-contiguous.
    threads : int, optional
        0 uses the global setting.

    Returns
    -------
    grey : ndarray, shape (H, W), same dtype as ``image``

    Examples
    --------
    >>> rgb_to_luma(np.full((1, 1, 3), 200, dtype=np.uint8))
    array([[200]], dtype=uint8)
    """
    image = _check_image(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise InputError(f"image must be HxWxC with C >= 3 (RGB), got shape {image.shape}")
    threads = _check_int("threads", threads, 0)
    return _core.rgb_to_luma(image, threads=threads)


def focus_map(
    image: np.ndarray, *, mode: str = "fmb3", step: int = 1, threshold: int = 7, window: int = 1, threads: int = 0
) -> np.ndarray:
    """Per-pixel focus: the focus measure summed over channels, uint32 (H, W).

    Parameters
    ----------
    image : ndarray of uint8 or uint16, shape (H, W) or (H, W, C)
        C-contiguous; RGB order for ``mode="fmb1"``.
    mode : {"fmb3", "fmb1"}, optional
        ``"fmb3"``: the FM of every channel, summed (computed in one pass, the per-channel maps are
        never stored). ``"fmb1"``: the FM of the grey image (:func:`rgb_to_luma`; a 2-D image is
        used as it is).
    step, threshold, window, threads : int, optional
        As in :func:`focus_measure`.

    Returns
    -------
    focus : ndarray of uint32, shape (H, W)
        For a 2-D image both modes equal ``focus_measure(image)`` as uint32.

    Examples
    --------
    >>> img = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> img[1, 1] = 10
    >>> focus = focus_map(img, threshold=0, window=0)
    >>> int(focus[1, 1]), focus.dtype
    (120, dtype('uint32'))
    """
    if mode not in FOCUS_MAP_MODES:
        raise InputError(f"mode must be one of {FOCUS_MAP_MODES}, got {mode!r}")
    image = _check_image(image)
    step = _check_int("step", step, 1)
    threshold = _check_int("threshold", threshold, 0)
    window = _check_int("window", window, 0)
    threads = _check_int("threads", threads, 0)
    _check_fits(image, step, window)
    if mode == "fmb1" and image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        else:
            image = rgb_to_luma(image, threads=threads)
    return _core.focus_map(image, step=step, threshold=threshold, window=window, threads=threads)
