"""The validation scene model: a stack of layers, back to front, each with a colour, a coverage
(alpha) and a depth, and their sharp composite (the all-in-focus truth and the depth truth).

Depth is in focus steps: frame ``i`` of a K-frame stack is focused at depth ``i``, so the depth map
compares directly with the focus positions ``0 .. K-1``; it increases away from the microscope.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Layer", "Scene", "over"]

# A pixel belongs to a foreground layer, for the depth truth and the mask, when the layer covers at
# least half of it.
COVERED = 0.5


@dataclass
class Layer:
    """One surface of the scene on the canvas, inside its box.

    Attributes
    ----------
    name : str
    box : (y0, y1, x0, x1)
        Where the arrays lie on the canvas. A foreground layer's box includes room for its widest
        blur around the shape.
    premultiplied : ndarray of float32, HxWx3
        Linear colour times alpha (values above 1 are specular highlights, which saturate).
    alpha : ndarray of float32, HxW
        Coverage in [0, 1].
    depth : ndarray of float32, HxW
        Depth in focus steps, defined and smooth over the whole box (also where alpha is 0).
    params : dict
    """

    name: str
    box: tuple[int, int, int, int]
    premultiplied: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.box
        return slice(y0, y1), slice(x0, x1)


def over(front_premultiplied: np.ndarray, front_alpha: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Porter & Duff's ``over``: a premultiplied layer in front of an opaque image."""
    return front_premultiplied + (1.0 - np.clip(front_alpha, 0.0, 1.0))[..., None] * back


@dataclass
class Scene:
    """Layers on a canvas, back to front; ``layers[0]`` is the opaque background covering it."""

    height: int
    width: int
    layers: list[Layer]
    params: dict = field(default_factory=dict)

    @property
    def background(self) -> Layer:
        return self.layers[0]

    @property
    def foreground(self) -> list[Layer]:
        return self.layers[1:]

    def all_in_focus(self) -> np.ndarray:
        """Every layer sharp, composited back to front (linear float32 HxWx3)."""
        image = self.background.premultiplied.copy()
        for layer in self.foreground:
            sl = layer.slices
            image[sl] = over(layer.premultiplied, layer.alpha, image[sl])
        return image

    def front_depth(self) -> np.ndarray:
        """Depth (focus steps) of the front-most layer covering at least half of each pixel."""
        depth = self.background.depth.copy()
        for layer in self.foreground:
            sl = layer.slices
            depth[sl] = np.where(layer.alpha >= COVERED, layer.depth, depth[sl])
        return depth

    def foreground_mask(self) -> np.ndarray:
        """Where some foreground layer covers at least half the pixel (bool HxW)."""
        mask = np.zeros((self.height, self.width), bool)
        for layer in self.foreground:
            mask[layer.slices] |= layer.alpha >= COVERED
        return mask
