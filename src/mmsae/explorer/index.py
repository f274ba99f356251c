"""What the explorer shows, gathered once from a run folder and cached beside it.

A run folder holds an SAE, points at its store, and holds whatever analyses were run on them
(`names.json`, `top_examples.parquet`, `modality.json`, `bridges.json`, `stability.json`,
`pareto.json` and their plots, found at any depth up to three). The explorer adds one pass over
the store for per-concept statistics and activation histograms, and the top examples when no
analysis wrote them; both are cached in RUN/explorer/ and rebuilt only when the SAE or the store
changes. After that every page is a lookup, so the app stays fast on large stores.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmsae.analysis.codes import CodeBlock, code_blocks
from mmsae.analysis.heatmaps import patch_pictures
from mmsae.analysis.search import QUERY_POOL
from mmsae.analysis.top_examples import track_tops
from mmsae.data.manifest import MANIFEST_NAME
from mmsae.errors import MmsaeError
from mmsae.models.io import WEIGHTS_NAME
from mmsae.runs import EXPLORER_CACHE, RunLayout

CACHE_DIR = EXPLORER_CACHE
HIST_BINS = 64
INDEX_VERSION = 2
"""Bumped when what the cached index holds changes (2: a patch-token store's top examples are pictures)."""
HIST_LOG10_RANGE = (-4.0, 4.0)
"""Histogram bins are log-spaced over activations 1e-4 … 1e4 (values beyond go to the end bins)."""


def _fingerprint(layout: RunLayout, store) -> str:
    st = (layout.sae / WEIGHTS_NAME).stat()
    man = (Path(store.root) / MANIFEST_NAME).stat()
    key = [
        str(layout.sae.resolve()),
        st.st_size,
        st.st_mtime_ns,
        str(Path(store.root).resolve()),
        man.st_mtime_ns,
        len(store),
        HIST_BINS,
        HIST_LOG10_RANGE,
        INDEX_VERSION,
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


class ConceptStats:
    """Per concept and modality: firing frequency, mean activation (zeros included) and a
    histogram of positive activations, accumulated from blocks of nonzero codes."""

    def __init__(self, dict_size: int, modalities: list[str]):
        self.F, self.mods = dict_size, list(modalities)
        M = len(self.mods)
        self.sums_FM, self.fires_FM = np.zeros((dict_size, M)), np.zeros((dict_size, M))
        self.hist_FMB = np.zeros((dict_size, M, HIST_BINS), np.int64)
        self.counts_M = np.zeros(M, np.int64)

    def add(self, blk: CodeBlock) -> None:
        names, inv_B = np.unique(blk.mods_B, return_inverse=True)
        m_N = inv_B[blk.r_N]
        lo, hi = HIST_LOG10_RANGE
        F = self.F
        for i, name in enumerate(names):
            if str(name) not in self.mods:  # a modality the manifest does not count: not shown
                continue
            mi = self.mods.index(str(name))
            self.counts_M[mi] += int((inv_B == i).sum())
            sel = m_N == i
            c, v = blk.c_N[sel], blk.v_N[sel]
            self.sums_FM[:, mi] += np.bincount(c, weights=v, minlength=F)
            pos = v > 0
            c, v = c[pos], v[pos]
            self.fires_FM[:, mi] += np.bincount(c, minlength=F)
            # in torch's float32 arithmetic, as the index always binned (numpy's log10 differs by an ulp at edges)
            b = ((torch.from_numpy(v).log10() - lo) / (hi - lo) * HIST_BINS).floor().clamp(0, HIST_BINS - 1).long()
            b = b.numpy()
            self.hist_FMB[:, mi, :] += np.bincount(c * HIST_BINS + b, minlength=F * HIST_BINS).reshape(F, HIST_BINS)

    def result(self) -> dict[str, np.ndarray]:
        n = np.maximum(self.counts_M, 1)
        return {
            "modalities": np.array(self.mods),
            "counts": self.counts_M,
            "frequency_FM": self.fires_FM / n,
            "energy_FM": self.sums_FM / n,
            "hist_FMB": self.hist_FMB,
        }


def index_pass(
    model, store, top_k: int = 0, block: int = 4096, progress: bool = False, picture_R: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]] | None]:
    """(concept statistics as `ConceptStats.result`, the top `top_k` examples per modality as
    `top_examples` gives them, None when top_k is 0), from one pass over the store: the encoder
    GEMM is the pass's cost, so the explorer's index runs it once. With `picture_R` (a store of
    patch tokens: each row's picture, -1 for non-patches) the top examples are pictures, each once
    by its best patch; the statistics stay per row."""
    F = model.cfg.dict_size
    stats = ConceptStats(F, sorted(set(store.manifest.counts)) or ["image", "text"])

    def counted(blocks):
        for blk in blocks:
            stats.add(blk)
            yield blk

    blocks = counted(code_blocks(model, store, block, progress=progress, desc="explorer: index"))
    tops = track_tops(blocks, F, top_k, picture_R) if top_k else None
    if tops is None:
        for _ in blocks:  # the statistics alone
            pass
    return stats.result(), tops


def concept_stats(model, store, block: int = 4096, progress: bool = False) -> dict[str, np.ndarray]:
    """Per concept and modality: firing frequency, mean activation (zeros included) and a
    histogram of positive activations, in one pass. Arrays are [F, M] and [F, M, HIST_BINS] with
    M indexing `modalities`."""
    return index_pass(model, store, 0, block, progress)[0]


@dataclass
class ExplorerData:
    """Everything the app serves, loaded once."""

    layout: RunLayout
    model: Any
    store: Any
    table: dict[str, np.ndarray]
    """Per-concept columns (concept, name, frequency, energy, modality_score, bucket, stability, bridge_mass)."""
    terms: list[list[str]]
    hist_FMB: np.ndarray
    modalities: list[str]
    tops: dict[str, tuple[np.ndarray, np.ndarray]]
    """{modality: (activations [k, F], row ids [k, F])}, best first, row -1 where none."""
    bridges: list[dict[str, Any]]
    directions_FD: np.ndarray
    """Unit decoder directions (mean of both sides for paired SAEs), for nearest concepts."""
    meta: dict[str, Any]
    _rows: pa.Table | None = None

    @property
    def dict_size(self) -> int:
        return len(self.table["concept"])

    def rows_meta(self) -> pa.Table:
        if self._rows is None:
            self._rows = self.store.metadata(["modality", "pair_id", "source", "text"])
        return self._rows


def _load_tops(path: Path, F: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    t = pq.read_table(path)
    c, r = t.column("concept").to_numpy(), t.column("rank").to_numpy()
    if len(c) and c.max() >= F:
        raise MmsaeError(f"{path} has concepts beyond the SAE's {F}; it belongs to another SAE")
    k = int(r.max()) + 1 if len(r) else 1
    out = {}
    mods = np.asarray(t.column("modality").to_pylist(), dtype=object)
    for m in np.unique(mods):
        sel = mods == m
        acts, ids = np.zeros((k, F), np.float32), np.full((k, F), -1, np.int64)
        acts[r[sel], c[sel]] = t.column("activation").to_numpy()[sel]
        ids[r[sel], c[sel]] = t.column("row_id").to_numpy()[sel]
        out[str(m)] = (acts, ids)
    return out


def _cached_key(stamp: Path) -> str | None:
    """The key the cached index was built for; None when there is none or it is damaged (then said
    on stderr: the index is rebuilt, which costs a pass over the store but loses nothing)."""
    if not stamp.is_file():
        return None
    try:
        key = json.loads(stamp.read_text()).get("key")
        if isinstance(key, str):
            return key
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON (or not UTF-8), not an object
        pass
    print(f"explorer: {stamp} is damaged; rebuilding the index", file=sys.stderr)
    return None


def _read_stats(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        stats = {k: z[k] for k in z.files}
    missing = {"modalities", "counts", "frequency_FM", "energy_FM", "hist_FMB"} - set(stats)
    if missing:
        raise KeyError(f"no {', '.join(sorted(missing))}")
    return stats


def load_explorer(layout: RunLayout, progress: bool = False, rebuild: bool = False) -> ExplorerData:
    """Open the run's SAE and store, build or reuse the cache, and read the analyses."""
    from mmsae.analysis.modality import buckets, concept_directions, modality_scores
    from mmsae.analysis.top_examples import TABLE_NAME, save_top_examples
    from mmsae.runs import load_model, open_store_for

    model = load_model(str(layout.sae))
    store = open_store_for(model, str(layout.store))
    F = model.cfg.dict_size
    cache = layout.root / CACHE_DIR
    key = _fingerprint(layout, store)
    stamp = cache / "index.json"
    fresh = not rebuild and _cached_key(stamp) == key
    while True:
        if not fresh:
            cache.mkdir(parents=True, exist_ok=True)
            own_tops = "top_examples" not in layout.files
            pictures = patch_pictures(store) if own_tops else None  # patch tokens: each picture once
            stats, built = index_pass(
                model, store, QUERY_POOL if own_tops else 0, progress=progress, picture_R=pictures
            )
            np.savez(cache / "stats.npz", **stats)
            if built is not None:
                save_top_examples(built, cache, QUERY_POOL)
            stamp.write_text(json.dumps({"key": key, "sae": str(layout.sae), "store": str(layout.store)}))
        try:
            stats = _read_stats(cache / "stats.npz")
            tops = None if "top_examples" in layout.files else _load_tops(cache / TABLE_NAME, F)
            break
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, pa.ArrowException) as exc:
            if not fresh:
                raise
            print(f"explorer: the cached index in {cache} is damaged ({exc}); rebuilding it", file=sys.stderr)
            fresh = False
    if tops is None:  # an analysis's own table: its errors are its own, not the cache's
        tops = _load_tops(layout.files["top_examples"], F)

    mods = [str(m) for m in stats["modalities"]]
    counts = stats["counts"].astype(float)
    freq = (stats["frequency_FM"] * counts).sum(1) / max(counts.sum(), 1)
    energy = (stats["energy_FM"] * counts).sum(1) / max(counts.sum(), 1)
    e = {m: stats["energy_FM"][:, i] for i, m in enumerate(mods)}
    if "image" in e and "text" in e:
        mu = modality_scores(e["image"], e["text"])
        bucket = buckets(mu)
    else:
        mu, bucket = np.full(F, np.nan), np.where(freq > 0, mods[0] if mods else "dead", "dead").astype(object)
    table: dict[str, np.ndarray] = {
        "concept": np.arange(F),
        "frequency": freq,
        "energy": energy,
        "modality_score": mu,
        "bucket": bucket.astype(str),
    }
    for i, m in enumerate(mods):
        table[f"frequency_{m}"] = stats["frequency_FM"][:, i]
    names: list[str | None] = [None] * F
    terms: list[list[str]] = [[] for _ in range(F)]
    meta: dict[str, Any] = {"analyses": sorted(layout.files)}
    if "names" in layout.files:
        data = json.loads(layout.files["names"].read_text())
        for c in data.get("concepts", []):
            if 0 <= c["concept"] < F:
                names[c["concept"]], terms[c["concept"]] = c.get("name"), list(c.get("terms") or [])
        meta["naming"] = {k: data.get(k) for k in ("vocab", "method", "n_terms")}
    table["name"] = np.array([n or "" for n in names], dtype=object)
    table["stability"] = np.full(F, np.nan)
    if "stability" in layout.files:
        for c in json.loads(layout.files["stability"].read_text()).get("per_concept", []):
            if 0 <= c["concept"] < F:
                table["stability"][c["concept"]] = c["stability"]
    table["bridge_mass"] = np.full(F, np.nan)
    bridges: list[dict[str, Any]] = []
    if "bridges" in layout.files:
        data = json.loads(layout.files["bridges"].read_text())
        for c in data.get("mass", []):
            if 0 <= c["concept"] < F:
                table["bridge_mass"][c["concept"]] = c["mass_out"] + c["mass_in"]
        bridges = [
            {
                "image_concept": int(b["image_concept"]),
                "text_concept": int(b["text_concept"]),
                "score": float(b["score"]),
                "significant": bool(b.get("significant", False)),
            }
            for b in data.get("top", [])
        ]
    meta.update(
        {
            "sae": str(layout.sae),
            "store": str(layout.store),
            "rows": len(store),
            "dim": store.dim,
            "model_id": store.manifest.model_id,
            "arch": getattr(model, "architecture", "") or type(model).__name__,
            "dict_size": F,
            "k": getattr(model.cfg, "k", None),
            "counts": dict(store.manifest.counts),
            "plots": sorted(layout.plots),
            "paired": bool(getattr(model, "paired", False)),
        }
    )
    return ExplorerData(
        layout,
        model,
        store,
        table,
        terms,
        stats["hist_FMB"],
        mods,
        tops,
        bridges,
        concept_directions(model).astype(np.float32),
        meta,
    )
