"""Synthetic focal stacks with truth (all-in-focus image, depth) for training and measuring.

``scenes`` (procedural fundus, textures, instrument, depth) -> ``optics`` (thin-lens defocus,
disc PSF, layered compositing) -> ``degradations`` (noise, JPEG, breathing, motion) -> ``stack``
(generate, write, load) and ``video`` (focus-sweep video, live renderer).
See docs/synthetic-data.md.
"""

from .optics import Optics, disc_kernel
from .stack import SyntheticStack, generate_dataset, generate_stack, load_stack, write_stack

__all__ = [
    "Optics",
    "SyntheticStack",
    "disc_kernel",
    "generate_dataset",
    "generate_stack",
    "load_stack",
    "write_stack",
]
