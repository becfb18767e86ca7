"""Self-supervised autoencoder for focal stacking (Du, Fu & Huang 2022, paper 003).

A five-layer DenseNet encoder and a four-layer decoder reconstruct single images; at fusion time
the encoder's features of each stack image give an activity map (their spatial gradient) whose
per-pixel arg-max over the stack picks the source frame. The same trained encoder is the feature
extractor of the Fusion Network's perceptual loss (no pretrained VGG can be downloaded here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgifuse.errors import InputError

from ..config import AutoencoderConfig


class DenseEncoder(nn.Module):
    """Stem convolution plus densely connected 3x3 convolutions (DenseFuse style), full resolution.

    (N, 3, H, W) in [0, 1] -> (N, stem_width + dense_layers * growth, H, W), non-negative.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.stem = nn.Conv2d(3, config.stem_width, 3, padding=1)
        self.dense = nn.ModuleList(
            nn.Conv2d(config.stem_width + i * config.growth, config.growth, 3, padding=1) for i in range(config.dense_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = F.relu(self.stem(x))
        for conv in self.dense:
            feats = torch.cat([feats, F.relu(conv(feats))], dim=1)  # channels grow by `growth`
        return feats


class Autoencoder(nn.Module):
    """Encoder + four-layer decoder, trained with L = MSE + lambda (1 - SSIM) to reconstruct its input."""

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config or AutoencoderConfig()
        self.encoder = DenseEncoder(self.config)
        widths = [self.config.feature_channels, *self.config.decoder_widths, 3]
        self.decoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.encoder(x)
        for i, conv in enumerate(self.decoder):
            y = conv(y)
            y = torch.sigmoid(y) if i == len(self.decoder) - 1 else F.relu(y)
        return y


class FeatureActivity(nn.Module):
    """Paper 003's fusion activity: the spatial gradient of the encoder features, per pixel.

    (N, 3, H, W) in [0, 1] -> (N, 1, H, W): sum over channels of |d/dx| + |d/dy| (central
    differences, edge pixels replicated), summed over a (2r+1)^2 window so that a decision is
    not made from one pixel's noise (the spatial-frequency window of SESF-fuse, the paper's ref. 7).
    """

    def __init__(self, encoder: DenseEncoder, *, window: int = 2):
        super().__init__()
        if window < 0:
            raise InputError(f"window must be >= 0, got {window}")
        self.encoder = encoder
        self.window = int(window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x)
        p = F.pad(f, (1, 1, 1, 1), mode="replicate")
        gx = (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]).abs()
        gy = (p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]).abs()
        act = (gx + gy).mean(dim=1, keepdim=True)
        if self.window > 0:
            k = 2 * self.window + 1
            act = F.avg_pool2d(F.pad(act, (self.window,) * 4, mode="replicate"), k, stride=1)
        return act
