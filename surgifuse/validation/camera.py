"""The camera behind the lens, for the validation generator: focus breathing and jitter (one affine
warp per frame), Poisson-Gaussian sensor noise, a gamma-encoded 8-bit output and JPEG.

Noise follows the Poisson-Gaussian model of Foi, Trimeche, Katkovnik & Egiazarian, "Practical
Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE TIP 17(10), 2008:
photo-electrons are drawn from a Poisson law (exactly where the count is low, from its normal limit
where it is high) and read noise is added in digital numbers.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np

from surgifuse.errors import InputError

__all__ = [
    "FULL_WELL",
    "GAMMA",
    "READ_NOISE_DN",
    "decode",
    "encode",
    "frame_matrices",
    "jpeg",
    "sensor_noise",
    "warp_into_frame",
    "warp_margin",
]

# A 1/2.3" video sensor pixel: about 3000 photo-electrons at white, 1.5 DN (8-bit) of read noise.
FULL_WELL = 3000.0
READ_NOISE_DN = 1.5
# Video cameras deliver gamma-encoded values; 2.2 approximates Rec.709 / sRGB.
GAMMA = 2.2
# Below this many electrons the Poisson law is drawn exactly; above it its normal limit (the
# skewness 1/sqrt(n) is then < 0.15 and the two differ by < 0.3 DN).
_EXACT_POISSON_BELOW = 50.0


def sensor_noise(linear: np.ndarray, rng: np.random.Generator, *, full_well: float = FULL_WELL,
                 read_noise_dn: float = READ_NOISE_DN) -> np.ndarray:
    """Linear image (float32, 1 = white) -> the same with shot and read noise added.

    Parameters
    ----------
    linear : ndarray of float32
        Irradiance in units of the white level (values above 1 saturate later, at ``encode``).
    rng : numpy Generator
    full_well : float, keyword-only
        Photo-electrons at the white level.
    read_noise_dn : float, keyword-only
        Standard deviation of the read noise in 8-bit digital numbers.
    """
    if not full_well > 0:
        raise InputError(f"full_well must be > 0, got {full_well}", field="full_well")
    if not read_noise_dn >= 0:
        raise InputError(f"read_noise_dn must be >= 0, got {read_noise_dn}", field="read_noise_dn")
    electrons = np.clip(linear, 0.0, None).astype(np.float32) * np.float32(full_well)
    read_e2 = np.float32((read_noise_dn / 255.0 * full_well) ** 2)  # read-noise variance, electrons^2
    # Shot and read noise together: one normal draw of the summed variance...
    noisy = electrons + np.sqrt(electrons + read_e2) * rng.standard_normal(electrons.shape, dtype=np.float32)
    # ...except at low counts, where the shot noise is drawn from the Poisson law itself.
    low = electrons < _EXACT_POISSON_BELOW
    if low.any():
        dark = electrons[low]
        noisy[low] = rng.poisson(dark).astype(np.float32) + np.sqrt(read_e2) * rng.standard_normal(
            dark.shape, dtype=np.float32)
    return noisy / np.float32(full_well)


def encode(linear: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """Linear float -> gamma-encoded uint8 (saturating at white, rounding to the nearest level)."""
    x = np.clip(linear, 0.0, 1.0)
    if gamma != 1.0:
        x = x ** np.float32(1.0 / gamma)
    return np.rint(x * 255.0).astype(np.uint8)


def decode(image: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """uint8 gamma-encoded -> linear float32 in [0, 1] (for photographs used as radiance)."""
    x = image.astype(np.float32) / 255.0
    return x ** np.float32(gamma) if gamma != 1.0 else x


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as baseline JPEG with Pillow (4:2:0 chroma) and decode it."""
    from PIL import Image

    if not (isinstance(quality, (int, np.integer)) and 1 <= int(quality) <= 100):
        raise InputError(f"JPEG quality must be an integer in 1..100, got {quality!r}", field="jpeg_quality")
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def frame_matrices(rng: np.random.Generator, k: int, *, height: int, width: int, breathing: float,
                   jitter: float) -> list[np.ndarray]:
    """Per frame, the 2x3 affine map from reference coordinates (the middle frame ``k // 2``, where
    the truth lies) to the frame's pixel coordinates.

    Breathing: frame ``i`` is magnified by ``(1 + breathing) ** ((i - k // 2) / (k - 1))`` about the
    image centre (a geometric progression: the magnification ratio between consecutive focus
    steps is constant). Jitter: a translation with each component uniform in
    ``[-jitter, jitter]`` px. The middle frame is the identity.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    mats = []
    for i in range(k):
        step = (i - k // 2) / max(k - 1, 1)
        s = (1.0 + breathing) ** step
        tx, ty = (rng.uniform(-jitter, jitter, size=2) if jitter > 0 else (0.0, 0.0))
        if i == k // 2:
            s, tx, ty = 1.0, 0.0, 0.0
        mats.append(np.array([[s, 0.0, cx * (1 - s) + tx], [0.0, s, cy * (1 - s) + ty]], np.float64))
    return mats


def warp_into_frame(canvas: np.ndarray, matrix: np.ndarray, *, margin: int, height: int, width: int) -> np.ndarray:
    """The frame (``height x width``) seen through ``matrix`` of a canvas that extends the reference
    image by ``margin`` px on every side."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    # frame pixel p shows reference point M^-1 p, which is canvas pixel M^-1 p + margin.
    shift = np.array([[1.0, 0.0, margin], [0.0, 1.0, margin], [0.0, 0.0, 1.0]])
    frame_to_canvas = (shift @ np.linalg.inv(full))[:2]
    if np.allclose(frame_to_canvas, [[1, 0, margin], [0, 1, margin]]):
        return canvas[margin:margin + height, margin:margin + width].copy()
    return cv2.warpAffine(canvas, frame_to_canvas, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def warp_margin(height: int, width: int, breathing: float, jitter: float) -> int:
    """Canvas margin (px) that a warp of this breathing and jitter can reach beyond the image."""
    return math.ceil(abs(breathing) * 0.5 * math.hypot(height, width) + jitter) + 2
