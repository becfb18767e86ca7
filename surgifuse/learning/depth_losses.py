"""The depth losses of paper 002: on F(d) = ln(d + alpha) of predicted and true depth, the mean
absolute difference (l_depth), of their gradients (l_grad) and one minus the cosine between their
surface normals (l_normal); Hu et al. 2019, "Revisiting single image depth estimation", whose
losses paper 002 follows. Depth maps are (N, 1, H, W), non-negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgifuse.errors import InputError

#: alpha of F(d) = ln(d + alpha): depth here is a fraction of the stack's range (0..1), so 0 occurs;
#: 0.5 keeps the log's weight on near depth moderate.
ALPHA = 0.5


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise InputError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim != 4 or pred.shape[1] != 1:
        raise InputError(f"depth maps must be (N, 1, H, W), got {tuple(pred.shape)}")


def _gradients(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (replicated border), same size as ``f``."""
    padded = F.pad(f, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    gy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    return gx, gy


class DepthLosses(nn.Module):
    """``forward(pred, target) -> {"depth", "grad", "normal", "total"}`` (weights 1, 1, 1)."""

    def __init__(self, alpha: float = ALPHA, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        super().__init__()
        if not alpha > 0:
            raise InputError(f"alpha must be > 0, got {alpha}")
        self.alpha, self.weights = float(alpha), tuple(float(w) for w in weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(pred, target)
        fp, ft = torch.log(pred.clamp_min(0) + self.alpha), torch.log(target.clamp_min(0) + self.alpha)
        l_depth = (fp - ft).abs().mean()
        pgx, pgy = _gradients(fp)
        tgx, tgy = _gradients(ft)
        l_grad = ((pgx - tgx).abs() + (pgy - tgy).abs()).mean()
        ones = torch.ones_like(pgx)
        normal_p = torch.cat([-pgx, -pgy, ones], dim=1)
        normal_t = torch.cat([-tgx, -tgy, ones], dim=1)
        l_normal = (1.0 - F.cosine_similarity(normal_p, normal_t, dim=1)).mean()
        a, b, c = self.weights
        return {"depth": l_depth, "grad": l_grad, "normal": l_normal, "total": a * l_depth + b * l_grad + c * l_normal}
