"""Monocular multi-scale depth network (paper 002, "Depth": ResNet-18 features at several scales).

A ResNet-style encoder (basic residual blocks; no pretrained weights can be downloaded here, so it
is trained from scratch and narrower than ResNet-18: widths 16-128 instead of 64-512) gives features
at 1/2, 1/4, 1/8 and 1/16 of the image; a decoder brings the coarsest up step by step, adding each
finer scale (the multi-scale feature fusion of the paper), and predicts depth at every scale (deep
supervision). Depth is a fraction of the stack's range, 0 (nearest focus) .. 1 (farthest), from
one RGB image: a single frame of the stack or the fused frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgifuse.errors import InputError

#: Channel width per encoder scale (1/2, 1/4, 1/8, 1/16 of the image).
WIDTHS = (16, 32, 64, 128)


class _Block(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class DepthNet(nn.Module):
    """(N, 3, H, W) in [0, 1] -> list of depth maps (N, 1, h, w) in [0, 1], finest (full size) first.

    H and W must be multiples of 16 (the coarsest scale)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.widths = tuple(widths)
        stages, cin = [], 3
        for w in self.widths:
            stages.append(nn.Sequential(_Block(cin, w, 2), _Block(w, w, 1)))
            cin = w
        self.encoder = nn.ModuleList(stages)
        # decoder: from the coarsest scale up, each step adds the next finer encoder scale
        self.lateral = nn.ModuleList(nn.Conv2d(w, self.widths[0] * 2, 1) for w in self.widths)
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(self.widths[0] * 2, self.widths[0] * 2, 3, padding=1),
                                                  nn.ReLU()) for _ in self.widths)
        self.heads = nn.ModuleList(nn.Conv2d(self.widths[0] * 2, 1, 3, padding=1) for _ in self.widths)
        self.full = nn.Sequential(nn.Conv2d(self.widths[0] * 2 + 3, self.widths[0], 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(self.widths[0], 1, 3, padding=1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
        if image.shape[2] % 16 or image.shape[3] % 16:
            raise InputError(f"image height and width must be multiples of 16, got {tuple(image.shape[2:])}")
        feats, x = [], image
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
        outputs, y = [], None
        for i in reversed(range(len(feats))):
            lat = self.lateral[i](feats[i])
            y = lat if y is None else lat + F.interpolate(y, size=lat.shape[2:], mode="bilinear", align_corners=False)
            y = self.smooth[i](y)
            outputs.append(torch.sigmoid(self.heads[i](y)))
        top = F.interpolate(y, size=image.shape[2:], mode="bilinear", align_corners=False)
        outputs.append(torch.sigmoid(self.full(torch.cat([top, image], dim=1))))
        return outputs[::-1]  # finest first
