"""Configuration dataclasses for the learned models, their data and their training (timm style).

A config is saved inside every checkpoint and beside every exported ONNX graph (JSON sidecar), so a
model file always says how it was built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from surgifuse.errors import InputError

# FM values of uint8 input are integers in [0, 9 * 2040]; dividing by the largest single modified
# Laplacian (2040) puts typical sharp texture near 0.1-2 and the worst case at 9, a range a first
# convolution handles without saturating. The same constant is used in training and at run time.
FMB_SCALE = 2040.0


@dataclass
class FusionNetConfig:
    """The Fusion Network (paper 000): per-frame encoder, max over the stack, 9 residual blocks, RGB conv.

    Attributes
    ----------
    fmb : {"fmb3", "fmb1", "none"}
        Focus Measure Block input: per RGB channel (6 input channels), on grey (4) or none (3).
    encoder_width : int
        Feature channels of the per-frame encoder (full resolution); the paper's "more channels".
    encoder_layers : int
        3x3 convolutions in the per-frame encoder.
    refine_width : int
        Channels of the nine refinement blocks.
    refine_downsample : int
        1, 2 or 4: the refinement blocks run at this fraction of the resolution (CycleGAN's generator,
        where the nine residual blocks come from, runs them at 1/4). 1 = the paper's full resolution.
    res_blocks : int
        Number of residual refinement blocks (9 in the paper).
    output : {"rgb", "blend", "weights"}
        "rgb": the final convolution predicts RGB directly (the paper). "blend": the network also
        predicts per-frame blend weights and adds its RGB output as a residual to the blended input
        frames (our deviation: trains much faster, keeps input pixels). "weights": the blend alone,
        no residual: every output pixel is a convex combination of the input frames' pixels, so the
        network cannot smooth texture that is already sharp or invent any (issue 13).
    fmb_step, fmb_threshold, fmb_window : int
        FMB parameters (paper: step 1, T = 7, 3x3 window, i.e. window = 1).
    """

    fmb: str = "fmb3"
    encoder_width: int = 16
    encoder_layers: int = 3
    refine_width: int = 32
    refine_downsample: int = 4
    res_blocks: int = 9
    output: str = "blend"
    fmb_step: int = 1
    fmb_threshold: int = 7
    fmb_window: int = 1
    fmb_scale: float = FMB_SCALE

    def __post_init__(self):
        if self.fmb not in ("fmb3", "fmb1", "none"):
            raise InputError(f"fmb must be 'fmb3', 'fmb1' or 'none', got {self.fmb!r}")
        if self.output not in ("rgb", "blend", "weights"):
            raise InputError(f"output must be 'rgb', 'blend' or 'weights', got {self.output!r}")
        if self.refine_downsample not in (1, 2, 4):
            raise InputError(f"refine_downsample must be 1, 2 or 4, got {self.refine_downsample}")
        for name in ("encoder_width", "encoder_layers", "refine_width"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.res_blocks < 0:
            raise InputError(f"res_blocks must be >= 0, got {self.res_blocks}")

    @property
    def fmb_channels(self) -> int:
        return {"fmb3": 3, "fmb1": 1, "none": 0}[self.fmb]

    @property
    def in_channels(self) -> int:
        return 3 + self.fmb_channels


@dataclass
class AutoencoderConfig:
    """The self-supervised autoencoder (paper 003): five-layer DenseNet encoder, four-layer decoder.

    The encoder is one 3x3 convolution to ``stem_width`` channels followed by ``dense_layers``
    densely connected 3x3 convolutions of ``growth`` channels each (1 + 4 = five layers); its
    output has ``stem_width + dense_layers * growth`` channels. The decoder is four 3x3
    convolutions narrowing to RGB.
    """

    stem_width: int = 16
    growth: int = 8
    dense_layers: int = 4
    decoder_widths: tuple[int, ...] = (32, 24, 16)
    ssim_weight: float = 1.0  # lambda of L = MSE + lambda (1 - SSIM)

    def __post_init__(self):
        self.decoder_widths = tuple(int(w) for w in self.decoder_widths)
        if self.stem_width < 1 or self.growth < 1 or self.dense_layers < 1:
            raise InputError("stem_width, growth and dense_layers must all be >= 1")

    @property
    def feature_channels(self) -> int:
        return self.stem_width + self.dense_layers * self.growth


@dataclass
class DataConfig:
    """Where training stacks come from and how they are cropped.

    ``data_dir`` holds stacks written by ``surgifuse synth`` (one folder per stack); when it is
    None, stacks are generated on the fly from ``seed`` upward with ``synth_options``.
    """

    data_dir: str | None = None
    crop: int = 96
    k: int = 5
    seed: int = 20000
    count: int = 256
    synth_height: int = 192
    synth_width: int = 192
    synth_options: dict[str, Any] = field(default_factory=dict)
    canny_high: int = 100
    # Align every stack to its middle frame (surgifuse.align) as `surgifuse eval` does before the
    # engines fuse it: the network then trains on the registration it will see.
    align: bool = False
    # Domain randomisation of generated stacks: each seed draws its own optics, noise, compression
    # and motion (``surgifuse.learning.data.randomized_synth_options``); ``synth_options`` win.
    randomize: bool = False


@dataclass
class TrainConfig:
    """One training run: which model, which losses, how long, where to write."""

    model: str = "fn"  # "fn" or "autoencoder"
    out_dir: str = "runs/fn"
    steps: int = 2000
    batch_size: int = 4
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"
    threads: int = 2
    time_limit_s: float | None = None
    checkpoint_every: int = 200
    log_every: int = 10
    losses: tuple[str, ...] = ("aif", "perceptual", "edge", "identity")
    perceptual_encoder: str | None = None  # autoencoder checkpoint or .pt encoder weights

    def __post_init__(self):
        self.losses = tuple(self.losses)
        known = {"aif", "perceptual", "edge", "identity"}
        bad = set(self.losses) - known
        if bad:
            raise InputError(f"unknown losses {sorted(bad)}; choose from {sorted(known)}")
        if self.model not in ("fn", "autoencoder"):
            raise InputError(f"model must be 'fn' or 'autoencoder', got {self.model!r}")


def config_to_dict(config) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def config_from_dict(cls, data: dict[str, Any]):
    """Build ``cls`` from a dict, ignoring keys it does not know (older or newer checkpoints)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
