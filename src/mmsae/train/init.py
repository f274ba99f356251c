"""Data-dependent initialisation: the normalisation statistics and b_dec."""

from __future__ import annotations

import math

import torch


def geometric_median(x_ND: torch.Tensor, iters: int = 100, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances."""
    x = x_ND.double()
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < eps * max(1.0, float(y.norm())):
            y = y_new
            break
        y = y_new
    return y.to(x_ND.dtype)


def normalization_stats(sample_ND: torch.Tensor, mode: str) -> tuple[torch.Tensor, float]:
    """(mean, scale) so that x' = (x − mean)·scale has mean norm √D (MSAE's preprocessing)."""
    D = sample_ND.shape[1]
    if mode == "none":
        return torch.zeros(D), 1.0
    mean = sample_ND.mean(0) if mode == "center_scale" else torch.zeros(D)
    avg_norm = float((sample_ND - mean).norm(dim=1).mean())
    if avg_norm == 0.0:
        return mean, 1.0
    return mean, math.sqrt(D) / avg_norm
