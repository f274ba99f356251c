"""The top-k images and top-k texts of every concept, in one streaming pass with constant memory.

State per modality: the best k activations of each concept and their row ids, [k, F] each
(`analysis.codes.TopTracker`), fed each block's nonzero codes, so memory is O(k·F + block·nonzeros)
whatever the store's size, and the result equals a full sort (exact, ties broken by row order).
Only positive activations count: a concept that fires on fewer than k rows has fewer examples
(row id -1 fills the rest).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmsae.analysis.codes import CodeBlock, TopTracker, code_blocks, picture_codes
from mmsae.analysis.heatmaps import patch_pictures
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write

TABLE_NAME = "top_examples.parquet"


def top_examples(
    model,
    store,
    k: int = 10,
    modalities: tuple[str, ...] | None = None,
    block: int = 4096,
    device="cpu",
    progress: bool = False,
    per_image: str | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{modality: (activations [k, F], row ids [k, F])}, best first. `per_image` ("max" or "mean",
    a store of patch tokens only) ranks pictures instead of rows: each picture once, by the max
    or mean of its patches' codes (`analysis.codes.picture_codes`), under "image"."""
    picture_R = None
    if per_image is not None:
        picture_R = patch_pictures(store)
        if picture_R is None:
            raise MmsaeError(f"{store.root} holds no patch tokens: --per-image {per_image} needs a picture per row")
    blocks = code_blocks(model, store, block, modalities, device, progress, desc="top examples")
    return track_tops(blocks, model.cfg.dict_size, k, picture_R, per_image or "max")


def track_tops(
    blocks: Iterator[CodeBlock], dict_size: int, k: int, picture_R: np.ndarray | None = None, how: str = "max"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The top k of each concept over a stream of code blocks, per modality as `top_examples`
    gives them; with `picture_R` (a store of patch tokens: each row's picture, -1 for non-patches)
    pictures instead of rows, each once, by the max or mean (`how`) of its patches' codes."""
    if picture_R is not None:
        tracker = TopTracker(dict_size, k)
        for rows_N, c_N, v_N in picture_codes(blocks, picture_R, how):
            tracker.add(rows_N, c_N, v_N)
        return {"image": tracker.result()}
    trackers: dict[str, TopTracker] = {}
    for blk in blocks:
        names, inv_B = np.unique(blk.mods_B, return_inverse=True)
        m_N = inv_B[blk.r_N]
        for mi, mod in enumerate(names):
            t = trackers.setdefault(str(mod), TopTracker(dict_size, k))
            sel = m_N == mi if len(names) > 1 else slice(None)
            t.add(blk.rows_B[blk.r_N[sel]], blk.c_N[sel], blk.v_N[sel])
    return {mod: t.result() for mod, t in trackers.items()}


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


def write_top_examples(
    model, store, out: str | Path, k: int = 10, progress: bool = False, per_image: str | None = None
):
    """Compute the top examples and write OUT/top_examples.parquet; returns (summary, the examples)."""
    tops = top_examples(model, store, k=k, progress=progress, per_image=per_image)
    summary = save_top_examples(tops, out, k)
    if per_image is not None:
        summary["per_image"] = per_image
    return summary, tops


def save_top_examples(tops: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, k: int) -> dict:
    """Write OUT/top_examples.parquet (atomically); returns a summary."""
    table = to_table(tops)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / TABLE_NAME, lambda tmp: pq.write_table(table, tmp))
    return {"written": str(out / TABLE_NAME), "rows": table.num_rows, "k": k, "modalities": sorted(tops)}


def texts_of(store, tops: dict[str, tuple[np.ndarray, np.ndarray]], modality: str = "text") -> dict[int, list[str]]:
    """Each concept's top rows of `modality` as their metadata text."""
    texts = store.metadata(["text"]).column("text").to_pylist()
    v, ids = tops[modality]
    return {c: [texts[r] for r in ids[:, c] if r >= 0] for c in range(ids.shape[1])}
