"""Streaming versions of every metric: feed batches, read the same numbers as the pure functions.

Sums are kept in float64, so one pass over a store of any size gives the dataset-level FVU, R²
and friends without holding the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmsae.errors import UndefinedMetricError
from mmsae.metrics.sparsity import DENSE_FREQUENCY


@dataclass
class MetricAccumulator:
    """Running sums for one group of rows (all rows, or one modality)."""

    dict_size: int
    n: int = 0
    sq_err: float = 0.0
    sum_x_D: torch.Tensor | None = None
    sum_sq_x: float = 0.0
    sum_x_scalar: float = 0.0
    n_entries: int = 0
    fvu_ps_sum: float = 0.0
    nmae_sum: float = 0.0
    cos_sum: float = 0.0
    nnz_sum: float = 0.0
    fired_F: torch.Tensor = field(default=None)  # type: ignore[assignment]
    energy_F: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        self.fired_F = torch.zeros(self.dict_size, dtype=torch.float64)
        self.energy_F = torch.zeros(self.dict_size, dtype=torch.float64)

    def update(self, x_BD: torch.Tensor, x_hat_BD: torch.Tensor, codes_BF: torch.Tensor) -> None:
        if len(x_BD) == 0:
            return
        x, xh = x_BD.double(), x_hat_BD.double()
        err = x - xh
        self.n += len(x)
        self.sq_err += float(err.pow(2).sum())
        sx = x.sum(0)
        self.sum_x_D = sx if self.sum_x_D is None else self.sum_x_D + sx
        self.sum_sq_x += float(x.pow(2).sum())
        self.sum_x_scalar += float(x.sum())
        self.n_entries += x.numel()
        self.fvu_ps_sum += float((err.var(dim=1, unbiased=False) / x.var(dim=1, unbiased=False)).sum())
        self.nmae_sum += float((err.abs().mean(dim=1) / x.abs().mean(dim=1)).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(x, xh, dim=1).sum())
        active = codes_BF > 0
        self.nnz_sum += float((codes_BF != 0).sum())
        self.fired_F += active.sum(0).double().cpu()
        self.energy_F += codes_BF.double().sum(0).cpu()

    def result(self) -> dict[str, float]:
        if self.n == 0:
            return {"n_rows": 0}
        mu = self.sum_x_D / self.n
        total_var = self.sum_sq_x - self.n * float(mu.pow(2).sum())
        scalar_mean = self.sum_x_scalar / self.n_entries
        var_scalar = self.sum_sq_x / self.n_entries - scalar_mean**2
        freq = self.fired_F / self.n
        # identical rows leave only the rounding error of the float64 running sums (≈ rows × 1e-16)
        if total_var <= 1e-8 * self.sum_sq_x or var_scalar <= 0:
            raise UndefinedMetricError(
                f"FVU is undefined on these {self.n} row(s): they do not vary (every row is the same)"
            )
        fvu = self.sq_err / total_var
        return {
            "fvu": fvu,
            "r2": 1.0 - fvu,
            "fvu_per_sample": self.fvu_ps_sum / self.n,
            "r2_global": 1.0 - (self.sq_err / self.n_entries) / var_scalar,
            "nmae": self.nmae_sum / self.n,
            "cosine": self.cos_sum / self.n,
            "l0": self.nnz_sum / self.n,
            "l0_fraction_zero": 1.0 - self.nnz_sum / (self.n * self.dict_size),
            "dead_fraction": float((freq == 0).double().mean()),
            "dense_fraction": float((freq > DENSE_FREQUENCY).double().mean()),
            "n_rows": self.n,
        }

    def frequency(self) -> torch.Tensor:
        return self.fired_F / max(self.n, 1)

    def energy(self) -> torch.Tensor:
        return self.energy_F / max(self.n, 1)
