"""Concept search in both directions (docs/formulas.md §6): words → concepts → images, and an image →
its concepts (with names) and its most similar images by code cosine.

Similar rows: exact cosine search with scikit-learn's brute-force NearestNeighbors on sparse
codes, which `benchmarks/similar_search.py` measured 18× faster than a dense blocked matmul.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmsae.analysis.naming import ConceptName


@torch.no_grad()
def encode_rows(model, store, rows: np.ndarray, modality: str | None = None, block: int = 4096) -> np.ndarray:
    """Dense codes [n, F] of store rows, each with its own modality's encoder (or `modality`)."""
    from mmsae.metrics.evaluate import routed_encode

    mods = store.modalities()
    out = []
    for lo in range(0, len(rows), block):
        r = rows[lo : lo + block]
        m = np.full(len(r), modality, dtype=object) if modality else mods[r]
        out.append(routed_encode(model, torch.as_tensor(store.get(r)), m.astype(str)).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.dict_size), np.float32)


def concepts_of(codes_F: np.ndarray, names: list[ConceptName] | None, top: int = 10) -> list[dict[str, Any]]:
    """The `top` strongest concepts of one code, with names when given."""
    idx = np.argsort(-codes_F)[:top]
    return [
        {"concept": int(i), "activation": float(codes_F[i]), "name": names[i].name if names else None}
        for i in idx
        if codes_F[i] > 0
    ]


@torch.no_grad()
def query_concepts(
    model,
    query_emb_D: np.ndarray,
    names: list[ConceptName] | None = None,
    name_emb_FD: np.ndarray | None = None,
    top: int = 5,
    modality: str = "text",
) -> dict[str, Any]:
    """A text query's concepts two ways: by encoding its embedding, and by the cosine of the query
    with each concept's name embedding."""
    from mmsae.models.paired import as_paired

    m = as_paired(model)
    z = m.encode(torch.as_tensor(np.asarray(query_emb_D, np.float32)[None]), modality)[0].numpy()
    res = {"by_encoding": concepts_of(z, names, top)}
    if name_emb_FD is not None:
        q = query_emb_D / max(np.linalg.norm(query_emb_D), 1e-12)
        E = name_emb_FD / np.maximum(np.linalg.norm(name_emb_FD, axis=1, keepdims=True), 1e-12)
        s = E @ q
        idx = np.argsort(-s)[:top]
        res["by_name"] = [
            {"concept": int(i), "similarity": float(s[i]), "name": names[i].name if names else None} for i in idx
        ]
    return res


def rows_for_concepts(
    tops: dict[str, tuple[np.ndarray, np.ndarray]], concepts: Sequence[int], modality: str = "image", k: int = 10
) -> list[dict[str, Any]]:
    """Rows where the given concepts fire most (from a top-examples table), merged by activation."""
    if modality not in tops:
        return []
    v, ids = tops[modality]
    cand: dict[int, float] = {}
    for c in concepts:
        for a, r in zip(v[:, c], ids[:, c]):
            if r >= 0:
                cand[int(r)] = max(cand.get(int(r), 0.0), float(a))
    best = sorted(cand.items(), key=lambda t: -t[1])[:k]
    return [{"row": r, "activation": a} for r, a in best]


def similar_rows(
    codes_QF: np.ndarray, gallery_codes_GF: np.ndarray, k: int = 10, exclude_self: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices [Q, k], cosines [Q, k]) of the nearest gallery codes by cosine, exact.

    Codes are sparse, so scikit-learn's brute-force NearestNeighbors on CSR matrices does it:
    18× faster than a dense blocked matmul on 50,000 codes with F = 4096 and 32 active
    (`benchmarks/similar_search.py`). `exclude_self[q]` is a gallery index to leave out for query q.
    """
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    G = sp.csr_matrix(np.asarray(gallery_codes_GF, dtype=np.float32))
    extra = 1 if exclude_self is not None else 0
    kk = min(k + extra, G.shape[0])
    nn = NearestNeighbors(n_neighbors=kk, metric="cosine", algorithm="brute").fit(G)
    dist, idx = nn.kneighbors(sp.csr_matrix(np.asarray(codes_QF, dtype=np.float32)))
    sim = 1.0 - dist
    if exclude_self is not None:
        keep = idx != np.asarray(exclude_self)[:, None]
        idx = np.stack([row[m][:k] for row, m in zip(idx, keep)])
        sim = np.stack([row[m][:k] for row, m in zip(sim, keep)])
    return idx[:, :k], sim[:, :k]


def search_text(
    model, store, query: str, encoder, names: list[ConceptName] | None = None, top: int = 5, target: str | None = None
) -> dict[str, Any]:
    """Words → concepts → rows: the concepts the query's embedding fires (and, with names, those
    whose names are nearest), then the `target` rows those concepts fire on most. What
    `mmsae search --query` prints."""
    from mmsae.analysis.top_examples import top_examples
    from mmsae.errors import MmsaeError

    if not query.strip():
        raise MmsaeError("--query is empty")
    mods = store.modalities()
    target = target or ("image" if (mods == "image").any() else "text")
    texts = store.metadata(["text"]).column("text").to_pylist()
    q = encoder.embed_texts([query])[0]
    name_emb = encoder.embed_texts([f"a photo of a {n.name or ''}." for n in names]) if names else None
    found = query_concepts(model, q, names, name_emb, top=top)
    concepts = [c["concept"] for c in found["by_encoding"]]
    tops = top_examples(model, store, k=top, modalities=(target,))
    rows = rows_for_concepts(tops, concepts, target, k=top)
    for r in rows:
        r["text"] = texts[r["row"]]
    return {"query": query, **found, "rows": rows, "target": target}


def explain_row(
    model, store, row: int, names: list[ConceptName] | None = None, top: int = 5, splice_vocab: str | None = None
) -> dict[str, Any]:
    """A row → its strongest concepts and the rows of its modality with the most similar codes; with
    a vocabulary, also SpLiCE's decomposition of the same row beside the SAE's reconstruction.
    What `mmsae search --row` prints."""
    from mmsae.errors import MmsaeError
    from mmsae.models.paired import as_paired

    if not 0 <= row < len(store):
        raise MmsaeError(f"--row must be in [0, {len(store)})")
    mods = store.modalities()
    texts = store.metadata(["text"]).column("text").to_pylist()
    z = encode_rows(model, store, np.array([row]))
    same = np.nonzero(mods == mods[row])[0]
    G = encode_rows(model, store, same)
    pos = int(np.searchsorted(same, row))
    idx, sim = similar_rows(z, G, k=top, exclude_self=np.array([pos]))
    res = {
        "row": row,
        "modality": str(mods[row]),
        "text": texts[row],
        "concepts": concepts_of(z[0], names, top),
        "similar": [{"row": int(same[i]), "cosine": float(s), "text": texts[same[i]]} for i, s in zip(idx[0], sim[0])],
    }
    if splice_vocab:
        from mmsae.analysis.naming import embed_vocabulary, read_vocabulary
        from mmsae.analysis.splice import splice_decompose

        terms = read_vocabulary(splice_vocab)
        E = embed_vocabulary(store, terms, templates=("a photo of a {}.",))
        mean = store.get(same[:: max(1, len(same) // 20000)]).mean(0)
        x = store.get([row])[0]
        sp = splice_decompose(x[None], E, mean, terms=terms)
        with torch.no_grad():
            x_hat = as_paired(model).decode(torch.as_tensor(z), str(mods[row])).numpy()[0]
        sae_cos = float(x @ x_hat / max(np.linalg.norm(x) * np.linalg.norm(x_hat), 1e-12))
        res["splice"] = {"terms": sp["top_terms"][0], "l0": int(sp["l0"][0]), "cosine": float(sp["cosine"][0])}
        res["sae_reconstruction"] = {"l0": int((z[0] > 0).sum()), "cosine": sae_cos}
    return res
