"""A live focus sweep with truth: a renderer fast enough for real time (the service's demo source)
and an ``.mp4`` writer with a truth file beside it.

The focus steps back and forth across K positions (a triangle wave, one position per frame) while
the instrument tip circles slowly, as a surgeon's hand would, so that fusion and its motion guard
can be measured against exact truth. The blurred background is rendered once per focus position;
each frame only translates the pre-blurred instrument layer and composites it (same optics as
``generate_stack``: thin lens, disc PSF, layered compositing).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from surgifuse.errors import InputError, InputTypeError
from surgifuse.progress import track

from .degradations import PHOTONS_AT_WHITE, READ_NOISE_DN
from .optics import NUMERICAL_APERTURE, Optics, layered_defocus
from .scenes import SCENE_KINDS, instrument_layer, make_scene, random_instrument_params
from .stack import MAX_SCENE_DEPTH_RANGE_MM, even_focus_positions

NOISE_BANK_PAD = 64  # the noise of a frame is a window of a fixed bank at a per-frame offset


@dataclass
class SweepFrame:
    """One frame of the sweep with its truth (all in the frame's own coordinates).

    image : uint8 RGB HxWx3, what the camera sees (defocused, noisy)
    aif : uint8 RGB HxWx3, the all-in-focus truth (noise-free)
    depth : float32 HxW, depth of the first surface (mm, as in ``generate_stack``)
    instrument_mask : bool HxW, where the instrument covers at least half the pixel
    focus_position : float, the depth (mm) in focus
    focus_index : int, its index among the K positions (0 nearest the microscope)
    view : 3x3 float, the eye motion: still-eye scene -> this frame (identity without ``EyeMotion``)
    """

    image: np.ndarray
    aif: np.ndarray
    depth: np.ndarray
    instrument_mask: np.ndarray
    focus_position: float
    focus_index: int
    #: 3x3 map from the still-eye scene to this frame (``EyeMotion``; identity without it).
    view: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class _Patch:
    """A layer crop placed at (y0, x0) in instrument-canvas coordinates."""

    y0: int
    x0: int
    colour: np.ndarray  # premultiplied, DN (0..255), float32 hxwx3
    transmit: np.ndarray  # 1 - alpha, float32 hxwx3 (ready for cv2.multiply)


def sweep_period(k: int) -> int:
    """Frames per back-and-forth focus sweep over ``k`` positions (``triangle_index`` repeats)."""
    return 2 * (k - 1)


def triangle_index(t: int, k: int) -> int:
    """Focus index of frame ``t``: 0, 1, ..., k-1, k-2, ..., 1, 0, 1, ... (period 2(k-1))."""
    period = sweep_period(k)
    i = t % period
    return i if i < k else period - i


def _crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@dataclass(frozen=True)
class EyeMotion:
    """How the whole view moves in a live sweep: the eye wanders, the optics breathe, the view jumps.

    ``wander_px``: radius of a slow circular wander of the eye (one turn per
    ``wander_period_frames``). ``breathing``: magnification change across the sweep, focus
    position 0 to K-1, about the image centre (focus breathing, a function of focus position).
    ``jump_px``: the view shifts sideways by this much every ``jump_every_frames`` frames and back
    (0: never), as when the surgeon moves the eye or the microscope.
    """

    wander_px: float = 0.0
    wander_period_frames: int = 240
    breathing: float = 0.0
    jump_px: float = 0.0
    jump_every_frames: int = 0

    def __post_init__(self):
        if not (self.wander_px >= 0 and self.jump_px >= 0 and abs(self.breathing) < 0.5):
            raise InputError(f"eye motion needs wander_px >= 0, jump_px >= 0, |breathing| < 0.5, got {self}")
        if self.wander_period_frames < 1 or self.jump_every_frames < 0:
            raise InputError(f"wander_period_frames must be >= 1 and jump_every_frames >= 0, got {self}")

    @property
    def still(self) -> bool:
        return self.wander_px == 0 and self.breathing == 0 and (self.jump_px == 0 or self.jump_every_frames == 0)

    def period(self) -> int:
        """Frames after which the motion repeats."""
        jumps = 2 * self.jump_every_frames if self.jump_px and self.jump_every_frames else 1
        return math.lcm(self.wander_period_frames if self.wander_px else 1, jumps)

    def matrix(self, t: int, focus_index: int, k: int, shape: tuple[int, int]) -> np.ndarray:
        """3x3 map from scene (still-eye frame) coordinates to the coordinates of frame ``t``."""
        h, w = shape
        scale = 1.0 + self.breathing * (focus_index - (k - 1) / 2) / max(k - 1, 1)
        phase = 2 * math.pi * t / self.wander_period_frames
        tx, ty = self.wander_px * math.cos(phase), self.wander_px * math.sin(phase)
        if self.jump_px and self.jump_every_frames and (t // self.jump_every_frames) % 2 == 1:
            tx += self.jump_px
        cx, cy = (w - 1) / 2, (h - 1) / 2
        return np.array([[scale, 0.0, cx - scale * cx + tx], [0.0, scale, cy - scale * cy + ty], [0.0, 0.0, 1.0]])


def warp_view(image: np.ndarray, matrix: np.ndarray, *, nearest: bool = False) -> np.ndarray:
    """``image`` seen through the view ``matrix`` (scene -> frame); borders mirror the scene."""
    h, w = image.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix[:2], (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT_101)


class FocusSweepRenderer:
    """Render frame ``t`` of a live focus sweep over a synthetic retina with a moving instrument.

    Parameters
    ----------
    seed : int
        Scene, instrument pose and noise follow from it; ``render(t)`` is a pure function of
        ``(seed, options, t)``.
    height, width : int
        Frame size (default 720x1280).
    k : int
        Focus positions swept (>= 2), evenly spread over the scene's depth range.
    instrument_motion : bool
        The instrument tip circles (radius ``motion_radius_mm``, one turn per
        ``motion_period_frames``); False: it stands still.
    noise : bool
        Poisson-Gaussian sensor noise (as ``generate_stack``).
    scene : {"fundus", "texture"}
    motion_radius_mm : float
        Radius of the tip's circle (default 0.4 mm: 64 px at 1280 px across 8 mm).
    motion_period_frames : int
        Frames per turn (default 120: 4 s at 30 fps).
    eye : EyeMotion, optional
        Moves the whole view (wander, breathing, jumps); ``SweepFrame.view`` gives the truth.

    Notes
    -----
    The background is blurred once per focus position at construction (seconds); a frame then
    costs a copy, one composite over the instrument's box and the noise.
    """

    def __init__(
        self,
        seed: int,
        *,
        height: int = 720,
        width: int = 1280,
        k: int = 5,
        instrument_motion: bool = True,
        noise: bool = True,
        scene: str = "fundus",
        field_of_view_mm: float = 8.0,
        numerical_aperture: float = NUMERICAL_APERTURE,
        motion_radius_mm: float = 0.4,
        motion_period_frames: int = 120,
        photons_at_white: float = PHOTONS_AT_WHITE,
        read_noise_dn: float = READ_NOISE_DN,
        eye: EyeMotion | None = None,
    ):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        for name, v, lo in (("height", height, 16), ("width", width, 16), ("k", k, 2), ("motion_period_frames", motion_period_frames, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InputTypeError(f"{name} must be an integer, got {type(v).__name__}")
            if v < lo:
                raise InputError(f"{name} must be >= {lo}, got {v}")
        if scene not in SCENE_KINDS or scene == "mixed":
            raise InputError(f"scene must be 'fundus' or 'texture', got {scene!r}")
        if not motion_radius_mm >= 0:
            raise InputError(f"motion_radius_mm must be >= 0, got {motion_radius_mm}")
        self.seed = int(seed)
        self.height, self.width, self.k = int(height), int(width), int(k)
        self.instrument_motion = bool(instrument_motion)
        self.noise = bool(noise)
        self.scene_kind = scene
        self.optics = Optics(field_of_view_mm=float(field_of_view_mm), numerical_aperture=float(numerical_aperture))
        self.motion_period_frames = int(motion_period_frames)
        self.motion_radius_mm = float(motion_radius_mm)
        self.photons_at_white = float(photons_at_white)
        self.read_noise_dn = float(read_noise_dn)
        self.eye = eye if eye is not None and not eye.still else None
        self._build()

    # -- construction ---------------------------------------------------------------------------

    def _build(self) -> None:
        h, w = self.height, self.width
        pixel_mm = self.optics.pixel_mm(w)
        per_mm = self.optics.blur_px_per_mm(w)
        scene_ss, inst_ss, noise_ss = np.random.SeedSequence([self.seed, 0x5EE9]).spawn(3)
        blur_pad = int(math.ceil(per_mm * MAX_SCENE_DEPTH_RANGE_MM)) + 2
        self.motion_radius_px = self.motion_radius_mm / pixel_mm if self.instrument_motion else 0.0
        reach = int(math.ceil(self.motion_radius_px))

        scene = make_scene(np.random.default_rng(scene_ss), h + 2 * blur_pad, w + 2 * blur_pad, pixel_mm, kind=self.scene_kind, instrument=False)
        vis = (slice(blur_pad, blur_pad + h), slice(blur_pad, blur_pad + w))
        bg_depth_vis = np.ascontiguousarray(scene.depth[vis])

        # Instrument on its own canvas, larger than the frame by its reach plus the blur pad, so a
        # translated copy still enters from outside the frame.
        m = reach + blur_pad
        ih, iw = h + 2 * m, w + 2 * m
        p = random_instrument_params(np.random.default_rng(inst_ss), h, w, 0)
        tip = (p["tip_px"][0] + m, p["tip_px"][1] + m)
        ty, tx = int(round(p["tip_px"][1])), int(round(p["tip_px"][0]))
        tip_depth = float(bg_depth_vis[min(max(ty, 0), h - 1), min(max(tx, 0), w - 1)]) - p["height_above_retina_mm"]
        inst = instrument_layer(
            ih, iw, pixel_mm, tip_px=tip, angle=p["angle"], tip_depth_mm=tip_depth,
            elevation_slope=p["elevation_slope"], diameter_mm=p["diameter_mm"], kind=p["kind"], jaw_opening=p["jaw_opening"],
        )
        # Keep the instrument in front of the retina wherever its motion takes it: compare with the
        # nearest retina within its reach.
        bg_full = np.full((ih, iw), np.inf, np.float32)
        bg_full[m - blur_pad : m - blur_pad + scene.depth.shape[0], m - blur_pad : m - blur_pad + scene.depth.shape[1]] = scene.depth
        bg_full[~np.isfinite(bg_full)] = float(scene.depth.min())
        if reach > 0:
            # Min filter on an 8x reduced copy: the retina is smooth at that scale, and the 0.1 mm
            # clearance below covers the vessels' 0.08 mm relief that the reduction averages out.
            small = cv2.resize(bg_full, (max(1, iw // 8), max(1, ih // 8)), interpolation=cv2.INTER_AREA)
            r8 = reach // 8 + 1
            small = cv2.erode(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r8 + 1, 2 * r8 + 1)))
            bg_near = cv2.resize(small, (iw, ih), interpolation=cv2.INTER_LINEAR)
        else:
            bg_near = bg_full
        gap = np.where(inst.alpha > 0, bg_near - inst.depth, np.inf)
        if float(gap.min()) < 0.1:
            inst.depth -= np.float32(0.1 - float(gap.min()))

        # Focus positions across everything the sweep can see: retina and instrument.
        y0, y1, x0, x1 = _crop_box(inst.alpha > 0)
        inside = (slice(m - reach, m + h + reach), slice(m - reach, m + w + reach))
        seen = inst.depth[inside][inst.alpha[inside] > 0]
        z_lo = min(float(bg_depth_vis.min()), float(seen.min()) if seen.size else math.inf)
        z_hi = max(float(bg_depth_vis.max()), float(seen.max()) if seen.size else -math.inf)
        self.focus_positions = even_focus_positions(np.array([z_lo, z_hi]), self.k)

        # Background per focus position, DN units (0..255), and its noise std.
        ones = np.ones(scene.depth.shape, np.float32)
        self._background = []
        for f in self.focus_positions:
            radius = (np.abs(scene.depth - np.float32(f)) * np.float32(per_mm)).astype(np.float32)
            bg, _ = layered_defocus(scene.radiance, ones, radius, normalise=True)
            self._background.append(np.ascontiguousarray(bg[vis] * np.float32(255.0)))
        self._aif_background = np.clip(np.rint(scene.radiance[vis] * 255), 0, 255).astype(np.uint8)
        self._depth_background = bg_depth_vis

        # Instrument per focus position: blurred, cropped to where it reaches.
        self._instrument_blurred: list[_Patch] = []
        for f in self.focus_positions:
            radius = (np.abs(inst.depth - np.float32(f)) * np.float32(per_mm)).astype(np.float32)
            c, a = layered_defocus(inst.premultiplied, inst.alpha, radius, normalise=False)
            by0, by1, bx0, bx1 = _crop_box(a > 1.0 / 1024)
            a = np.clip(a[by0:by1, bx0:bx1], 0.0, 1.0)
            self._instrument_blurred.append(
                _Patch(by0, bx0, np.ascontiguousarray(c[by0:by1, bx0:bx1] * np.float32(255.0)), np.repeat((1.0 - a)[..., None], 3, axis=2))
            )
        self._inst_sharp = _Patch(y0, x0, np.ascontiguousarray(inst.premultiplied[y0:y1, x0:x1] * np.float32(255.0)), np.repeat((1.0 - inst.alpha[y0:y1, x0:x1])[..., None], 3, axis=2))
        self._inst_mask = inst.alpha[y0:y1, x0:x1] >= 0.5
        self._inst_depth = np.ascontiguousarray(inst.depth[y0:y1, x0:x1])
        self._canvas_offset = m

        noise_rng = np.random.default_rng(noise_ss)
        self._noise_bank = noise_rng.standard_normal((h + NOISE_BANK_PAD, w + NOISE_BANK_PAD, 3), dtype=np.float32) if self.noise else None
        self._noise_gain = np.float32(255.0 / self.photons_at_white)
        self._noise_floor = np.float32(self.read_noise_dn**2)
        self.params = {
            "seed": self.seed,
            "height": h,
            "width": w,
            "k": self.k,
            "instrument_motion": self.instrument_motion,
            "noise": self.noise,
            "scene": self.scene_kind,
            "field_of_view_mm": self.optics.field_of_view_mm,
            "numerical_aperture": self.optics.numerical_aperture,
            "motion_radius_mm": self.motion_radius_mm,
            "motion_period_frames": self.motion_period_frames,
            "photons_at_white": self.photons_at_white,
            "read_noise_dn": self.read_noise_dn,
        }
        self.scene_params = scene.params
        self.instrument_params = inst.params

    # -- per frame --------------------------------------------------------------------------------

    def instrument_offset(self, t: int) -> tuple[int, int]:
        """Integer (dx, dy) px of the instrument at frame ``t`` from its rest pose."""
        if self.motion_radius_px == 0:
            return 0, 0
        phase = 2 * math.pi * t / self.motion_period_frames
        return int(round(self.motion_radius_px * math.cos(phase))), int(round(self.motion_radius_px * math.sin(phase)))

    def _place(self, y0: int, x0: int, ph: int, pw: int, dx: int, dy: int):
        """Frame slice and patch slice where a patch at canvas (y0, x0) lands after (dx, dy)."""
        fy0 = y0 - self._canvas_offset + dy
        fx0 = x0 - self._canvas_offset + dx
        ay0, ax0 = max(fy0, 0), max(fx0, 0)
        ay1, ax1 = min(fy0 + ph, self.height), min(fx0 + pw, self.width)
        if ay1 <= ay0 or ax1 <= ax0:
            return None
        return (slice(ay0, ay1), slice(ax0, ax1)), (slice(ay0 - fy0, ay1 - fy0), slice(ax0 - fx0, ax1 - fx0))

    @staticmethod
    def _composite(dst: np.ndarray, patch: _Patch, fs, ps) -> None:
        region = dst[fs].astype(np.float32, copy=False)
        out = cv2.add(cv2.multiply(region, patch.transmit[ps]), patch.colour[ps])
        if dst.dtype == np.uint8:
            dst[fs] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        else:
            dst[fs] = out

    @property
    def loop_frames(self) -> int:
        """Frames after which focus and instrument motion repeat: played in a loop, that many
        frames show no jump."""
        return math.lcm(sweep_period(self.k), self.motion_period_frames, self.eye.period() if self.eye else 1)

    def render(self, t: int) -> SweepFrame:
        """Frame ``t`` (>= 0) of the sweep and its truth."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise InputTypeError(f"t must be an integer frame number, got {type(t).__name__}")
        if t < 0:
            raise InputError(f"t must be >= 0, got {t}")
        i = triangle_index(int(t), self.k)
        dx, dy = self.instrument_offset(int(t))

        light = self._background[i].copy()
        blurred = self._instrument_blurred[i]
        placed = self._place(blurred.y0, blurred.x0, *blurred.colour.shape[:2], dx, dy)
        if placed is not None:
            self._composite(light, blurred, *placed)
        view = None
        if self.eye is not None:
            view = self.eye.matrix(int(t), i, self.k, (self.height, self.width))
            light = warp_view(light, view)  # the optics first, the sensor's noise after
        if self.noise:
            # Poisson-Gaussian in DN: variance = x * 255 / photons_at_white + read_noise^2.
            std = cv2.sqrt(cv2.addWeighted(light, float(self._noise_gain), light, 0.0, float(self._noise_floor)))
            r = np.random.default_rng([self.seed, int(t)]).integers(0, NOISE_BANK_PAD + 1, size=2)
            window = self._noise_bank[r[0] : r[0] + self.height, r[1] : r[1] + self.width]
            image = cv2.add(light, cv2.multiply(std, window), dtype=cv2.CV_8U)
        else:
            image = cv2.convertScaleAbs(light)  # light >= 0: rounds and saturates to uint8

        aif = self._aif_background.copy()
        depth = self._depth_background.copy()
        mask = np.zeros((self.height, self.width), bool)
        sharp = self._inst_sharp
        placed = self._place(sharp.y0, sharp.x0, *sharp.colour.shape[:2], dx, dy)
        if placed is not None:
            fs, ps = placed
            self._composite(aif, sharp, fs, ps)
            m = self._inst_mask[ps]
            mask[fs] = m
            np.copyto(depth[fs], self._inst_depth[ps], where=m)
        if view is not None:
            aif, depth = warp_view(aif, view), warp_view(depth, view, nearest=True)
            mask = warp_view(mask.view(np.uint8), view, nearest=True).astype(bool)
        return SweepFrame(image, aif, depth, mask, float(self.focus_positions[i]), i,
                          view=view if view is not None else np.eye(3))


# ------------------------------------------------------------------------------------------------
# Video


def truth_path_for(path: str | os.PathLike) -> Path:
    """Where ``write_sweep_video`` puts the truth of ``path``: ``sweep.mp4`` -> ``sweep.truth.npz``."""
    return Path(path).with_suffix(".truth.npz")


def write_sweep_video(
    path: str | os.PathLike,
    *,
    seed: int,
    height: int = 720,
    width: int = 1280,
    k: int = 5,
    frames: int = 300,
    fps: float = 30.0,
    noise: bool = True,
    instrument_motion: bool = True,
    scene: str = "fundus",
    progress: bool = False,
) -> tuple[Path, Path]:
    """Write a focus-sweep ``.mp4`` (OpenCV, 'mp4v') and its truth file beside it.

    The truth file (``truth_path_for(path)``, ``.npz``) holds per frame the focus position and
    index, the instrument offset and the instrument mask (bit-packed), plus the renderer's
    parameters as JSON: ``FocusSweepRenderer(**params).render(t)`` re-renders frame ``t``'s exact
    all-in-focus image and depth (not stored: 6 MB per 720p frame). The video itself is lossy
    (MPEG-4 part 2); the truth describes the frames before encoding.

    Returns
    -------
    (video path, truth path)
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise InputError(f"the sweep video must be an .mp4 file, got {path.name}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError(f"frames must be an integer >= 1, got {frames!r}")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    renderer = FocusSweepRenderer(seed, height=height, width=width, k=k, noise=noise, instrument_motion=instrument_motion, scene=scene)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not open an mp4v writer for {tmp}")
    focus_pos, focus_idx, offsets, masks = [], [], [], []
    try:
        for t in track(range(frames), desc="sweep video", unit="frame", enabled=progress):
            f = renderer.render(t)
            writer.write(cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
            focus_pos.append(f.focus_position)
            focus_idx.append(f.focus_index)
            offsets.append(renderer.instrument_offset(t))
            masks.append(np.packbits(f.instrument_mask, axis=None))
    finally:
        writer.release()
    truth = truth_path_for(path)
    tmp_truth = truth.with_name(f".{truth.name}.tmp.npz")
    np.savez_compressed(
        tmp_truth,
        params=np.array(json.dumps({**renderer.params, "fps": float(fps), "frames": int(frames)})),
        focus_positions=np.asarray(renderer.focus_positions, np.float64),
        focus_position=np.asarray(focus_pos, np.float64),
        focus_index=np.asarray(focus_idx, np.int16),
        instrument_offset=np.asarray(offsets, np.int32).reshape(-1, 2),
        instrument_mask_bits=np.stack(masks),
    )
    os.replace(tmp, path)
    os.replace(tmp_truth, truth)
    return path, truth


@dataclass
class SweepTruth:
    """The truth of a sweep video (see ``load_sweep_truth``)."""

    params: dict
    focus_positions: list[float]
    focus_position: np.ndarray  # per frame, float64 mm
    focus_index: np.ndarray  # per frame, int
    instrument_offset: np.ndarray  # per frame, (dx, dy) px
    _mask_bits: np.ndarray

    def __len__(self) -> int:
        return len(self.focus_index)

    def instrument_mask(self, t: int) -> np.ndarray:
        """Bool HxW instrument mask of frame ``t``."""
        h, w = self.params["height"], self.params["width"]
        return np.unpackbits(self._mask_bits[t], count=h * w).reshape(h, w).astype(bool)

    def renderer(self) -> FocusSweepRenderer:
        """The renderer that made the video: ``.render(t)`` gives frame ``t``'s aif and depth."""
        p = {k: v for k, v in self.params.items() if k not in ("fps", "frames", "seed")}
        return FocusSweepRenderer(self.params["seed"], **p)


def load_sweep_truth(path: str | os.PathLike) -> SweepTruth:
    """Read the truth written beside a sweep video (pass the ``.mp4`` or the ``.truth.npz``)."""
    path = Path(path)
    truth = path if path.name.endswith(".truth.npz") else truth_path_for(path)
    if not truth.is_file():
        raise FileNotFoundError(f"sweep truth not found: {truth}")
    with np.load(truth) as z:
        return SweepTruth(
            params=json.loads(str(z["params"])),
            focus_positions=[float(v) for v in z["focus_positions"]],
            focus_position=z["focus_position"],
            focus_index=z["focus_index"].astype(int),
            instrument_offset=z["instrument_offset"],
            _mask_bits=z["instrument_mask_bits"],
        )
