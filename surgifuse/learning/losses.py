"""Training losses as modules: the Fusion Network's four (paper 000, eqs. 3-7) and the autoencoder's
reconstruction loss (paper 003). Images are (B, 3, H, W) float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgifuse.errors import InputError


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise InputError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim != 4:
        raise InputError(f"images must be (B, C, H, W), got {tuple(pred.shape)}")


class AllInFocusLoss(nn.Module):
    """L_aif (eq. 3): mean absolute difference to the all-in-focus truth (L1 keeps boundaries sharp)."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        return (pred - target).abs().mean()


class PerceptualLoss(nn.Module):
    """L_perceptual (eq. 4): mean squared distance between feature maps of a frozen CNN.

    The paper uses a pretrained CNN; none can be downloaded here, so the feature extractor is the
    encoder of our self-supervised autoencoder (paper 003), trained on the same synthetic scenes.
    """

    def __init__(self, feature_extractor: nn.Module):
        super().__init__()
        self.features = feature_extractor
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.features.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # frozen: never in training mode
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        with torch.no_grad():
            ft = self.features(target)
        return F.mse_loss(self.features(pred), ft)


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W): Sobel gradient magnitude of the luma (replicated edges)."""
    grey = 0.299 * image[:, 0:1] + 0.587 * image[:, 1:2] + 0.114 * image[:, 2:3]
    kx = image.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    p = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(p, kx)
    gy = F.conv2d(p, kx.transpose(2, 3))
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


class EdgeLoss(nn.Module):
    """L_edge (eq. 5): edges of the truth (Canny, low threshold 0) against the prediction's edges.

    Canny is not differentiable, so the edge map compared is a squashed Sobel magnitude,
    ``tanh(|Sobel| / scale)``, gated by the truth's Canny edge mask: on every Canny edge pixel
    the prediction must be as sharp as the truth. Zero when prediction equals truth; gradients
    flow through the prediction's Sobel map. ``canny`` is (B, 1, H, W) with values in {0, 1}.
    """

    def __init__(self, *, scale: float = 0.5):
        super().__init__()
        if scale <= 0:
            raise InputError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def edge_map(self, image: torch.Tensor) -> torch.Tensor:
        return torch.tanh(sobel_magnitude(image) / self.scale)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, canny: torch.Tensor) -> torch.Tensor:
        _check_pair(pred, target)
        if canny.shape != (pred.shape[0], 1) + tuple(pred.shape[2:]):
            raise InputError(f"canny must be (B, 1, H, W) = {(pred.shape[0], 1) + tuple(pred.shape[2:])}, got {tuple(canny.shape)}")
        with torch.no_grad():
            eg = self.edge_map(target)
        return (canny * (eg - self.edge_map(pred))).abs().mean()


class IdentityLoss(nn.Module):
    """L_identity (eq. 6, from CycleGAN): the network fed a stack made of the truth must return the truth.

    A stack of K copies of one image gives the same element-wise maximum as one copy, so the
    stack is the truth alone (K = 1): same loss, 1/K of the cost.
    """

    def forward(self, network: nn.Module, target: torch.Tensor) -> torch.Tensor:
        if target.ndim != 4 or target.shape[1] != 3:
            raise InputError(f"target must be (B, 3, H, W), got {tuple(target.shape)}")
        return (network(target.unsqueeze(1)) - target).abs().mean()


def canny_edges(rgb_uint8, *, low: int = 0, high: int = 100):
    """Canny edge mask of an HxWx3 uint8 RGB image as float32 {0, 1} (cv2.Canny on the grey image).

    The paper applies Canny with a zero low threshold; ``high`` is ours (the paper gives none).
    """
    import cv2
    import numpy as np

    if rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 3 or rgb_uint8.shape[2] != 3:
        raise InputError(f"canny_edges needs HxWx3 uint8, got {rgb_uint8.shape} {rgb_uint8.dtype}")
    grey = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY)
    return (cv2.Canny(grey, low, high) > 0).astype(np.float32)


def gaussian_ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian, sigma 1.5, data range 1) of two (B, C, H, W) images."""
    _check_pair(x, y)
    c = x.shape[1]
    r = torch.arange(window, dtype=x.dtype, device=x.device) - window // 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    g = (g / g.sum())
    k = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(t, k, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


class ReconstructionLoss(nn.Module):
    """Paper 003's autoencoder loss: L = ||R - O||^2 (mean) + lambda (1 - SSIM(R, O))."""

    def __init__(self, *, ssim_weight: float = 1.0):
        super().__init__()
        self.ssim_weight = float(ssim_weight)

    def forward(self, recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        _check_pair(recon, original)
        return F.mse_loss(recon, original) + self.ssim_weight * (1 - gaussian_ssim(recon, original))


class FusionLoss(nn.Module):
    """The Fusion Network's total loss (eq. 7): the equal-weight sum of the chosen terms.

    ``terms`` picks from "aif", "perceptual", "edge", "identity" (the ablation switches them).
    ``forward`` returns (total, {term: value}).
    """

    def __init__(self, terms=("aif", "perceptual", "edge", "identity"), *, feature_extractor: nn.Module | None = None):
        super().__init__()
        self.terms = tuple(terms)
        if "perceptual" in self.terms and feature_extractor is None:
            raise InputError("the perceptual loss needs a feature_extractor (the autoencoder's encoder)")
        self.aif = AllInFocusLoss()
        self.perceptual = PerceptualLoss(feature_extractor) if "perceptual" in self.terms else None
        self.edge = EdgeLoss()
        self.identity = IdentityLoss()

    def forward(self, network: nn.Module, pred: torch.Tensor, target: torch.Tensor, canny: torch.Tensor | None = None):
        parts: dict[str, torch.Tensor] = {}
        if "aif" in self.terms:
            parts["aif"] = self.aif(pred, target)
        if "perceptual" in self.terms:
            parts["perceptual"] = self.perceptual(pred, target)
        if "edge" in self.terms:
            if canny is None:
                raise InputError("the edge loss needs the truth's Canny edges")
            parts["edge"] = self.edge(pred, target, canny)
        if "identity" in self.terms:
            parts["identity"] = self.identity(network, target)
        total = sum(parts.values()) if parts else pred.sum() * 0
        return total, parts
