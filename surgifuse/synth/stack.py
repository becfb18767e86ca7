"""Synthetic focal stacks with truth: generate (scene -> thin-lens defocus per focus position ->
breathing/motion -> sensor noise -> JPEG), write to and load from disk, and whole data sets.

On disk, per stack: ``frame_0.png ... frame_{K-1}.png``, ``gt.png``, ``depth.npy``, ``meta.json``
(and ``instrument_mask.png`` when an instrument is in the scene). See docs/synthetic-data.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from surgifuse.errors import InputError, InputTypeError
from surgifuse.progress import track

from .degradations import (
    PHOTONS_AT_WHITE,
    READ_NOISE_DN,
    breathing_scale,
    frame_transforms,
    jpeg_roundtrip,
    poisson_gaussian_noise,
    quantise,
    warp_to_frame,
)
from .optics import NUMERICAL_APERTURE, Optics, defocus_scene
from .scenes import SCENE_KINDS, make_scene

FORMAT_VERSION = 1
# Depth range a scene can span (mm): retina sag and tilt plus the instrument. Bounds the blur
# radius near the canvas edge, hence the margin rendered around the visible image.
MAX_SCENE_DEPTH_RANGE_MM = 5.0
# Frame motion and breathing up to this fraction of the image size keep the scene canvas (and the
# truth) identical to the still stack's: 2 % covers breathing 0.01 with a few px of motion.
WARP_MARGIN_FRACTION = 0.02


@dataclass
class SyntheticStack:
    """A focal stack with its truth.

    Attributes
    ----------
    frames : list of ndarray
        K frames, uint8 RGB HxWx3, frame ``i`` focused at ``focus_positions[i]``.
    gt : ndarray or None
        The all-in-focus truth, uint8 RGB HxWx3: every pixel sharp, noise-free (None for a real
        stack loaded from disk without one).
    depth : ndarray or None
        float32 HxW, depth of the first surface seen at each pixel, in mm along the optical axis
        (increasing away from the microscope, 0 at the corneal apex).
    focus_positions : list of float or None
        The depth (mm) in focus in each frame.
    meta : dict
        Seed, every parameter, units, what was switched on (see docs/synthetic-data.md).
    instrument_mask : ndarray of bool or None
        HxW, where the instrument covers at least half the pixel (None: no instrument / unknown).

    Notes
    -----
    With breathing or motion on, ``gt``, ``depth`` and ``instrument_mask`` are in the coordinates
    of the middle frame ``K // 2`` (the reference that alignment of a still stack uses);
    ``meta["frame_transforms"][i]`` maps those coordinates to frame ``i``'s.
    """

    frames: list[np.ndarray]
    gt: np.ndarray | None
    depth: np.ndarray | None
    focus_positions: list[float] | None
    meta: dict[str, Any]
    instrument_mask: np.ndarray | None = None

    @property
    def k(self) -> int:
        return len(self.frames)


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise InputError(f"{name} must be {bound}, got {value}")
    return value


def _check_float(name: str, value, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (minimum <= value <= maximum) or math.isnan(value):
        raise InputError(f"{name} must be in [{minimum}, {maximum}], got {value}")
    return value


def even_focus_positions(depth: np.ndarray, k: int) -> list[float]:
    """K focus depths at the centres of K equal slabs of the depth range (mm).

    Each slab is about one depth of field wide for the default optics, so each region of the
    scene is sharp in about one frame.
    """
    z0, z1 = float(depth.min()), float(depth.max())
    step = (z1 - z0) / k
    return [z0 + (i + 0.5) * step for i in range(k)]


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def generate_stack(
    seed: int,
    *,
    height: int = 512,
    width: int = 512,
    k: int = 5,
    scene: str = "fundus",
    instrument: bool | None = None,
    noise: bool = True,
    jpeg_quality: int | None = None,
    breathing: float = 0.0,
    motion: float = 0.0,
    field_of_view_mm: float = 8.0,
    numerical_aperture: float = NUMERICAL_APERTURE,
    focus_positions: list[float] | None = None,
    photons_at_white: float = PHOTONS_AT_WHITE,
    read_noise_dn: float = READ_NOISE_DN,
) -> SyntheticStack:
    """Render a synthetic focal stack with its all-in-focus truth and depth.

    Parameters
    ----------
    seed : int
        Everything random follows from it: the same seed and options give identical arrays.
        Scene, instrument, motion and noise draw from separate streams, so switching one
        degradation on or off leaves the others (and the scene) unchanged.
    height, width : int
        Frame size in pixels (>= 16).
    k : int
        Number of focus positions (frames), >= 2.
    scene : {"fundus", "texture", "mixed"}
        A procedural fundus, a bundled natural image (scikit-image) on the eye's curved surface,
        or either at random per seed.
    instrument : bool or None
        Put a surgical instrument in front of the retina; None: at random per seed (half of them).
    noise : bool
        Poisson-Gaussian sensor noise (``photons_at_white``, ``read_noise_dn``).
    jpeg_quality : int or None
        JPEG-compress every frame at this quality (1-100); None: no compression.
    breathing : float
        Fractional magnification change across the sweep (e.g. 0.01); frame ``i`` is scaled by
        ``1 + breathing * (i - k // 2) / (k - 1)`` about the image centre.
    motion : float
        Largest shift (px) of a frame against the middle frame (uniform in a disc, with a tiny
        rotation); 0: none.
    field_of_view_mm, numerical_aperture : float
        The optics (see ``Optics``): the blur radius is ``|z - f| * NA / sqrt(1 - NA^2)`` mm,
        ``width / field_of_view_mm`` px per mm.
    focus_positions : list of float, optional
        The K focus depths (mm); default: centres of K equal slabs of the visible depth range.

    Returns
    -------
    SyntheticStack
        Frames, truth (``gt``, ``depth``, ``instrument_mask``) in the middle frame's coordinates,
        focus positions and ``meta``.

    Examples
    --------
    >>> s = generate_stack(0, height=64, width=64, k=3)
    >>> len(s.frames), s.frames[0].shape, s.gt.dtype, s.depth.dtype
    (3, (64, 64, 3), dtype('uint8'), dtype('float32'))
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    height = _check_int("height", height, 16)
    width = _check_int("width", width, 16)
    k = _check_int("k", k, 2, 512)  # deep stacks exercise the streamed fusion (surgifuse.streaming)
    if scene not in SCENE_KINDS:
        raise InputError(f"scene must be one of {', '.join(SCENE_KINDS)}, got {scene!r}")
    if instrument is not None and not isinstance(instrument, (bool, np.bool_)):
        raise InputTypeError(f"instrument must be True, False or None, got {instrument!r}")
    if jpeg_quality is not None:
        jpeg_quality = _check_int("jpeg_quality", jpeg_quality, 1, 100)
    breathing = _check_float("breathing", breathing, -0.2, 0.2)
    motion = _check_float("motion", motion, 0.0, 0.25 * min(height, width))
    optics = Optics(field_of_view_mm=float(field_of_view_mm), numerical_aperture=float(numerical_aperture))
    if focus_positions is not None:
        focus_positions = [float(f) for f in focus_positions]
        if len(focus_positions) != k or not all(math.isfinite(f) for f in focus_positions):
            raise InputError(f"focus_positions must be {k} finite numbers (k={k}), got {focus_positions}")

    choice_ss, scene_ss, inst_ss, motion_ss, noise_ss = np.random.SeedSequence(int(seed)).spawn(5)
    choice_rng = np.random.default_rng(choice_ss)
    kind_draw, inst_draw = choice_rng.uniform(size=2)
    kind = scene if scene != "mixed" else ("fundus" if kind_draw < 0.5 else "texture")
    has_instrument = bool(inst_draw < 0.5) if instrument is None else bool(instrument)

    pixel_mm = optics.pixel_mm(width)
    per_mm = optics.blur_px_per_mm(width)
    warping = breathing != 0.0 or motion > 0.0
    # The scene is drawn on a canvas larger than the frame (blur and frame motion then draw on real
    # content). The canvas size is fixed unless motion/breathing need more, so that switching
    # them on leaves the scene, hence the truth, unchanged.
    needed = int(math.ceil(motion + abs(breathing) * 0.5 * math.hypot(height, width))) + 2
    warp_margin = max(needed, int(math.ceil(WARP_MARGIN_FRACTION * max(height, width))) + 2)
    blur_margin = int(math.ceil(per_mm * MAX_SCENE_DEPTH_RANGE_MM)) + 2
    margin = warp_margin + blur_margin
    ch, cw = height + 2 * margin, width + 2 * margin
    the_scene = make_scene(
        np.random.default_rng(scene_ss),
        ch,
        cw,
        pixel_mm,
        kind=kind,
        instrument=has_instrument,
        margin=margin,
        instrument_rng=np.random.default_rng(inst_ss),
    )
    visible = (slice(margin, margin + height), slice(margin, margin + width))
    depth = np.ascontiguousarray(the_scene.front_depth()[visible])
    gt = quantise(the_scene.all_in_focus()[visible])
    mask = the_scene.instrument_mask()
    mask = None if mask is None else np.ascontiguousarray(mask[visible])
    focus_given = focus_positions is not None
    if not focus_given:
        focus_positions = even_focus_positions(depth, k)

    transforms = frame_transforms(
        np.random.default_rng(motion_ss), k, height=height, width=width, breathing=breathing, motion=motion
    )
    noise_rng = np.random.default_rng(noise_ss)
    layer = None
    if the_scene.instrument is not None:
        layer = (the_scene.instrument.premultiplied, the_scene.instrument.alpha, the_scene.instrument.depth)
    frames = []
    for i, focus in enumerate(focus_positions):
        optical = defocus_scene(the_scene.radiance, the_scene.depth, focus, per_mm, instrument=layer)
        if warping:
            image = warp_to_frame(optical, transforms[i], out_height=height, out_width=width, offset=margin)
        else:
            image = np.ascontiguousarray(optical[visible])
        if noise:
            image = poisson_gaussian_noise(image, noise_rng, photons_at_white=photons_at_white, read_noise_dn=read_noise_dn)
        frame = quantise(image)
        if jpeg_quality is not None:
            frame = jpeg_roundtrip(frame, jpeg_quality)
        frames.append(frame)

    max_defocus = max(max(abs(float(depth.min()) - f), abs(float(depth.max()) - f)) for f in focus_positions)
    meta = {
        "format": "surgifuse.synth",
        "format_version": FORMAT_VERSION,
        "seed": int(seed),
        "height": height,
        "width": width,
        "k": k,
        "scene": scene,
        "scene_kind": kind,
        "instrument": has_instrument,
        "noise": bool(noise),
        "jpeg_quality": jpeg_quality,
        "breathing": breathing,
        "motion": motion,
        "switched_on": {
            "instrument": has_instrument,
            "noise": bool(noise),
            "jpeg": jpeg_quality is not None,
            "breathing": breathing != 0.0,
            "motion": motion > 0.0,
        },
        "units": {"depth": "mm", "focus_positions": "mm", "field_of_view": "mm", "blur_radius": "px"},
        "depth_convention": "mm along the optical axis, increasing away from the microscope, 0 at the corneal apex",
        "focus_positions": [float(f) for f in focus_positions],
        "focus_spacing": "given" if focus_given else "centres of k equal slabs of the visible depth range",
        "depth_range_mm": [float(depth.min()), float(depth.max())],
        "optics": {
            "model": "thin lens, geometric circle of confusion, disc PSF",
            "field_of_view_mm": optics.field_of_view_mm,
            "numerical_aperture": optics.numerical_aperture,
            "pixel_mm": pixel_mm,
            "blur_px_per_mm": per_mm,
            "depth_of_field_mm": optics.depth_of_field_mm(width),
            "max_blur_radius_px": max_defocus * per_mm,
        },
        "sensor": {
            "model": "Poisson-Gaussian (heteroscedastic Gaussian limit), linear, 8-bit",
            "photons_at_white": float(photons_at_white),
            "read_noise_dn": float(read_noise_dn),
        },
        "reference_frame": k // 2,
        "truth_coordinates": f"gt, depth and instrument_mask are in the coordinates of the middle frame (index {k // 2})",
        "breathing_scales": [breathing_scale(i, k, breathing) for i in range(k)],
        "frame_transforms": [m.tolist() for m in transforms],
        "frame_transforms_meaning": "2x3 affine: reference (gt) pixel coordinates -> frame pixel coordinates",
        "scene_params": _json_safe(the_scene.params),
        "instrument_truth": _instrument_truth(the_scene, margin),
    }
    return SyntheticStack(frames, gt, depth, [float(f) for f in focus_positions], meta, mask)


def _instrument_truth(scene, margin: int) -> dict | None:
    """The instrument's tip in the truth's (visible) pixel coordinates, its depth and the retina's
    depth beneath it (mm), for measuring the tip's height above the retina; None without one."""
    if scene.instrument is None:
        return None
    p = scene.instrument.params
    tip_x, tip_y = (float(v) - margin for v in p["tip_px"])
    height = float(p["height_above_retina_mm"])
    return {"tip_xy": [tip_x, tip_y], "tip_depth_mm": float(p["tip_depth_mm"]),
            "retina_depth_under_tip_mm": float(p["tip_depth_mm"]) + height, "height_above_retina_mm": height,
            "shaft_angle_rad": float(p["shaft_angle_rad"]),
            "coordinates": "visible pixels of the truth (middle frame), x right, y down"}


# ----------------------------------------------------------------------------------------------
# Disk I/O


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_stack(stack: SyntheticStack, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a stack as ``frame_i.png``, ``gt.png``, ``depth.npy``, ``meta.json``.

    The files go to a temporary folder beside ``directory`` that is renamed into place at the
    end, so an interrupted write never leaves a half-written stack.

    Parameters
    ----------
    stack : SyntheticStack
    directory : path
        Folder to create. If it exists: an error, unless ``overwrite``.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    Path of the written folder.
    """
    if not isinstance(stack, SyntheticStack):
        raise InputTypeError(f"stack must be a SyntheticStack, got {type(stack).__name__}")
    if not stack.frames:
        raise InputError("stack has no frames")
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for i, frame in enumerate(stack.frames):
            _write_png(tmp / f"frame_{i}.png", np.asarray(frame))
        if stack.gt is not None:
            _write_png(tmp / "gt.png", np.asarray(stack.gt))
        if stack.depth is not None:
            np.save(tmp / "depth.npy", np.asarray(stack.depth, np.float32))
        if stack.instrument_mask is not None:
            _write_png(tmp / "instrument_mask.png", np.asarray(stack.instrument_mask, np.uint8) * 255)
        meta = dict(stack.meta)
        if stack.focus_positions is not None:
            meta["focus_positions"] = [float(f) for f in stack.focus_positions]
        meta["files"] = {
            "frames": [f"frame_{i}.png" for i in range(len(stack.frames))],
            "gt": "gt.png" if stack.gt is not None else None,
            "depth": "depth.npy" if stack.depth is not None else None,
            "instrument_mask": "instrument_mask.png" if stack.instrument_mask is not None else None,
        }
        (tmp / "meta.json").write_text(json.dumps(_json_safe(meta), indent=2) + "\n")
        if directory.exists():
            trash = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            directory.rename(trash)
            tmp.rename(directory)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_TRUTH_NAMES = ("gt", "instrument_mask")


def _read_image(path: Path) -> np.ndarray:
    # cv2 sniffs the content, so JPEG data behind a .png name still loads.
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"could not read image {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def load_stack(directory: str | os.PathLike) -> SyntheticStack:
    """Read a stack written by ``write_stack`` (or a folder of real frames without truth).

    Frames are ``frame_<i>.<ext>`` in index order; without those, every image in the folder in
    natural name order (``img_2`` before ``img_10``). ``gt``, ``depth``, ``instrument_mask`` and
    ``focus_positions`` are None when absent; ``meta`` is ``{}`` without ``meta.json``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"stack folder not found: {directory}")
    meta: dict[str, Any] = {}
    meta_path = directory / "meta.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{meta_path} is not valid JSON: {exc}") from exc
    images = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES]
    numbered = {}
    for p in images:
        m = re.fullmatch(r"frame_(\d+)", p.stem)
        if m:
            numbered[int(m.group(1))] = p
    if numbered:
        if sorted(numbered) != list(range(len(numbered))):
            raise InputError(f"{directory}: frame files must be numbered 0..K-1, found indices {sorted(numbered)}")
        paths = [numbered[i] for i in range(len(numbered))]
    else:
        paths = sorted((p for p in images if p.stem not in _TRUTH_NAMES), key=_natural_key)
    if not paths:
        raise InputError(f"{directory}: no frames found (expected frame_0.png ...)")
    frames = [_read_image(p) for p in paths]
    for i, f in enumerate(frames):
        if f.shape != frames[0].shape:
            raise InputError(f"{paths[i].name} has shape {f.shape}, {paths[0].name} has {frames[0].shape}")
    gt = depth = mask = None
    gt_paths = [directory / f"gt{s}" for s in _IMAGE_SUFFIXES if (directory / f"gt{s}").is_file()]
    if gt_paths:
        gt = _read_image(gt_paths[0])
    if (directory / "depth.npy").is_file():
        depth = np.load(directory / "depth.npy").astype(np.float32, copy=False)
    if (directory / "instrument_mask.png").is_file():
        mask = _read_image(directory / "instrument_mask.png") > 127
        if mask.ndim == 3:
            mask = mask[..., 0]
    focus = meta.get("focus_positions")
    if focus is not None:
        focus = [float(f) for f in focus]
        if len(focus) != len(frames):
            raise InputError(f"{meta_path}: {len(focus)} focus positions for {len(frames)} frames")
    return SyntheticStack(frames, gt, depth, focus, meta, mask)


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    count: int,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> list[Path]:
    """Write ``count`` stacks as ``out_dir/stack_0000 ...``, stack ``i`` from seed ``seed + i``.

    ``options`` are passed to ``generate_stack``. Each stack is written atomically, so a run that
    is interrupted leaves only complete stacks.
    """
    count = _check_int("count", count, 1)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in track(range(count), desc="synth", unit="stack", enabled=progress):
        stack = generate_stack(int(seed) + i, **options)
        written.append(write_stack(stack, out_dir / f"stack_{i:04d}", overwrite=overwrite))
    return written
