"""Steering and controlled generation on embeddings (docs/formulas.md §7).

Two ways to move an embedding toward a concept:
- `steer`: add s · d (a unit concept direction, or any direction such as a probe's weight) in
  the embedding's own space, keeping its norm;
- `edit_and_decode`: change chosen entries of its code and decode into a target modality, e.g.
  an image's concepts written out as a caption embedding.
Results are judged by what they retrieve (`nearest`) and by a linear probe's score (`probe_score`).
"""

from __future__ import annotations

import numpy as np
import torch

from mmsae.metrics.crossmodal import cosine_matrix, encode_decode
from mmsae.models.paired import as_paired


def concept_direction(model, concept: int, modality: str = "image") -> np.ndarray:
    """Unit direction of `concept` in that modality's embedding space (its decoder row)."""
    m = as_paired(model)
    dirs = m.decoder_directions(modality)
    if not 0 <= concept < dirs.shape[0]:
        raise ValueError(f"concept must be in [0, {dirs.shape[0]}), got {concept}")
    d = dirs[concept].detach().cpu().double().numpy()
    return d / max(np.linalg.norm(d), 1e-12)


def steer(x_ND, direction_D, strength: float, keep_norm: bool = True) -> np.ndarray:
    """x + s · unit(direction), rescaled to each row's original norm when `keep_norm` (CLIP-style
    embeddings are compared by cosine, so only the direction should change)."""
    x = np.asarray(x_ND, dtype=np.float64)
    d = np.asarray(direction_D, dtype=np.float64)
    out = x + strength * d / max(np.linalg.norm(d), 1e-12)
    if keep_norm:
        out *= np.linalg.norm(x, axis=1, keepdims=True) / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


@torch.no_grad()
def edit_and_decode(
    model, x_ND, source: str, target: str, edits: dict[int, float], mode: str = "add", device="cpu"
) -> np.ndarray:
    """Encode x (a `source` embedding), change concepts (`add` to or `set` their activations),
    decode into the `target` modality."""
    if mode not in ("add", "set"):
        raise ValueError(f"mode must be add or set, got {mode!r}")
    m = as_paired(model)
    z, _ = encode_decode(m, np.asarray(x_ND), source, device)
    for j, v in edits.items():
        if not 0 <= j < z.shape[1]:
            raise ValueError(f"concept must be in [0, {z.shape[1]}), got {j}")
        z[:, j] = z[:, j] + v if mode == "add" else torch.full_like(z[:, j], v)
    return m.decode(z.to(device), target).cpu().numpy()


def nearest(queries_ND, gallery_MD, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(indices [N, k], cosines [N, k]) of each query's k nearest gallery rows."""
    sim = cosine_matrix(queries_ND, gallery_MD)
    val, idx = sim.topk(min(k, sim.shape[1]), dim=1)
    return idx.numpy(), val.numpy()


def probe_score(x_ND, weight_D, bias: float = 0.0) -> np.ndarray:
    """A linear probe's output ⟨x, w⟩ + b (e.g. the LAION aesthetic head)."""
    return np.asarray(x_ND, dtype=np.float64) @ np.asarray(weight_D, dtype=np.float64).reshape(-1) + float(bias)


def steer_rows(
    model,
    store,
    *,
    source: str,
    target: str,
    strength: float,
    concept: int | None = None,
    direction_D: np.ndarray | None = None,
    direction_name: str | None = None,
    rows=None,
    n: int = 3,
    top: int = 5,
    gallery: int = 50000,
    mode: str = "add",
    probe: tuple[np.ndarray, float] | None = None,
    seed: int = 0,
) -> dict:
    """Steer rows of `source` along a concept (or `direction_D`) and judge them in `target` space:
    the `top` nearest `target` rows (of at most `gallery`, sampled) before and after, and a linear
    probe's score before and after. With target ≠ source the concept's activation is edited and
    the code decoded into the target modality (`edit_and_decode`). What `mmsae steer` prints."""
    from mmsae.errors import MmsaeError

    if direction_D is not None and target != source:
        raise MmsaeError("--direction steers within one modality; leave --target out or use --concept")
    if direction_D is None and concept is None:
        raise MmsaeError("say what to steer along: a concept or a direction")
    mods = store.modalities()
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0 or rows.min() < 0 or rows.max() >= len(store):
            raise MmsaeError(f"--rows must be row ids in [0, {len(store)})")
        wrong = rows[mods[rows] != source]
        if len(wrong):
            raise MmsaeError(f"row {int(wrong[0])} is a {mods[wrong[0]]} row, not --source {source}")
    else:
        rows = store.rows(source)[:n]
        if len(rows) == 0:
            raise MmsaeError(f"the store has no {source} rows")
    pool = store.rows(target)
    if len(pool) == 0:
        raise MmsaeError(f"the store has no {target} rows to retrieve")
    if len(pool) > gallery:
        pool = np.sort(np.random.default_rng(seed).choice(pool, gallery, replace=False))
    x = store.get(rows)
    if direction_D is not None:
        moved = steer(x, direction_D, strength)
    else:
        n_concepts = model.cfg.dict_size
        if not 0 <= concept < n_concepts:
            raise MmsaeError(f"--concept must be in [0, {n_concepts}), got {concept}")
        if target == source:
            moved = steer(x, concept_direction(model, concept, source), strength)
        else:
            moved = edit_and_decode(model, x, source, target, {concept: strength}, mode=mode)
    G = store.get(pool)
    meta = store.metadata(["text", "source"])
    texts, sources = meta.column("text").to_pylist(), meta.column("source").to_pylist()

    def show(idx, sims):
        return [
            {"row": int(pool[i]), "cosine": float(s), "text": texts[pool[i]], "source": sources[pool[i]]}
            for i, s in zip(idx, sims)
        ]

    before_i, before_s = nearest(x, G, top)
    after_i, after_s = nearest(moved, G, top)
    out = {
        "concept": concept,
        "direction": direction_name,
        "strength": strength,
        "source": source,
        "target": target,
        "rows": [int(r) for r in rows],
        "results": [],
    }
    for i, r in enumerate(rows):
        item = {
            "row": int(r),
            "text": texts[r],
            "source": sources[r],
            "before": show(before_i[i], before_s[i]),
            "after": show(after_i[i], after_s[i]),
        }
        if probe is not None:
            item["probe_before"] = float(probe_score(x[i : i + 1], *probe)[0])
            item["probe_after"] = float(probe_score(moved[i : i + 1], *probe)[0])
        out["results"].append(item)
    return out
