"""The Fusion Network of paper 000 (multi-focus fusion for retinal microsurgery), any K, any size.

Four kinds of module, as in the paper: a per-frame encoder with shared weights on RGB + FMB; an
element-wise maximum over the stack (order-free, any K); nine residual refinement blocks; a final
convolution to RGB. Split in two graphs for streaming: ``FrameEncoder`` runs once per new frame
(its features are cached in the live buffer) and ``FuseRefine`` combines K cached feature maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgifuse.errors import InputError

from ..config import FusionNetConfig
from ..torch_focus_measure import fmb_input


class FrameEncoder(nn.Module):
    """(N, 3 + FMB channels, H, W) -> (N, encoder_width, H, W) at full resolution (non-negative)."""

    def __init__(self, config: FusionNetConfig):
        super().__init__()
        chans = [config.in_channels] + [config.encoder_width] * config.encoder_layers
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class ResidualBlock(nn.Module):
    """conv-ReLU-conv plus identity (the CycleGAN generator's block, without normalisation so that
    a crop and the whole frame give the same result)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class FuseRefine(nn.Module):
    """Max over the stack, refinement, output.

    Inputs: features (B, K, C, H, W) from ``FrameEncoder`` and the frames (B, K, 3, H, W) in [0, 1]
    (used by the "blend" and "weights" outputs). Returns the image (B, 3, H, W) and the blend
    weights (B, K, H, W) (uniform 1/K for the "rgb" output, which has none).
    """

    def __init__(self, config: FusionNetConfig):
        super().__init__()
        self.config = config
        c, r = config.encoder_width, config.refine_width
        down = []
        if config.refine_downsample == 1:
            down.append(nn.Conv2d(c, r, 3, padding=1))
        else:
            # Stride-2 convolutions as in CycleGAN's generator: the refinement sees 4x (or 2x) more
            # context for the same cost, which the decision in large defocused areas needs.
            down.append(nn.Conv2d(c, r, 3, stride=2, padding=1))
            if config.refine_downsample == 4:
                down.append(nn.Conv2d(r, r, 3, stride=2, padding=1))
        self.down = nn.ModuleList(down)
        self.blocks = nn.Sequential(*[ResidualBlock(r) for _ in range(config.res_blocks)])
        self.merge = nn.Conv2d(c + r, c, 3, padding=1)
        # "weights" has no residual: no RGB head at all (nothing that could add to the blend).
        self.to_rgb = nn.Conv2d(c, 3, 3, padding=1) if config.output != "weights" else None
        if config.output in ("blend", "weights"):
            self.weight_hidden = nn.Conv2d(2 * c, c, 1)
            self.weight_logit = nn.Conv2d(c, 1, 3, padding=1)
        if config.output == "blend":
            # Start as a pure blend: the residual grows from zero, so training begins at a sane image.
            nn.init.zeros_(self.to_rgb.weight)
            nn.init.zeros_(self.to_rgb.bias)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, c, h, w = features.shape
        fused = features.amax(dim=1)  # (B, K, C, H, W) -> (B, C, H, W): the paper's max selection
        d = fused
        for conv in self.down:
            d = F.relu(conv(d))
        d = self.blocks(d)
        if self.config.output == "weights":
            # Blend weights alone leave the refinement's scale free (a softmax ignores a shift shared
            # by all frames): trained without a bound it grew to 1e5, where float32 rounding made ONNX
            # Runtime and PyTorch disagree by 0.05 in the weights. Bounded, both agree.
            d = torch.tanh(d)
        if self.config.refine_downsample > 1:
            # Odd sizes work: stride-2 convs round up, and the upsampling goes back to exactly H x W.
            d = F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False)
        ctx = F.relu(self.merge(torch.cat([fused, d], dim=1)))  # (B, C, H, W)
        if self.config.output == "rgb":
            weights = features.new_ones((b, k, h, w)) / k
            return self.to_rgb(ctx), weights
        # Per-frame logits from each frame's own features next to the refined context. The 1x1
        # convolution of [features_k, ctx] is split into its two halves so that ctx's half is
        # computed once, not K times, and no (K, 2C, H, W) concatenation is built (measured: the
        # concatenation and expansion were a third of the fuse graph's time on the CPU).
        wk, wc = self.weight_hidden.weight[:, :c], self.weight_hidden.weight[:, c:]
        per_frame = F.conv2d(features.reshape(b * k, c, h, w), wk).reshape(b, k, c, h, w)
        shared = F.conv2d(ctx, wc, self.weight_hidden.bias).unsqueeze(1)  # (B, 1, C, H, W)
        hidden = F.relu(per_frame + shared).reshape(b * k, c, h, w)
        logits = self.weight_logit(hidden).reshape(b, k, h, w)
        # Softmax over the stack written out: ONNX Runtime's Softmax on a non-last axis transposes.
        e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        weights = e / e.sum(dim=1, keepdim=True)
        blend = (weights.unsqueeze(2) * frames).sum(dim=1)  # (B, K, 3, H, W) -> (B, 3, H, W)
        if self.config.output == "weights":
            return blend, weights
        return blend + self.to_rgb(ctx), weights


class FusionNet(nn.Module):
    """The whole network: FMB + per-frame encoder + fuse/refine, on (B, K, 3, H, W) RGB in [0, 1].

    ``forward`` computes the FMB in torch (equal to the C++ core for 8-bit frames); the exported
    graphs take the FMB as input instead, computed by ``_core.focus_measure`` at run time.
    """

    def __init__(self, config: FusionNetConfig | None = None):
        super().__init__()
        self.config = config or FusionNetConfig()
        self.encoder = FrameEncoder(self.config)
        self.fuse = FuseRefine(self.config)

    def network_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3 + FMB channels, H, W): RGB then FM / fmb_scale."""
        cfg = self.config
        fm = fmb_input(frames, mode=cfg.fmb, step=cfg.fmb_step, threshold=cfg.fmb_threshold, window=cfg.fmb_window, scale=cfg.fmb_scale)
        return torch.cat([frames, fm], dim=1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, encoder_width, H, W): the per-frame work a live buffer caches."""
        return self.encoder(self.network_input(frames))

    def forward(self, stack: torch.Tensor, *, return_weights: bool = False):
        if stack.ndim != 5 or stack.shape[2] != 3:
            raise InputError(f"stack must be (B, K, 3, H, W), got {tuple(stack.shape)}")
        b, k, _, h, w = stack.shape
        feats = self.encode(stack.reshape(b * k, 3, h, w)).reshape(b, k, -1, h, w)
        image, weights = self.fuse(feats, stack)
        return (image, weights) if return_weights else image
