"""Input normalisation statistics: computed by the trainer on a sample, folded into the SAE at the end.
(What an architecture initialises from the sample is `mmsae.models.init`.)"""

from __future__ import annotations

import math

import torch


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
