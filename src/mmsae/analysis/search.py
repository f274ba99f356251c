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
from mmsae.vectors import unit_rows

QUERY_CONCEPTS = 5
"""Concepts of a text query that rank rows (by their weight on the query; see `rank_rows`)."""
QUERY_POOL = 12
"""Top examples per concept that a query's rows are drawn from. The explorer's index keeps this
many, so `mmsae search` and the explorer rank the same candidates."""


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
        E = unit_rows(name_emb_FD)
        s = E @ q
        idx = np.argsort(-s)[:top]
        res["by_name"] = [
            {"concept": int(i), "similarity": float(s[i]), "name": names[i].name if names else None} for i in idx
        ]
    return res


def rank_rows(
    tops: dict[str, tuple[np.ndarray, np.ndarray]],
    weighted: Sequence[tuple[int, float]],
    modality: str = "image",
    k: int = 10,
) -> list[dict[str, Any]]:
    """Rows of `modality` that the weighted concepts fire on most, from a top-examples table.

    A row scores Σ weight × activation over the concepts it is a top example of. A text query
    passes each concept's activation on the query as its weight, so a concept the query barely
    fires cannot outrank the one it is about just because that concept fires strongly on its own
    rows. The one ranking behind `mmsae search --query` and the explorer's search box.
    """
    if modality not in tops:
        return []
    acts_KF, ids_KF = tops[modality]
    score: dict[int, float] = {}
    for c, w in weighted:
        for a, r in zip(acts_KF[:, c], ids_KF[:, c]):
            if r >= 0 and a > 0:
                score[int(r)] = score.get(int(r), 0.0) + float(w) * float(a)
    best = sorted(score, key=lambda r: (-score[r], r))[:k]
    return [{"row": r, "score": score[r]} for r in best]


def query_weights(found: dict[str, Any], limit: int) -> list[tuple[int, float]]:
    """(concept, weight) pairs of a query's concepts for `rank_rows`: the encoded ones weigh their
    activation on the query; one found only by name weighs as much as the strongest encoded one (1
    when there is none), since a name match says nothing about strength."""
    enc = [(c["concept"], c["activation"]) for c in found.get("by_encoding", [])]
    top_w = max((w for _, w in enc), default=1.0)
    seen = {c for c, _ in enc}
    named = [(c["concept"], top_w) for c in found.get("by_name", []) if c["concept"] not in seen]
    return (enc + named)[:limit]


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
    q = encoder.embed_texts([query])[0]
    name_emb = encoder.embed_texts([f"a photo of a {n.name or ''}." for n in names]) if names else None
    found = query_concepts(model, q, names, name_emb, top=max(top, QUERY_CONCEPTS))
    tops = top_examples(model, store, k=max(top, QUERY_POOL), modalities=(target,))
    # Names found by embedding similarity are suggestions, not evidence the query fires them: rows
    # are ranked by the encoded concepts alone.
    rows = rank_rows(tops, query_weights({"by_encoding": found["by_encoding"]}, QUERY_CONCEPTS), target, k=top)
    for r, label in zip(rows, store.labels([r["row"] for r in rows])):
        r["text"] = label  # its caption, else its image path or URL
    return {"query": query, **found, "rows": rows, "target": target}


def explain_row(
    model,
    store,
    row: int,
    names: list[ConceptName] | None = None,
    top: int = 5,
    splice: tuple[Sequence[str], np.ndarray] | None = None,
) -> dict[str, Any]:
    """A row → its strongest concepts and the rows of its modality with the most similar codes; with
    a vocabulary (`splice`: terms and their [T, D] embeddings), also SpLiCE's decomposition of the same row beside the SAE's reconstruction.
    What `mmsae search --row` prints."""
    from mmsae.errors import MmsaeError
    from mmsae.models.paired import as_paired

    if not 0 <= row < len(store):
        raise MmsaeError(f"--row must be in [0, {len(store)})")
    mods = store.modalities()
    z = encode_rows(model, store, np.array([row]))
    same = np.nonzero(mods == mods[row])[0]
    G = encode_rows(model, store, same)
    pos = int(np.searchsorted(same, row))
    idx, sim = similar_rows(z, G, k=top, exclude_self=np.array([pos]))
    near = [int(same[i]) for i in idx[0]]
    labels = store.labels([row, *near])  # captions, else image paths or URLs
    res = {
        "row": row,
        "modality": str(mods[row]),
        "text": labels[0],
        "concepts": concepts_of(z[0], names, top),
        "similar": [{"row": r, "cosine": float(s), "text": t} for r, s, t in zip(near, sim[0], labels[1:])],
    }
    if splice is not None:
        from mmsae.analysis.splice import splice_decompose

        terms, E = splice
        mean = store.get(same[:: max(1, len(same) // 20000)]).mean(0)
        x = store.get([row])[0]
        sp = splice_decompose(x[None], E, mean, terms=terms)
        with torch.no_grad():
            x_hat = as_paired(model).decode(torch.as_tensor(z), str(mods[row])).numpy()[0]
        sae_cos = float(x @ x_hat / max(np.linalg.norm(x) * np.linalg.norm(x_hat), 1e-12))
        res["splice"] = {"terms": sp["top_terms"][0], "l0": int(sp["l0"][0]), "cosine": float(sp["cosine"][0])}
        res["sae_reconstruction"] = {"l0": int((z[0] > 0).sum()), "cosine": sae_cos}
    return res
