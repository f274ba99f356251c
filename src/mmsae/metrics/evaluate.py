"""Evaluate an SAE over a store in one streaming pass, overall and per modality."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmsae.errors import MmsaeError
from mmsae.metrics.accumulate import MetricAccumulator
from mmsae.models.base import SAEOutput
from mmsae.models.paired import MODALITIES


def routed_encode(sae, x_BD: torch.Tensor, mods_B: np.ndarray) -> torch.Tensor:
    """Codes only (no decode: half the FLOPs of `routed_forward`), each row by its modality's encoder."""
    if not getattr(sae, "paired", False):
        return sae.encode(x_BD)
    codes = torch.zeros(len(x_BD), sae.cfg.dict_size, device=x_BD.device)
    for m in np.unique(mods_B):
        if m not in MODALITIES:
            raise MmsaeError(
                f"a paired SAE encodes only {MODALITIES} rows; this store also has {m!r} rows "
                "(pass --modality image or text)"
            )
        sel = torch.as_tensor(np.nonzero(mods_B == m)[0], device=x_BD.device)
        codes[sel] = sae.encode(x_BD[sel], str(m))
    return codes


def routed_forward(sae, x_BD: torch.Tensor, mods_B: np.ndarray) -> SAEOutput:
    """A single SAE encodes every row; a paired SAE encodes each row with its modality's encoder."""
    if not getattr(sae, "paired", False):
        return sae(x_BD)
    codes = torch.zeros(len(x_BD), sae.cfg.dict_size, device=x_BD.device)
    x_hat = torch.empty_like(x_BD)
    for m in np.unique(mods_B):
        if m not in MODALITIES:
            raise MmsaeError(
                f"a paired SAE encodes only {MODALITIES} rows; this store also has {m!r} rows "
                "(pass --modality image or text)"
            )
        sel = torch.as_tensor(np.nonzero(mods_B == m)[0], device=x_BD.device)
        out = sae(x_BD[sel], str(m))
        codes[sel], x_hat[sel] = out.codes_BF, out.x_hat_BD
    return SAEOutput(codes, x_hat)


@torch.no_grad()
def evaluate_batches(sae, batches, device: str | torch.device = "cpu") -> dict[str, Any]:
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
    result = overall.result()
    result["by_modality"] = {m: acc.result() for m, acc in sorted(per.items())}
    result["_frequency"] = overall.frequency()
    result["_energy"] = overall.energy()
    return result


def evaluate_store(
    sae,
    store,
    split: str = "all",
    val_fraction: float = 0.1,
    modality: str | None = None,
    chunk_rows: int = 8192,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
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
    result["split"] = split
    return result
