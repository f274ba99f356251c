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

from mmsae.metrics.crossmodal import encode_decode, cosine_matrix
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
def edit_and_decode(model, x_ND, source: str, target: str, edits: dict[int, float], mode: str = "add",
                    device="cpu") -> np.ndarray:
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
