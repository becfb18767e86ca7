"""An independent generator of focal stacks with truth, for validation and reporting only.

Used to select checkpoints and to report results, **never to train or tune**: a model selected or
tuned on the data it is scored on says nothing about the next scene. It shares no code with the
training generator ``surgifuse.synth`` (its own scenes, optics, camera and writer), so that a flaw
in one does not flatter results on the other.

``textures`` and ``objects`` -> ``scenes`` (layers in depth, ``layers``) -> ``optics`` (disc PSF,
gathered blur) and ``render`` (layered occlusion) -> ``camera`` (breathing, jitter, noise, gamma,
JPEG) -> ``stack`` (generate) -> ``disk`` (write). ``halo``: the halo test scene (a bright
instrument over a dark background, with speculars) through the same optics. See
docs/synthetic-data.md.
"""

from .disk import write_validation_set, write_validation_stack
from .halo import halo_scene_stack
from .optics import Lens, disc_psf
from .stack import VALIDATION_SEED, ValidationStack, generate_validation_stack

__all__ = [
    "VALIDATION_SEED",
    "Lens",
    "ValidationStack",
    "disc_psf",
    "generate_validation_stack",
    "halo_scene_stack",
    "write_validation_set",
    "write_validation_stack",
]
