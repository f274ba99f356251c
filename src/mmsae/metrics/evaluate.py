"""Evaluate an SAE over a store in one streaming pass, overall and per modality."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from mmsae.errors import MmsaeError
from mmsae.metrics.accumulate import MetricAccumulator
from mmsae.models.base import SAEOutput
from mmsae.models.paired import MODALITIES


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate_batches` and `evaluate_store` measure. `to_json()` is the JSON-safe part
    (what `mmsae eval` and the trainer's metrics.json write); the per-latent tensors are fields."""

    metrics: dict[str, float]
    """Every metric over all rows, as `MetricAccumulator.result()` gives them (fvu, r2,
    fvu_per_sample, r2_global, nmae, cosine, l0, l0_fraction_zero, dead_fraction, dense_fraction,
    n_rows); only {"n_rows": 0} when no row was read."""
    by_modality: dict[str, dict[str, float]]
    """The same metrics for each modality's rows, modalities in sorted order."""
    frequency_F: torch.Tensor
    """[F] float64 on the CPU: share of all rows on which each latent fires (code > 0)."""
    energy_F: torch.Tensor
    """[F] float64 on the CPU: each latent's mean code over all rows."""
    split: str | None = None
    """The rows `evaluate_store` read ("all", "train" or "val"); None from `evaluate_batches`."""

    @property
    def n_rows(self) -> int:
        """Rows evaluated (0 when there were none)."""
        return int(self.metrics.get("n_rows", 0))

    def to_json(self) -> dict[str, Any]:
        """The overall metrics, then `by_modality`, then `split` (when set): plain numbers and strings."""
        out: dict[str, Any] = {**self.metrics, "by_modality": {m: dict(r) for m, r in self.by_modality.items()}}
        if self.split is not None:
            out["split"] = self.split
        return out


def _routed(sae, x_BD: torch.Tensor, mods_B: np.ndarray, decode: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(codes [B, F], reconstructions [B, D] when `decode`, else None) of a paired SAE, each row
    through its own modality's encoder (and decoder)."""
    codes = torch.zeros(len(x_BD), sae.cfg.dict_size, device=x_BD.device)
    x_hat = torch.empty_like(x_BD) if decode else None
    for m in np.unique(mods_B):
        if m not in MODALITIES:
            raise MmsaeError(
                f"a paired SAE encodes only {MODALITIES} rows; this store also has {m!r} rows "
                "(pass --modality image or text)"
            )
        sel = torch.as_tensor(np.nonzero(mods_B == m)[0], device=x_BD.device)
        if x_hat is None:
            codes[sel] = sae.encode(x_BD[sel], str(m))
        else:
            out = sae(x_BD[sel], str(m))
            codes[sel], x_hat[sel] = out.codes_BF, out.x_hat_BD
    return codes, x_hat


def routed_encode(sae, x_BD: torch.Tensor, mods_B: np.ndarray) -> torch.Tensor:
    """Codes only (no decode: half the FLOPs of `routed_forward`), each row by its modality's encoder."""
    if not getattr(sae, "paired", False):
        return sae.encode(x_BD)
    return _routed(sae, x_BD, mods_B, decode=False)[0]


def routed_forward(sae, x_BD: torch.Tensor, mods_B: np.ndarray) -> SAEOutput:
    """A single SAE encodes every row; a paired SAE encodes each row with its modality's encoder."""
    if not getattr(sae, "paired", False):
        return sae(x_BD)
    codes, x_hat = _routed(sae, x_BD, mods_B, decode=True)
    return SAEOutput(codes, x_hat)


@torch.no_grad()
def evaluate_batches(sae, batches, device: str | torch.device = "cpu") -> EvalResult:
    """`batches` yields (modality names [B], x [B, D] numpy); returns overall metrics + `by_modality`."""
    overall = MetricAccumulator(sae.cfg.dict_size)
    per: dict[str, MetricAccumulator] = {}
    for mods_B, x_BD in batches:
        x = torch.as_tensor(np.ascontiguousarray(x_BD), dtype=torch.float32, device=device)
        mods_B = np.asarray(mods_B)
        out = routed_forward(sae, x, mods_B)
        overall.update(x, out.x_hat_BD, out.codes_BF)
        for m in np.unique(mods_B):
            sel = torch.as_tensor(np.nonzero(mods_B == m)[0], device=device)
            acc = per.setdefault(str(m), MetricAccumulator(sae.cfg.dict_size))
            acc.update(x[sel], out.x_hat_BD[sel], out.codes_BF[sel])
    return EvalResult(
        metrics=overall.result(),
        by_modality={m: acc.result() for m, acc in sorted(per.items())},
        frequency_F=overall.frequency(),
        energy_F=overall.energy(),
    )


def evaluate_store(
    sae,
    store,
    split: str = "all",
    val_fraction: float = 0.1,
    modality: str | None = None,
    chunk_rows: int = 8192,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> EvalResult:
    """Metrics of `sae` on every row of `store` (or one split / modality), read once in order."""
    from tqdm.auto import tqdm

    from mmsae.data.stream import StreamConfig, iter_rows

    cfg = StreamConfig(split=split, val_fraction=val_fraction, modality=modality, chunk_rows=chunk_rows)
    bar = tqdm(total=len(store), desc="eval", unit="row", disable=not progress)

    def gen():
        done = 0
        for rows, mods, x in iter_rows(store, cfg):
            bar.update(int(rows[-1]) + 1 - done)  # rows read, filtered or not
            done = int(rows[-1]) + 1
            yield mods, x
        bar.update(len(store) - done)

    result = evaluate_batches(sae, gen(), device=device)
    bar.close()
    return replace(result, split=split)
