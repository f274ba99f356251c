"""Reconstruction metrics (docs/formulas.md §3), as pure functions of x [N, D] and x̂ [N, D].

Sources disagree on names, so each says exactly what it computes.
"""

from __future__ import annotations

import torch


def _f64(*ts: torch.Tensor) -> list[torch.Tensor]:
    return [torch.as_tensor(t).detach().double() for t in ts]


def fvu(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> float:
    """Dataset-level FVU: Σ_n ‖x_n − x̂_n‖² / Σ_n ‖x_n − μ‖², μ the per-dimension mean. R² = 1 − FVU."""
    x, xh = _f64(x_ND, x_hat_ND)
    return float((x - xh).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def fvu_per_sample(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> float:
    """MSAE's FVU: mean_n Var_d(x_n − x̂_n) / Var_d(x_n), variances across dimensions."""
    x, xh = _f64(x_ND, x_hat_ND)
    return float(((x - xh).var(dim=1, unbiased=False) / x.var(dim=1, unbiased=False)).mean())


def r2_global(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> float:
    """R² of overcomplete / Papadimitriou et al.: 1 − mean((x − x̂)²) / mean((x − x̄)²), x̄ the scalar mean of all entries."""
    x, xh = _f64(x_ND, x_hat_ND)
    return float(1 - (x - xh).pow(2).mean() / (x - x.mean()).pow(2).mean())


def nmae(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> float:
    """MSAE's normalised MAE: mean_n [ mean_d |x̂ − x| / mean_d |x| ]."""
    x, xh = _f64(x_ND, x_hat_ND)
    return float(((xh - x).abs().mean(dim=1) / x.abs().mean(dim=1)).mean())


def cosine(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> float:
    """Mean cosine similarity between each x_n and its reconstruction."""
    x, xh = _f64(x_ND, x_hat_ND)
    return float(torch.nn.functional.cosine_similarity(x, xh, dim=1).mean())
