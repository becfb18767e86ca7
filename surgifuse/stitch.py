"""Fundus panoramas stitched from all-in-focus frames: OpenCV's stitcher (``cv::Stitcher``: features,
pairwise matching, bundle adjustment, seam finding, multi-band blending) over fused frames.

The paper's "fundus panoramas stitched from all-in-focus frames"; the stitching pipeline is Brown and
Lowe's ("Automatic Panoramic Image Stitching using Invariant Features", IJCV 74(1), 2007) as OpenCV
implements it. The default ``scans`` mode fits affine transforms, the model of a microscope or a
scanner moving over the field; ``panorama`` is a camera turning about its centre (spherical).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from surgifuse.errors import InputError, InputTypeError

__all__ = ["MODES", "stitch"]

#: The ``mode`` values: OpenCV's ``Stitcher_SCANS`` and ``Stitcher_PANORAMA``. (OpenCV is imported
#: when ``stitch`` runs, so that the CLI's parser does not load it.)
MODES = ("scans", "panorama")

# Features are found on a contrast-equalised green channel, the panorama is blended from the frames
# as they are. Green is where the retinal vessels contrast most (red saturates, blue is noise), and
# CLAHE brings out the fine vessels the ORB features need: on skimage's fundus photograph at 600 px,
# two crops overlapping by 40 % do not stitch from their colour frames (no match) and stitch to
# 39.7 dB against the original from CLAHE green; 36 dB against 32.7 dB on the astronaut.
_CLAHE_CLIP = 3.0
_CLAHE_TILES = (8, 8)

_NOT_OVERLAPPING = "the images do not overlap enough to be stitched"


def stitch(images: Sequence[np.ndarray], *, mode: str = "scans", names: Sequence[str] | None = None) -> np.ndarray:
    """Stitch overlapping images into one panorama.

    Parameters
    ----------
    images : sequence of ndarray
        At least 2 images, uint8, each HxW grey, HxWx3 RGB or HxWx4 RGBA (the alpha channel is
        ignored). Sizes may differ; the order does not matter. Every image must overlap another one:
        by 30-40 % of its width on a fundus photograph at full resolution, by half of it once that
        is reduced to 600 px and its fine vessels are lost (measured on ``skimage.data.retina``).
    mode : {"scans", "panorama"}, keyword-only
        ``scans`` (default): affine transforms, for a microscope or scanner moving over the field.
        ``panorama``: rotations about the camera centre, spherical projection.
    names : sequence of str, optional
        What to call the images in error messages (file names); default ``image 1``, ``image 2``...

    Returns
    -------
    panorama : ndarray
        uint8, HxWx3 RGB, or HxW grey when every image is grey. Its size is the bounding box of the
        transformed images; what no image covers is black (0). Not cropped.

    Raises
    ------
    InputError
        Fewer than 2 images; an unknown ``mode``; a 16-bit image (the blender works in 8 bits);
        an image that is not grey, RGB or RGBA, or is empty; images that do not overlap enough, or
        an image that overlaps none of the others (named), so that no panorama holds them all.
    InputTypeError
        ``images`` not a sequence of arrays, or samples other than uint8 and uint16 (float, int32, bool).

    Notes
    -----
    Features (ORB) are found on a CLAHE-equalised green channel (grey images: the grey itself), at
    most 0.6 megapixels (OpenCV's registration resolution); the panorama is composed at full
    resolution with OpenCV's seams and multi-band blending. An image the stitcher cannot attach with
    confidence is an error, never silently left out.

    References
    ----------
    M. Brown and D. G. Lowe, "Automatic Panoramic Image Stitching using Invariant Features",
    International Journal of Computer Vision 74(1), 59-73, 2007.

    Examples
    --------
    >>> import skimage.data
    >>> scene = skimage.data.astronaut()[100:400, 16:496]  # 300x480
    >>> panorama = stitch([scene[:, :300], scene[:, 180:]])  # 40 % overlap
    >>> panorama.shape  # doctest: +SKIP
    (300, 480, 3)
    """
    import cv2

    if isinstance(images, np.ndarray):
        raise InputTypeError(f"images must be a list of arrays, got one array of shape {images.shape}")
    if not isinstance(images, Sequence):
        raise InputTypeError(f"images must be a list of arrays, got {type(images).__name__}")
    if len(images) < 2:
        raise InputError(f"need at least 2 images, got {len(images)}")
    if mode not in MODES:
        raise InputError(f"unknown stitching mode {mode!r}; use {' or '.join(MODES)}", field="mode",
                         allowed=", ".join(MODES))
    labels = [f"image {i + 1}" for i in range(len(images))] if names is None else [str(n) for n in names]
    if len(labels) != len(images):
        raise InputError(f"got {len(labels)} names for {len(images)} images")

    frames = [_check_image(image, label) for image, label in zip(images, labels)]
    grey = all(frame.ndim == 2 for frame in frames)
    # (H, W) or (H, W, 3) RGB -> (H, W, 3) BGR, OpenCV's order
    bgr = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR if f.ndim == 2 else cv2.COLOR_RGB2BGR) for f in frames]
    features = [_registration_image(f) for f in frames]

    stitcher = cv2.Stitcher_create(cv2.Stitcher_SCANS if mode == "scans" else cv2.Stitcher_PANORAMA)
    try:
        status = stitcher.estimateTransform(features)
    except cv2.error as exc:
        # Too few features in an image to match at all (FLANN asserts on fewer keypoints than it seeks).
        raise InputError(f"{_NOT_OVERLAPPING} (too few features to match in at least one image)") from exc
    if status != cv2.Stitcher_OK:
        raise InputError(_not_stitched(status))
    kept = {int(i) for i in np.asarray(stitcher.component()).ravel()}
    left_out = [label for i, label in enumerate(labels) if i not in kept]
    if left_out:
        # OpenCV keeps the largest group of confidently matched images and drops the rest.
        raise InputError(
            f"{', '.join(left_out)} {'does' if len(left_out) == 1 else 'do'} not overlap the other images "
            f"enough to be stitched (no confident feature match); {len(kept)} of {len(labels)} images would "
            "make a panorama", file=None if names is None else left_out[0])

    status, panorama = stitcher.composePanorama(bgr)
    if status != cv2.Stitcher_OK or panorama is None:
        raise InputError(f"the panorama could not be composed (OpenCV stitcher status {status})")
    # (H', W', 3) BGR -> RGB, or grey: the three channels of grey frames are equal
    return np.ascontiguousarray(panorama[..., 0]) if grey else cv2.cvtColor(panorama, cv2.COLOR_BGR2RGB)


def _check_image(image: np.ndarray, label: str) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 uint8 -> HxW or HxWx3 (alpha dropped); ``InputError`` naming ``label``."""
    if not isinstance(image, np.ndarray):
        raise InputTypeError(f"{label}: must be a numpy array, got {type(image).__name__}")
    if image.dtype == np.uint16:
        raise InputError(f"{label}: uint16 (16-bit) images cannot be stitched; OpenCV's stitcher blends 8-bit "
                         "images only: convert to 8-bit (uint8) first")
    if image.dtype != np.uint8:
        raise InputTypeError(f"{label}: uint8 samples expected, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 4):
        image = image[..., 0] if image.shape[2] == 1 else image[..., :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(f"{label}: expected HxW grey, HxWx3 RGB or HxWx4 RGBA, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{label}: empty image, shape {image.shape}")
    return np.ascontiguousarray(image)


def _not_stitched(status: int) -> str:
    """What an OpenCV stitcher status other than OK means, as an error message."""
    import cv2

    reasons = {
        cv2.Stitcher_ERR_NEED_MORE_IMGS: "no matching features between them",
        cv2.Stitcher_ERR_HOMOGRAPHY_EST_FAIL: "their matching features fit no common transform",
        cv2.Stitcher_ERR_CAMERA_PARAMS_ADJUST_FAIL: "the transforms between them could not be refined together: "
                                                    "too few or inconsistent matching features",
    }
    return f"{_NOT_OVERLAPPING} ({reasons.get(status, f'OpenCV stitcher status {status}')})"


def _registration_image(frame: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) RGB -> (H, W) CLAHE-equalised green (or grey): what features are found on."""
    import cv2

    channel = frame if frame.ndim == 2 else np.ascontiguousarray(frame[..., 1])
    return cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_TILES).apply(channel)
