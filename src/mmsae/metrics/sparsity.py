"""Sparsity and latent-usage metrics of codes z [N, F] (docs/formulas.md §3)."""

from __future__ import annotations

import torch

DENSE_FREQUENCY = 0.1
"""A latent active on more than this share of samples counts as dense."""


def l0(codes_NF: torch.Tensor) -> float:
    """Mean number of non-zero latents per sample."""
    return float((torch.as_tensor(codes_NF).detach() != 0).sum(dim=1).double().mean())


def l0_fraction_zero(codes_NF: torch.Tensor) -> float:
    """Share of latents that are zero, averaged over samples (MSAE calls this 'L0')."""
    z = torch.as_tensor(codes_NF).detach()
    return float((z == 0).double().mean())


def frequency(codes_NF: torch.Tensor) -> torch.Tensor:
    """Per latent: share of samples with z_i > 0."""
    return (torch.as_tensor(codes_NF).detach() > 0).double().mean(dim=0)


def energy(codes_NF: torch.Tensor) -> torch.Tensor:
    """Per latent: E_i = mean_n z_{n,i}, zeros included."""
    return torch.as_tensor(codes_NF).detach().double().mean(dim=0)


def dead_fraction(codes_NF: torch.Tensor) -> float:
    """Share of latents never non-zero on these samples."""
    return float((frequency(codes_NF) == 0).double().mean())


def dense_fraction(codes_NF: torch.Tensor, threshold: float = DENSE_FREQUENCY) -> float:
    """Share of latents active on more than `threshold` of samples."""
    return float((frequency(codes_NF) > threshold).double().mean())
