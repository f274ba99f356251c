"""SpLiCE (Bhalla et al. 2024, docs/formulas.md §6): an embedding as a sparse non-negative combination of
vocabulary concepts — a vocabulary-only baseline for the SAE's decomposition.

    min_{w ≥ 0}  ‖Cᵀ w − z‖² + λ ‖w‖₁,

C the vocabulary embeddings centred (by the mean of the store's embeddings of that modality) and
normalised, z the centred, normalised embedding. Solved per row by scikit-learn's Lasso with
`positive=True` (its objective scales the squared error by 1 / (2·D); λ is set on that scale). The
reconstruction is normalise(Cᵀ w) + mean, compared with the input by cosine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmsae.vectors import unit_rows


def splice_decompose(
    X_ND: np.ndarray,
    vocab_TD: np.ndarray,
    mean_D: np.ndarray,
    l1: float = 0.25,
    terms: Sequence[str] | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """Weights [N, T] (sparse, non-negative), reconstruction cosine and L0 per row, top terms per row."""
    from sklearn.linear_model import Lasso

    C = unit_rows(np.asarray(vocab_TD, np.float64) - mean_D)
    Z = unit_rows(np.asarray(X_ND, np.float64) - mean_D)
    D = Z.shape[1]
    lasso = Lasso(alpha=l1 / (2 * D), positive=True, fit_intercept=False, max_iter=5000)
    W = np.zeros((len(Z), len(C)))
    for n, z in enumerate(Z):
        W[n] = lasso.fit(C.T, z).coef_
    recon = unit_rows(W @ C) + mean_D
    x = np.asarray(X_ND, np.float64)
    cos = (recon * x).sum(1) / np.maximum(np.linalg.norm(recon, axis=1) * np.linalg.norm(x, axis=1), 1e-12)
    out = {"weights": W, "cosine": cos, "l0": (W > 0).sum(1)}
    if terms is not None:
        out["top_terms"] = [
            [(terms[j], float(W[n, j])) for j in np.argsort(-W[n])[:top] if W[n, j] > 0] for n in range(len(W))
        ]
    return out
