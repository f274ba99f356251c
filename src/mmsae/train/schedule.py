"""Training schedule: the learning rate over steps (linear warm-up, then cosine, linear or constant
decay), and how many steps of how large a batch (`auto_schedule`)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


MIN_STEPS = 3000
"""Fewest optimizer steps an automatic schedule gives (see `auto_schedule`). The pooled SAE of
`mmsae compare` on 4,000 planted pairs recovered 0.94 of the shared concepts after ~1,000 steps,
0.98 after 2,200 to 3,000, 1.00 after 6,000."""
MIN_BATCH = 128
"""Smallest automatic batch (a store with fewer training rows uses them all in one batch). 64 gave
the same recovery on 4,000 planted pairs, but a worse multimodal SAE on 20,000 (0.953 of the shared
concepts against 0.984 at 128)."""
MAX_BATCH = 1024
"""Largest automatic batch: the fixed default of `compare`, `analyze pareto` and `analyze stability`
before the schedule scaled, so large stores train exactly as they did."""


@dataclass(frozen=True)
class Schedule:
    """How long one SAE trains: rows (or pairs) per step, passes over the training split, steps."""

    batch_size: int
    epochs: float
    steps: int
    auto: bool
    """Whether the batch size or the epochs were chosen by `auto_schedule` (not given)."""

    def describe(self) -> str:
        """`batch 256, 2,813 steps, 20 epochs` (the wording of every table header)."""
        return f"batch {self.batch_size}, {self.steps:,} steps, {self.epochs:.4g} epochs"


def steps_for(n_train: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of `epochs` passes over `n_train` rows: the trainer's count."""
    return max(1, math.ceil(epochs * n_train / batch_size))


def auto_schedule(
    n_train: int,
    batch_size: int | None = None,
    epochs: float | None = None,
    min_epochs: float = 20.0,
    min_steps: int = MIN_STEPS,
) -> Schedule:
    """The batch size and epochs an SAE trains with when they are not given (None = auto).

    Why: an SAE learns per optimizer step more than per row. A fixed batch of 1024 over a fixed
    number of epochs gives a small store too few steps to converge, and the comparisons built on it
    change their conclusions: `mmsae compare` on the small demo's 4,000 planted pairs (F=256, k=8)
    recovered 0.083 of the shared concepts with the pooled SAE and 0.000 with the MultiModalSAE at
    batch 1024 × 20 epochs (140 and 70 steps), against 0.979 and 1.000 with this rule (3,000 steps
    of 128); 3,000 steps of 1024 recovered 0.896, so it is the steps (measurements:
    docs/multimodal.md#training-length).

    The rule, from the rows (or pairs, for paired SAEs) of the training split:

    - batch = the largest power of two ≤ n_train · min_epochs / min_steps, clamped to
      [MIN_BATCH, MAX_BATCH] (and to n_train): within `min_epochs` passes the SAE gets at least
      `min_steps` steps, with as large a batch (as fast a step) as that allows;
    - epochs = max(min_epochs, min_steps · batch / n_train): when the batch is at its floor, more
      passes make up the steps. Such a store is small, so this costs at most min_steps × MIN_BATCH
      rows of training.

    A store with n_train ≥ MAX_BATCH · min_steps / min_epochs rows (153,600 at 20 epochs) gets
    batch MAX_BATCH and `min_epochs` epochs: the old fixed defaults, so large stores are not slowed.
    A value that is given is kept; only the other one is chosen (epochs still so that steps ≥
    min_steps when only the batch is given).
    """
    if n_train < 1:
        raise ValueError(f"n_train must be positive, got {n_train}")
    auto = batch_size is None or epochs is None
    if batch_size is None:
        fit = n_train * min_epochs / min_steps
        batch_size = MIN_BATCH if fit < MIN_BATCH else min(MAX_BATCH, 1 << int(math.log2(fit)))
        batch_size = min(batch_size, n_train)
    if epochs is None:
        epochs = max(float(min_epochs), min_steps * batch_size / n_train)
    return Schedule(batch_size, float(epochs), steps_for(n_train, batch_size, epochs), auto)
