"""Learning-rate schedule: linear warm-up, then cosine, linear or constant decay."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, decay: str, min_frac: float) -> float:
    """Multiplier of the peak LR at `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if decay == "constant" or total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if decay == "cosine":
        return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t))
    return min_frac + (1 - min_frac) * (1 - t)
