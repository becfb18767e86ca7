"""Foreground objects of the validation scenes, each one layer in front of the background: an
instrument (a tapered shaft with a rounded tip, etched marks and a specular stripe, tilted in
depth), a suture thread (a thin curve) and a droplet (a translucent ellipse with a highlight).

Each takes a depth interval (focus steps) it must stay inside and a ``pad``: the box it returns
extends that far around the shape, for its defocus blur to spread into.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .layers import Layer

__all__ = ["OBJECT_KINDS", "droplet", "instrument", "make_object", "thread"]

OBJECT_KINDS = ("instrument", "thread", "droplet")


def _box(points: np.ndarray, reach: float, height: int, width: int) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(points.min(axis=0) - reach).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + reach).astype(int) + 1
    return max(0, int(y0)), min(height, int(y1)), max(0, int(x0)), min(width, int(x1))


def _grid(box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    y0, y1, x0, x1 = box
    return (np.arange(y0, y1, dtype=np.float32)[:, None], np.arange(x0, x1, dtype=np.float32)[None, :])


def _exit_length(tip: np.ndarray, direction: np.ndarray, visible: tuple[int, int, int, int]) -> float:
    """Distance from ``tip`` along ``direction`` to the edge of the visible rectangle."""
    y0, y1, x0, x1 = visible
    ts = []
    for p, d, lo, hi in ((tip[0], direction[0], x0, x1), (tip[1], direction[1], y0, y1)):
        if abs(d) > 1e-9:
            ts.append(((hi if d > 0 else lo) - p) / d)
    return max(1.0, min(ts))


def instrument(rng: np.random.Generator, height: int, width: int, *, visible: tuple[int, int, int, int],
               scale_px: float, depth_interval: tuple[float, float], pad: int) -> Layer:
    """A straight instrument entering the field from outside it.

    Its tip lies in the central half of the visible image and is its deepest point; the shaft
    rises towards the microscope across ``depth_interval`` over its visible length (instruments
    enter at an angle), so different parts of it are sharp in different frames.
    """
    vy0, vy1, vx0, vx1 = visible
    tip = np.array([vx0 + (vx1 - vx0) * rng.uniform(0.25, 0.75), vy0 + (vy1 - vy0) * rng.uniform(0.25, 0.75)])
    angle = float(rng.uniform(0, 2 * math.pi))
    d = np.array([math.cos(angle), math.sin(angle)])
    far = tip + d * math.hypot(height, width)
    half_width = float(rng.uniform(0.015, 0.032)) * scale_px
    taper = half_width * float(rng.uniform(2.0, 5.0))
    box = _box(np.stack([tip, far]), half_width + pad + 2, height, width)
    ys, xs = _grid(box)
    u = (xs - tip[0]) * np.float32(d[0]) + (ys - tip[1]) * np.float32(d[1])  # along the shaft, from the tip
    v = -(xs - tip[0]) * np.float32(d[1]) + (ys - tip[1]) * np.float32(d[0])  # across it
    hw = np.float32(half_width) * np.clip(0.3 + 0.7 * u / np.float32(taper), 0.3, 1.0)
    signed = np.where(u >= 0, np.abs(v) - hw, np.sqrt(u * u + v * v) - np.float32(0.3 * half_width))
    alpha = np.clip(0.5 - signed, 0.0, 1.0).astype(np.float32)

    material = [np.array([0.55, 0.57, 0.60]), np.array([0.30, 0.29, 0.28]), np.array([0.15, 0.35, 0.55])][
        int(rng.integers(3))].astype(np.float32)
    normal = np.clip(v / np.maximum(hw, 1e-3), -1.0, 1.0)
    lambert = np.sqrt(1.0 - normal * normal)
    stripe_at = float(rng.uniform(-0.5, 0.5))
    stripe_width = float(rng.uniform(0.08, 0.15))
    specular = np.float32(rng.uniform(1.5, 3.0)) * np.exp(-(((normal - stripe_at) / stripe_width) ** 2))
    spacing = float(rng.uniform(4.0, 8.0)) * half_width
    marks = np.zeros_like(u)
    for i in range(int(rng.integers(2, 5))):
        centre = taper + spacing * (i + 1)
        marks = np.maximum(marks, np.exp(-(((u - centre) / (0.25 * half_width)) ** 2)))
    colour = material * ((0.25 + 0.75 * lambert) * (1.0 - 0.6 * marks))[..., None] + specular[..., None]

    near, deep = depth_interval
    visible_length = _exit_length(tip, d, visible)
    slope = (deep - near) / visible_length
    depth = np.float32(deep) - np.float32(slope) * np.maximum(u, 0.0)
    depth = np.maximum(depth, np.float32(near - 0.5)).astype(np.float32)
    params = {"kind": "instrument", "tip_px": [float(tip[0]), float(tip[1])], "angle_rad": angle,
              "half_width_px": half_width, "tip_depth": float(deep), "visible_rise": float(deep - near),
              "specular_peak": float(specular.max())}
    return Layer("instrument", box, (colour * alpha[..., None]).astype(np.float32), alpha, depth, params)


def thread(rng: np.random.Generator, height: int, width: int, *, visible: tuple[int, int, int, int],
           scale_px: float, depth_interval: tuple[float, float], pad: int) -> Layer:
    """A suture thread: a cubic Bezier curve across the field, at one depth."""
    vy0, vy1, vx0, vx1 = visible
    ctrl = np.column_stack([rng.uniform(vx0 - 0.1 * (vx1 - vx0), vx1 + 0.1 * (vx1 - vx0), 4),
                            rng.uniform(vy0 - 0.1 * (vy1 - vy0), vy1 + 0.1 * (vy1 - vy0), 4)])
    t = np.linspace(0.0, 1.0, 200)[:, None]
    curve = ((1 - t) ** 3 * ctrl[0] + 3 * (1 - t) ** 2 * t * ctrl[1] + 3 * (1 - t) * t ** 2 * ctrl[2]
             + t ** 3 * ctrl[3])
    thickness = max(1.2, float(rng.uniform(0.003, 0.006)) * scale_px)
    box = _box(curve, thickness + pad + 2, height, width)
    y0, y1, x0, x1 = box
    ss = 4
    canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    poly = np.round((curve - [x0, y0]) * ss * 16).astype(np.int32)
    cv2.polylines(canvas, [poly], False, 255, thickness=max(1, round(thickness * ss)), lineType=cv2.LINE_AA,
                  shift=4)
    coverage = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    alpha = coverage * np.float32(rng.uniform(0.85, 1.0))
    colour = [np.array([0.03, 0.04, 0.10]), np.array([0.20, 0.05, 0.35]), np.array([0.05, 0.25, 0.08])][
        int(rng.integers(3))].astype(np.float32)
    z = float(rng.uniform(*depth_interval))
    depth = np.full(alpha.shape, z, np.float32)
    params = {"kind": "thread", "control_points_px": ctrl.tolist(), "thickness_px": thickness, "depth": z}
    return Layer("thread", box, (colour * alpha[..., None]).astype(np.float32), alpha, depth, params)


def droplet(rng: np.random.Generator, height: int, width: int, *, visible: tuple[int, int, int, int],
            scale_px: float, depth_interval: tuple[float, float], pad: int) -> Layer:
    """A droplet (or bubble) of irrigation fluid: a translucent ellipse, more opaque towards its rim
    (Fresnel reflection grows at grazing angles), with a specular highlight."""
    vy0, vy1, vx0, vx1 = visible
    centre = np.array([rng.uniform(vx0, vx1), rng.uniform(vy0, vy1)])
    a, b = (float(rng.uniform(0.03, 0.08)) * scale_px for _ in range(2))
    theta = float(rng.uniform(0, math.pi))
    box = _box(centre[None, :], max(a, b) + pad + 2, height, width)
    ys, xs = _grid(box)
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    xr = (xs - centre[0]) * c + (ys - centre[1]) * s
    yr = -(xs - centre[0]) * s + (ys - centre[1]) * c
    q = np.sqrt((xr / np.float32(a)) ** 2 + (yr / np.float32(b)) ** 2)
    inside = np.clip(0.5 - (q - 1.0) * np.float32(min(a, b)), 0.0, 1.0)
    highlight = np.exp(-(((xr + 0.35 * a) ** 2 + (yr + 0.35 * b) ** 2) / (2 * (0.12 * min(a, b)) ** 2)))
    alpha = (inside * np.clip(0.2 + 0.6 * np.minimum(q, 1.0) ** 6 + highlight, 0.0, 1.0)).astype(np.float32)
    tint = np.array([0.85, 0.88, 0.92], np.float32) * np.float32(rng.uniform(0.7, 1.0))
    colour = tint + (np.float32(rng.uniform(1.5, 2.5)) * highlight)[..., None]
    z = float(rng.uniform(*depth_interval))
    depth = np.full(alpha.shape, z, np.float32)
    params = {"kind": "droplet", "centre_px": centre.tolist(), "radii_px": [a, b], "depth": z}
    return Layer("droplet", box, (colour * alpha[..., None]).astype(np.float32), alpha, depth, params)


_MAKERS = {"instrument": instrument, "thread": thread, "droplet": droplet}


def make_object(kind: str, rng: np.random.Generator, height: int, width: int, **kwargs) -> Layer:
    """The object ``kind`` (one of ``OBJECT_KINDS``); keyword arguments as for ``instrument``."""
    return _MAKERS[kind](rng, height, width, **kwargs)
