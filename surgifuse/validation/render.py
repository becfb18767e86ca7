"""The optical image of a validation scene with the focus at one depth: every layer blurred with
its own defocus (colour and coverage alike), composited back to front.

Blurring a foreground layer's coverage with its colour makes its defocused edge partly
transparent and spreads it over what lies behind, as a real lens does: the layered occlusion model
of Barsky & Kosloff, "Algorithms for rendering depth of field effects in computer graphics" (2008),
not the single-layer model (blur each pixel by its front depth), which keeps a defocused object's
outline sharp against an in-focus background.
"""

from __future__ import annotations

import numpy as np

from .layers import Scene, over
from .optics import Lens, PreparedLayer

__all__ = ["FocusRenderer"]


class FocusRenderer:
    """Renders one scene through one lens at any focus position (layers prepared once).

    Examples
    --------
    >>> import numpy as np
    >>> from surgifuse.validation.layers import Layer, Scene
    >>> flat = Layer("background", (0, 8, 0, 8), np.full((8, 8, 3), 0.5, np.float32),
    ...              np.ones((8, 8), np.float32), np.zeros((8, 8), np.float32))
    >>> image = FocusRenderer(Scene(8, 8, [flat]), Lens(2.0)).render(1.0)
    >>> image.shape, round(float(image.mean()), 6)
    ((8, 8, 3), 0.5)
    """

    def __init__(self, scene: Scene, lens: Lens):
        self.scene = scene
        self.lens = lens
        aberration = lens.spherical_aberration
        bg = scene.background
        self._layers = [PreparedLayer(bg.premultiplied, None, spherical_aberration=aberration)]
        self._layers += [PreparedLayer(layer.premultiplied, layer.alpha, spherical_aberration=aberration)
                         for layer in scene.foreground]

    def render(self, focus: float) -> np.ndarray:
        """Linear irradiance on the canvas (float32 HxWx3) with the focus at depth ``focus`` (steps)."""
        layers = self.scene.layers
        image, _ = self._layers[0].defocus(self.lens.signed_radius(layers[0].depth, focus))
        image = np.ascontiguousarray(image)
        for layer, prepared in zip(layers[1:], self._layers[1:]):
            colour, alpha = prepared.defocus(self.lens.signed_radius(layer.depth, focus))
            sl = layer.slices
            image[sl] = over(colour, alpha, image[sl])
        return image
