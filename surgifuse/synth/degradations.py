"""The camera's degradations, each switchable: Poisson-Gaussian sensor noise (Foi et al.,
"Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE TIP
2008), JPEG, focus breathing (magnification changes with focus) and small motion between frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from surgifuse.errors import InputError

# Sensor defaults: a small-pixel video sensor at 30 fps. 4000 photo-electrons at white give a
# shot-noise std of 2.8 DN at mid-grey and 4.0 DN at white (8-bit); read noise 1 DN.
PHOTONS_AT_WHITE = 4000.0
READ_NOISE_DN = 1.0


def poisson_gaussian_noise(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    photons_at_white: float = PHOTONS_AT_WHITE,
    read_noise_dn: float = READ_NOISE_DN,
) -> np.ndarray:
    """Add signal-dependent sensor noise to a linear float32 image in [0, 1].

    The variance is ``x / photons_at_white + (read_noise_dn / 255)**2``: photon shot noise (Poisson,
    variance proportional to the signal) plus Gaussian read noise. The Poisson part is drawn from
    its Gaussian limit (exact to < 1 % at the >= 40 electrons of every pixel above 1 % grey),
    which is the heteroscedastic model of Foi et al. 2008.
    """
    if photons_at_white <= 0:
        raise InputError(f"photons_at_white must be > 0, got {photons_at_white}")
    if read_noise_dn < 0:
        raise InputError(f"read_noise_dn must be >= 0, got {read_noise_dn}")
    x = np.clip(image, 0.0, None)
    std = np.sqrt(x / np.float32(photons_at_white) + np.float32((read_noise_dn / 255.0) ** 2))
    return (image + std * rng.standard_normal(image.shape, dtype=np.float32)).astype(np.float32)


def quantise(image: np.ndarray) -> np.ndarray:
    """Float32 [0, 1] -> uint8, rounded and clipped (the ADC)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image as JPEG at ``quality`` (1-100) with OpenCV and decode it."""
    quality = int(quality)
    if not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def breathing_scale(index: int, k: int, breathing: float) -> float:
    """Magnification of frame ``index`` relative to the middle frame ``k // 2``.

    ``1 + breathing * (index - k // 2) / (k - 1)``: linear in the focus position, 1 at the middle
    frame, ``breathing`` is the fractional change from the first frame to the last.
    """
    if k < 2:
        return 1.0
    return 1.0 + breathing * (index - k // 2) / (k - 1)


def frame_transforms(
    rng: np.random.Generator,
    k: int,
    *,
    height: int,
    width: int,
    breathing: float,
    motion: float,
) -> list[np.ndarray]:
    """Per frame, the 2x3 affine map from reference (middle-frame) pixel coordinates to the
    frame's pixel coordinates: breathing (scale about the image centre), a random shift of up to
    ``motion`` px (uniform in a disc) and a rotation that moves the corners by at most a quarter of
    that. The middle frame is the identity.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    max_rot = 0.25 * motion / max(1.0, math.hypot(cx, cy))
    out = []
    for i in range(k):
        s = breathing_scale(i, k, breathing)
        dx = dy = rot = 0.0
        if motion > 0:
            r = motion * math.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * math.pi)
            dx, dy = r * math.cos(phi), r * math.sin(phi)
            rot = rng.uniform(-max_rot, max_rot)
        if i == k // 2:
            s, dx, dy, rot = 1.0, 0.0, 0.0, 0.0
        c, sn = s * math.cos(rot), s * math.sin(rot)
        m = np.array(
            [[c, -sn, cx - c * cx + sn * cy + dx], [sn, c, cy - sn * cx - c * cy + dy]],
            np.float64,
        )
        out.append(m)
    return out


def warp_to_frame(image: np.ndarray, matrix: np.ndarray, *, out_height: int, out_width: int, offset: int) -> np.ndarray:
    """Resample a canvas image (visible image + ``offset`` px margin each side) into a frame.

    ``matrix`` maps reference coordinates (of the visible image) to frame coordinates; the frame
    pixel ``p`` shows the canvas at ``matrix^-1 p + offset``.
    """
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)
    inv[0, 2] += offset
    inv[1, 2] += offset
    return cv2.warpAffine(
        image,
        inv[:2],
        (out_width, out_height),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
