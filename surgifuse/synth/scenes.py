"""Procedural scenes with exact depth: a fundus (choroid, vessel tree, optic disc, macula) or a
natural texture on the curved, tilted back of the eye, and a surgical instrument in front of it.

Depth is in mm along the optical axis, increasing away from the microscope, measured from the
corneal apex: the retina at the posterior pole lies at the eye's axial length (24 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from surgifuse.errors import InputError

AXIAL_LENGTH_MM = 24.0  # emmetropic adult eye (Gullstrand): cornea to retina at the posterior pole
EYE_RADIUS_MM = 12.0  # the posterior globe is close to a sphere of this radius

SCENE_KINDS = ("fundus", "texture", "mixed")
# skimage.data images bundled in the wheel (no download): the fundus photograph among them.
TEXTURE_NAMES = (
    "retina",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
)


@dataclass
class InstrumentLayer:
    """A surgical instrument in front of the retina (float32, canvas-sized arrays)."""

    premultiplied: np.ndarray  # HxWx3, colour * alpha, linear [0, 1]
    alpha: np.ndarray  # HxW in [0, 1], anti-aliased coverage
    depth: np.ndarray  # HxW mm (meaningful where alpha > 0)
    params: dict


@dataclass
class Scene:
    """What the optics needs: a background surface and an optional instrument layer."""

    radiance: np.ndarray  # HxWx3 float32 in [0, 1]: the background (retina / texture), linear
    depth: np.ndarray  # HxW float32 mm: the background surface
    instrument: InstrumentLayer | None
    params: dict

    def all_in_focus(self) -> np.ndarray:
        """Every pixel sharp: the instrument over the background (float32 HxWx3)."""
        if self.instrument is None:
            return self.radiance.copy()
        a = self.instrument.alpha[..., None]
        return self.instrument.premultiplied + (1.0 - a) * self.radiance

    def front_depth(self) -> np.ndarray:
        """Depth (mm) of the first surface along each pixel's ray: the instrument where it covers
        at least half the pixel, else the background."""
        if self.instrument is None:
            return self.depth.copy()
        return np.where(self.instrument.alpha >= 0.5, self.instrument.depth, self.depth).astype(np.float32)

    def instrument_mask(self) -> np.ndarray | None:
        """Where the instrument covers at least half the pixel (bool HxW), or None."""
        return None if self.instrument is None else self.instrument.alpha >= 0.5


# ----------------------------------------------------------------------------------------------
# Random fields


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale_px: float, channels: int = 1) -> np.ndarray:
    """Band-limited noise with features about ``scale_px`` wide, zero mean, unit std (float32)."""
    gh = max(2, int(math.ceil(height / scale_px)) + 3)
    gw = max(2, int(math.ceil(width / scale_px)) + 3)
    shape = (gh, gw) if channels == 1 else (gh, gw, channels)
    coarse = rng.standard_normal(shape).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field = field.reshape((height, width) if channels == 1 else (height, width, channels))
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def fractal_noise(rng: np.random.Generator, height: int, width: int, scales: tuple[float, ...], gains: tuple[float, ...]) -> np.ndarray:
    """Sum of octaves of ``smooth_noise`` (float32 HxW)."""
    out = np.zeros((height, width), np.float32)
    for s, g in zip(scales, gains):
        out += np.float32(g) * smooth_noise(rng, height, width, max(s, 1.0))
    return out


# ----------------------------------------------------------------------------------------------
# Depth: eyeball curvature + tilt (+ the optic-disc cup and small undulations)


def eye_surface_depth(rng: np.random.Generator, height: int, width: int, pixel_mm: float, *, max_tilt: float = 0.06) -> tuple[np.ndarray, dict]:
    """Depth (mm) of the retina seen through the pupil: a sphere, tilted, with gentle undulation.

    The retina is concave towards the microscope: the periphery is nearer than the centre.
    ``max_tilt`` is the largest slope (dz/dx) of the eye's tilt against the optical axis.
    """
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2) * pixel_mm
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2) * pixel_mm
    # The field may be off the posterior pole: shift the sphere's axis by up to 1.5 mm.
    cx, cy = (float(v) for v in rng.uniform(-1.5, 1.5, size=2))
    rho2 = (xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2
    rho2 = np.minimum(rho2, (0.95 * EYE_RADIUS_MM) ** 2)
    sphere = (AXIAL_LENGTH_MM - EYE_RADIUS_MM) + np.sqrt(EYE_RADIUS_MM**2 - rho2)
    sphere -= (AXIAL_LENGTH_MM - EYE_RADIUS_MM) + math.sqrt(EYE_RADIUS_MM**2 - (cx * cx + cy * cy)) - AXIAL_LENGTH_MM
    tilt = [float(v) for v in rng.uniform(-max_tilt, max_tilt, size=2)]
    undulation_mm = float(rng.uniform(0.0, 0.15))
    und = smooth_noise(rng, height, width, scale_px=2.5 / pixel_mm) * np.float32(undulation_mm)
    depth = sphere + tilt[0] * xs[None, :] + tilt[1] * ys[:, None] + und
    params = {
        "eye_radius_mm": EYE_RADIUS_MM,
        "axial_length_mm": AXIAL_LENGTH_MM,
        "pole_offset_mm": [float(cx), float(cy)],
        "tilt_dz_per_mm": [float(tilt[0]), float(tilt[1])],
        "undulation_mm": undulation_mm,
    }
    return depth.astype(np.float32), params


# ----------------------------------------------------------------------------------------------
# Fundus


def _grow_vessel(rng, start, angle, width_mm, length_mm, segments, depth_left):
    """Random walk of one vessel with branches; appends (p0, p1, width_mm) segments (mm)."""
    step = 0.12
    p = np.array(start, np.float64)
    curvature = rng.normal(0.0, 0.25)
    travelled = 0.0
    next_branch = rng.uniform(1.2, 2.5)
    while travelled < length_mm and width_mm > 0.012 and len(segments) < 4000:
        angle += curvature * step + rng.normal(0.0, 0.12)
        curvature *= 0.98
        q = p + step * np.array([math.cos(angle), math.sin(angle)])
        segments.append((p.copy(), q.copy(), width_mm))
        p = q
        travelled += step
        width_mm *= 0.985
        if travelled >= next_branch and depth_left > 0:
            side = rng.choice([-1.0, 1.0])
            child_angle = angle + side * rng.uniform(0.5, 1.1)
            _grow_vessel(rng, p, child_angle, width_mm * rng.uniform(0.55, 0.75), length_mm * 0.6, segments, depth_left - 1)
            width_mm *= 0.85
            angle -= side * 0.15
            next_branch = travelled + rng.uniform(1.2, 2.5)


def _draw_vessels(segments, height, width, pixel_mm, origin_px, supersample=2) -> np.ndarray:
    """Anti-aliased vessel coverage (float32 HxW in [0,1]), drawn at 2x and reduced."""
    s = supersample
    canvas = np.zeros((height * s, width * s), np.uint8)
    shift = 2  # cv2 fixed-point: coordinates in 1/4 px
    f = (1 << shift) * s / pixel_mm
    ox, oy = origin_px
    for p0, p1, w_mm in segments:
        a = (int(round((p0[0] / pixel_mm + ox) * (1 << shift) * s)), int(round((p0[1] / pixel_mm + oy) * (1 << shift) * s)))
        b = (int(round((p1[0] / pixel_mm + ox) * (1 << shift) * s)), int(round((p1[1] / pixel_mm + oy) * (1 << shift) * s)))
        thickness = max(1, int(round(w_mm * f / (1 << shift))))
        cv2.line(canvas, a, b, 255, thickness=thickness, lineType=cv2.LINE_AA, shift=shift)
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def fundus_scene(rng: np.random.Generator, height: int, width: int, pixel_mm: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A procedural fundus: radiance (float32 HxWx3) and a depth offset (mm) for the disc cup and
    the vessels, plus its parameters."""
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2) * pixel_mm
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2) * pixel_mm
    X, Y = np.meshgrid(xs, ys)
    half_w, half_h = width * pixel_mm / 2, height * pixel_mm / 2

    # Choroid: orange-red base, blotchy pigment, a tigroid pattern of choroidal vessels, and the
    # fine granularity of the pigment epithelium (the texture a focus measure sees between vessels).
    base = np.array([0.80, 0.36, 0.16], np.float32) * np.float32(rng.uniform(0.85, 1.1))
    hue = rng.uniform(-0.05, 0.05, size=3).astype(np.float32)
    blotch = fractal_noise(rng, height, width, (3.0 / pixel_mm, 0.8 / pixel_mm), (0.08, 0.05))
    tigroid = np.abs(fractal_noise(rng, height, width, (0.5 / pixel_mm, 0.25 / pixel_mm), (1.0, 0.5)))
    tigroid = np.clip(1.0 - tigroid, 0.0, 1.0) ** 3 * np.float32(rng.uniform(0.05, 0.15))
    grain = smooth_noise(rng, height, width, max(1.0, 0.02 / pixel_mm)) * np.float32(rng.uniform(0.02, 0.05))
    lum = 1.0 + blotch - tigroid + grain
    radiance = (base + hue)[None, None, :] * lum[..., None]

    # Optic disc (about 1.8 mm across) somewhere near the field, the macula 4.5 mm temporal to it.
    disc_r = float(rng.uniform(0.8, 1.0))
    disc = np.array([rng.uniform(-0.9, 0.9) * half_w, rng.uniform(-0.9, 0.9) * half_h])
    # Python floats, not NumPy float64 scalars: those would promote every full-size array to float64.
    dx0, dy0 = float(disc[0]), float(disc[1])
    d_disc = np.sqrt((X - dx0) ** 2 + ((Y - dy0) / np.float32(1.08)) ** 2)
    disc_alpha = np.clip((disc_r - d_disc) / (0.06 + 0.02 * disc_r) + 0.5, 0.0, 1.0)
    cup_r = disc_r * float(rng.uniform(0.3, 0.55))
    cup = np.exp(-0.5 * (d_disc / (cup_r * 0.6)) ** 2).astype(np.float32)
    disc_colour = np.array([0.95, 0.74, 0.52], np.float32)
    cup_colour = np.array([1.0, 0.93, 0.78], np.float32)
    rim_tex = 1.0 + 0.06 * smooth_noise(rng, height, width, max(1.0, 0.1 / pixel_mm))
    disc_rgb = (disc_colour[None, None, :] * (1 - cup[..., None]) + cup_colour * cup[..., None]) * rim_tex[..., None]
    radiance = radiance * (1 - disc_alpha[..., None]) + disc_rgb * disc_alpha[..., None]
    away = math.atan2(-disc[1], -disc[0]) + rng.normal(0, 0.3)  # macula towards the field centre
    macula = disc + 4.5 * np.array([math.cos(away), math.sin(away)])
    d_mac = np.sqrt((X - float(macula[0])) ** 2 + (Y - float(macula[1])) ** 2)
    radiance *= (1.0 - 0.35 * np.exp(-0.5 * (d_mac / 1.0) ** 2))[..., None]
    radiance += (0.25 * np.exp(-0.5 * (d_mac / 0.05) ** 2))[..., None]  # foveal reflex

    # Vessel tree: arcades leaving the disc; veins darker and wider than arteries, which carry a
    # bright central reflex line.
    arteries, veins = [], []
    n_main = int(rng.integers(4, 7))
    for i in range(n_main):
        angle = 2 * math.pi * i / n_main + rng.normal(0, 0.3)
        start = disc + 0.08 * disc_r * np.array([math.cos(angle), math.sin(angle)])
        _grow_vessel(rng, start, angle + rng.normal(0, 0.2), rng.uniform(0.09, 0.12), rng.uniform(6, 10), arteries, 2)
        angle_v = angle + rng.normal(0, 0.25)
        _grow_vessel(rng, start, angle_v, rng.uniform(0.12, 0.16), rng.uniform(6, 10), veins, 2)
    origin = ((width - 1) / 2, (height - 1) / 2)
    art = _draw_vessels(arteries, height, width, pixel_mm, origin)
    vei = _draw_vessels(veins, height, width, pixel_mm, origin)
    reflex_segments = [(p0, p1, w * 0.3) for p0, p1, w in arteries if w > 0.05]
    reflex = _draw_vessels(reflex_segments, height, width, pixel_mm, origin)
    artery_colour = np.array([0.75, 0.18, 0.08], np.float32)
    vein_colour = np.array([0.45, 0.07, 0.05], np.float32)
    radiance = radiance * (1 - vei[..., None]) + vein_colour * vei[..., None] * lum[..., None]
    radiance = radiance * (1 - art[..., None]) + artery_colour * art[..., None] * lum[..., None]
    radiance += (0.18 * reflex)[..., None] * np.array([1.0, 0.8, 0.6], np.float32)

    # Illumination: the endoilluminator's spot, brighter in the middle.
    light_c = rng.uniform(-0.3, 0.3, size=2) * np.array([half_w, half_h])
    d_light = np.sqrt((X - float(light_c[0])) ** 2 + (Y - float(light_c[1])) ** 2) / np.float32(max(half_w, half_h))
    radiance *= (1.0 - 0.35 * np.minimum(d_light, 1.6) ** 2 / 1.6)[..., None]
    radiance = np.clip(radiance, 0.0, 1.0).astype(np.float32)

    # Depth detail: the cup is an excavation up to 0.5 mm deep; vessels stand ~0.1 mm proud.
    cup_depth = float(rng.uniform(0.2, 0.5))
    depth_offset = cup_depth * np.exp(-0.5 * (d_disc / cup_r) ** 2) * disc_alpha - 0.08 * np.maximum(art, vei)
    params = {
        "optic_disc_center_mm": [float(disc[0]), float(disc[1])],
        "optic_disc_radius_mm": disc_r,
        "cup_depth_mm": cup_depth,
        "macula_center_mm": [float(macula[0]), float(macula[1])],
        "vessel_segments": len(arteries) + len(veins),
    }
    return radiance, depth_offset.astype(np.float32), params


# ----------------------------------------------------------------------------------------------
# Natural textures


@lru_cache(maxsize=16)
def _load_texture(name: str) -> np.ndarray | None:
    import skimage.data

    try:
        image = getattr(skimage.data, name)()
    except Exception:  # an image that would need a download: not available offline
        return None
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float64) / max(float(image.max()), 1e-9), 0, 1) * 255).astype(np.uint8)
    image.setflags(write=False)
    return image


def available_textures() -> list[str]:
    """Names of the bundled skimage.data images that load offline here."""
    return [n for n in TEXTURE_NAMES if _load_texture(n) is not None]


def texture_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, dict]:
    """A random crop of a bundled natural image, scaled to at least cover HxW (float32 HxWx3)."""
    names = available_textures()
    if not names:
        raise RuntimeError("no bundled scikit-image image could be loaded")
    name = names[int(rng.integers(len(names)))]
    image = _load_texture(name)
    ih, iw = image.shape[:2]
    cover = max(height / ih, width / iw)
    scale = cover * float(rng.uniform(1.0, 1.4))
    size = (max(width, int(math.ceil(iw * scale))), max(height, int(math.ceil(ih * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, size, interpolation=interp)
    y0 = int(rng.integers(0, size[1] - height + 1))
    x0 = int(rng.integers(0, size[0] - width + 1))
    crop = resized[y0 : y0 + height, x0 : x0 + width]
    flips = int(rng.integers(4))
    if flips & 1:
        crop = crop[:, ::-1]
    if flips & 2:
        crop = crop[::-1]
    tint = 1.0
    if image[..., 0].tobytes() == image[..., 1].tobytes():  # grey image: give it a warm tint
        tint = np.array([1.0, 0.8, 0.65], np.float32)
    radiance = np.ascontiguousarray(crop, dtype=np.float32) / 255.0 * tint
    params = {"texture": name, "texture_scale": scale, "texture_offset_px": [x0, y0], "texture_flips": flips}
    return radiance.astype(np.float32), params


# ----------------------------------------------------------------------------------------------
# Instrument


def instrument_layer(
    height: int,
    width: int,
    pixel_mm: float,
    *,
    tip_px: tuple[float, float],
    angle: float,
    tip_depth_mm: float,
    elevation_slope: float,
    diameter_mm: float,
    kind: str,
    jaw_opening: float = 0.25,
    box: tuple[int, int, int, int] | None = None,
) -> InstrumentLayer:
    """Render a straight instrument (a tapered pick or a forceps) entering from outside the image.

    Parameters
    ----------
    tip_px : (x, y)
        Position of the tip in pixels (image coordinates).
    angle : float
        Direction (radians, image x towards y) from the tip back along the shaft.
    tip_depth_mm : float
        Depth of the tip (mm); the shaft rises towards the microscope by ``elevation_slope`` mm of
        depth per mm along the shaft (the instrument enters through the sclera at an angle).
    diameter_mm : float
        Shaft diameter (23 gauge = 0.64 mm, 25 gauge = 0.51 mm).
    kind : "pick" | "forceps"
    box : (y0, y1, x0, x1), optional
        Render only in this box (the rest is empty).
    """
    premult = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    depth = np.full((height, width), tip_depth_mm, np.float32)
    y0, y1, x0, x1 = box if box is not None else (0, height, 0, width)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    ca, sa = math.cos(angle), math.sin(angle)
    # u: mm from the tip along the shaft; v: mm across it.
    u = ((xs - tip_px[0]) * ca + (ys - tip_px[1]) * sa) * pixel_mm
    v = (-(xs - tip_px[0]) * sa + (ys - tip_px[1]) * ca) * pixel_mm
    radius = diameter_mm / 2
    aa = pixel_mm  # one pixel of anti-aliasing ramp
    if kind == "pick":
        taper = 3.0 * radius
        half_width = radius * np.clip(u / taper, 0.08, 1.0) ** 0.8
        a = np.clip((half_width - np.abs(v)) / aa + 0.5, 0, 1) * np.clip(u / aa + 0.5, 0, 1)
        normal = np.clip(v / np.maximum(half_width, 1e-6), -1, 1)
    elif kind == "forceps":
        jaw_len = 4.0 * radius
        shaft = np.clip((radius - np.abs(v)) / aa + 0.5, 0, 1) * np.clip((u - jaw_len) / aa + 0.5, 0, 1)
        # Two jaws, each a narrowing blade opening by ``jaw_opening`` radians from the shaft end.
        jaws = np.zeros_like(u)
        normal = np.clip(v / radius, -1, 1)
        for side in (-1.0, 1.0):
            s = u - jaw_len
            centre = side * (radius * 0.5 - s * math.tan(jaw_opening) * 0.5)
            hw = radius * 0.45 * np.clip(0.35 + 0.65 * (jaw_len + s) / jaw_len, 0.2, 1.0)
            inside = np.clip((hw - np.abs(v - centre)) / aa + 0.5, 0, 1) * np.clip(u / aa + 0.5, 0, 1) * np.clip((-s) / aa + 0.5, 0, 1)
            jaws = np.maximum(jaws, inside)
            normal = np.where(inside > shaft, np.clip((v - centre) / hw, -1, 1), normal)
        a = np.maximum(shaft, jaws)
    else:
        raise InputError(f"instrument kind must be 'pick' or 'forceps', got {kind!r}")
    # A brushed-steel cylinder lit from above: diffuse falloff across it, a specular stripe.
    n = normal
    diffuse = np.sqrt(np.clip(1 - n * n, 0, 1))
    spec = np.exp(-0.5 * ((n + 0.25) / 0.12) ** 2)
    grain = 1.0 + 0.04 * np.sin(u * 180.0 + 3.0 * np.sin(v * 40.0))
    steel = np.array([0.55, 0.57, 0.60], np.float32)
    colour = (0.15 + 0.55 * diffuse * grain)[..., None] * steel + (0.45 * spec)[..., None]
    colour = np.clip(colour, 0, 1).astype(np.float32)
    alpha[y0:y1, x0:x1] = a
    premult[y0:y1, x0:x1] = colour * a[..., None]
    depth[y0:y1, x0:x1] = tip_depth_mm - elevation_slope * np.maximum(u, 0.0)
    params = {
        "kind": kind,
        "tip_px": [float(tip_px[0]), float(tip_px[1])],
        "shaft_angle_rad": float(angle),
        "tip_depth_mm": float(tip_depth_mm),
        "elevation_slope": float(elevation_slope),
        "diameter_mm": float(diameter_mm),
    }
    return InstrumentLayer(premult, alpha, depth, params)


def random_instrument_params(rng: np.random.Generator, height: int, width: int, margin: int) -> dict:
    """Draw an instrument pose: tip within the central part of the visible image (canvas px)."""
    vis_h, vis_w = height - 2 * margin, width - 2 * margin
    tip = (margin + vis_w * rng.uniform(0.25, 0.75), margin + vis_h * rng.uniform(0.25, 0.75))
    return {
        "tip_px": tip,
        "angle": float(rng.uniform(0, 2 * math.pi)),
        "height_above_retina_mm": float(rng.uniform(0.3, 1.2)),
        "elevation_slope": float(rng.uniform(0.1, 0.3)),
        "diameter_mm": float(rng.choice([0.64, 0.51])),
        "kind": str(rng.choice(["pick", "forceps"])),
        "jaw_opening": float(rng.uniform(0.1, 0.35)),
    }


def make_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    pixel_mm: float,
    *,
    kind: str,
    instrument: bool,
    margin: int = 0,
    instrument_rng: np.random.Generator | None = None,
) -> Scene:
    """Build a scene on a canvas of ``height x width`` px (the visible image plus ``margin`` on
    every side, for blur and frame motion to draw on real content).

    ``kind`` is "fundus" or "texture" (resolve "mixed" before calling).
    """
    depth, depth_params = eye_surface_depth(rng, height, width, pixel_mm)
    if kind == "fundus":
        radiance, offset, scene_params = fundus_scene(rng, height, width, pixel_mm)
        depth = depth + offset
    elif kind == "texture":
        radiance, scene_params = texture_scene(rng, height, width)
    else:
        raise InputError(f"scene kind must be 'fundus' or 'texture', got {kind!r}")
    params = {"kind": kind, **depth_params, **scene_params}
    layer = None
    if instrument:
        irng = instrument_rng if instrument_rng is not None else rng
        p = random_instrument_params(irng, height, width, margin)
        tx, ty = p["tip_px"]
        ix = int(np.clip(round(tx), 0, width - 1))
        iy = int(np.clip(round(ty), 0, height - 1))
        tip_depth = float(depth[iy, ix]) - p["height_above_retina_mm"]
        layer = instrument_layer(
            height,
            width,
            pixel_mm,
            tip_px=p["tip_px"],
            angle=p["angle"],
            tip_depth_mm=tip_depth,
            elevation_slope=p["elevation_slope"],
            diameter_mm=p["diameter_mm"],
            kind=p["kind"],
            jaw_opening=p["jaw_opening"],
        )
        # The retina curves towards the microscope; keep the whole instrument in front of it.
        gap = np.where(layer.alpha > 0, depth - layer.depth, np.inf)
        if float(gap.min()) < 0.1:
            shift = 0.1 - float(gap.min())
            layer.depth -= np.float32(shift)
            layer.params["tip_depth_mm"] -= shift
        layer.params["height_above_retina_mm"] = float(depth[iy, ix] - layer.params["tip_depth_mm"])
        params["instrument"] = layer.params
    return Scene(radiance.astype(np.float32), depth.astype(np.float32), layer, params)
