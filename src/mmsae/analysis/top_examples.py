"""The top-k images and top-k texts of every concept, in one streaming pass with constant memory.

State per modality: the best k activations of each concept and their row ids, [k, F] each. Each
block of codes is merged into it with one `topk` over k + block rows, so memory is
O((k + block) · F) whatever the store's size, and the result equals a full sort (exact, ties
broken by row order). Only positive activations count: a concept that fires on fewer than k rows
has fewer examples (row id -1 fills the rest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmsae.data.stream import StreamConfig, iter_rows
from mmsae.fileio import atomic_write
from mmsae.metrics.evaluate import routed_encode

TABLE_NAME = "top_examples.parquet"


@torch.no_grad()
def top_examples(
    model,
    store,
    k: int = 10,
    modalities: tuple[str, ...] | None = None,
    block: int = 1024,
    device="cpu",
    progress: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (activations [k, F], row ids [k, F])}, best first."""
    from tqdm.auto import tqdm

    F = model.cfg.dict_size
    state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    bar = tqdm(total=len(store), desc="top examples", unit="row", disable=not progress)
    for rows, mods, x in iter_rows(store, StreamConfig(chunk_rows=8192)):
        for lo in range(0, len(rows), block):
            r, m, xb = rows[lo : lo + block], mods[lo : lo + block], x[lo : lo + block]
            keep = np.ones(len(m), bool) if modalities is None else np.isin(m, modalities)
            if not keep.any():
                continue
            r, m, xb = r[keep], m[keep], xb[keep]
            z = routed_encode(model, torch.as_tensor(xb, device=device), m).float().cpu()
            for mod in np.unique(m):
                sel = np.nonzero(m == mod)[0]
                vals, ids = state.get(str(mod), (torch.full((0, F), -np.inf), torch.zeros((0, F), dtype=torch.long)))
                cand_v = torch.cat([vals, z[sel]])
                cand_r = torch.cat([ids, torch.as_tensor(r[sel], dtype=torch.long)[:, None].expand(-1, F)])
                kk = min(k, len(cand_v))
                v, i = cand_v.topk(kk, dim=0)  # sorted; ties keep the earlier (already kept) rows first
                state[str(mod)] = (v, cand_r.gather(0, i))
        bar.update(len(rows))
    bar.close()
    out = {}
    for mod, (v, ids) in state.items():
        v, ids = v.numpy(), ids.numpy()
        ids = np.where(v > 0, ids, -1)
        out[mod] = (np.where(v > 0, v, 0.0), ids)
    return out


def to_table(tops: dict[str, tuple[np.ndarray, np.ndarray]]) -> pa.Table:
    """Long format: concept, modality, rank, row_id, activation (valid examples only)."""
    cols: dict[str, list] = {"concept": [], "modality": [], "rank": [], "row_id": [], "activation": []}
    for mod, (v, ids) in tops.items():
        rank, concept = np.nonzero(ids >= 0)
        cols["concept"].append(concept)
        cols["modality"].append(np.full(len(concept), mod, dtype=object))
        cols["rank"].append(rank)
        cols["row_id"].append(ids[rank, concept])
        cols["activation"].append(v[rank, concept])
    arrays = {k: np.concatenate(v) if v else np.array([]) for k, v in cols.items()}
    order = (
        np.lexsort((arrays["rank"], arrays["modality"].astype(str), arrays["concept"])) if len(arrays["rank"]) else []
    )
    return pa.table(
        {
            "concept": pa.array(arrays["concept"][order], pa.int32()),
            "modality": pa.array(arrays["modality"][order].astype(str), pa.string()),
            "rank": pa.array(arrays["rank"][order], pa.int16()),
            "row_id": pa.array(arrays["row_id"][order], pa.int64()),
            "activation": pa.array(arrays["activation"][order], pa.float32()),
        }
    )


def write_top_examples(model, store, out: str | Path, k: int = 10, progress: bool = False):
    """Compute the top examples and write OUT/top_examples.parquet; returns (summary, the examples)."""
    tops = top_examples(model, store, k=k, progress=progress)
    table = to_table(tops)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / TABLE_NAME, lambda tmp: pq.write_table(table, tmp))
    return {"written": str(out / TABLE_NAME), "rows": table.num_rows, "k": k, "modalities": sorted(tops)}, tops


def texts_of(store, tops: dict[str, tuple[np.ndarray, np.ndarray]], modality: str = "text") -> dict[int, list[str]]:
    """Each concept's top rows of `modality` as their metadata text."""
    texts = store.metadata(["text"]).column("text").to_pylist()
    v, ids = tops[modality]
    return {c: [texts[r] for r in ids[:, c] if r >= 0] for c in range(ids.shape[1])}
