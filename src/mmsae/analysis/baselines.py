"""Linear baselines with one small interface shared with SAEs: `fit(X)`, `encode(X)`, `decode(Z)`.

Papadimitriou et al. (2025) compare SAEs against classic linear decompositions as Pareto curves of
reconstruction against L0. Every method here is a scikit-learn estimator behind the same three
calls, so the Pareto code scores all of them with the same metric functions:

- `pca`: PCA with L0 components (dense codes, L0 = n_components).
- `ica`: FastICA with L0 components (dense codes).
- `nmf`: NMF on *shifted* data: X − m, m the per-dimension minimum of the training data, so the
  input is non-negative (we chose the shift over Semi-NMF: scikit-learn has NMF, not Semi-NMF);
  decode adds m back. Codes are non-negative and may hold zeros.
- `kmeans`: MiniBatchKMeans; a row's code is 1 on its nearest centroid (L0 = 1), decode returns
  the centroid, so the number of clusters is the dictionary size.
- `dictionary`: MiniBatchDictionaryLearning with OMP coding of `k` atoms (L0 ≤ k).
- `sae`: a trained SAE (fit does nothing; it was trained by `mmsae train`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Baseline:
    """One decomposition method at one size; `params` are passed to the scikit-learn estimator."""

    method: str
    size: int
    """Components (pca, ica, nmf), clusters (kmeans) or atoms (dictionary)."""
    k: int | None = None
    """Non-zeros per row for `dictionary` (OMP)."""
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    shift_D: np.ndarray | None = None

    def fit(self, X_ND: np.ndarray) -> Baseline:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.decomposition import NMF, PCA, FastICA, MiniBatchDictionaryLearning

        X = np.asarray(X_ND, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the scores speak for themselves
            if self.method == "pca":
                self.model = PCA(n_components=self.size, random_state=self.seed, **self.params).fit(X)
            elif self.method == "ica":
                self.model = FastICA(
                    n_components=self.size, random_state=self.seed, max_iter=400, whiten="unit-variance", **self.params
                ).fit(X)
            elif self.method == "nmf":
                self.shift_D = X.min(axis=0)
                self.model = NMF(
                    n_components=self.size, init="nndsvda", max_iter=400, random_state=self.seed, **self.params
                ).fit(X - self.shift_D)
            elif self.method == "kmeans":
                self.model = MiniBatchKMeans(
                    n_clusters=self.size, random_state=self.seed, n_init=3, batch_size=4096, **self.params
                ).fit(X)
            elif self.method == "dictionary":
                self.model = MiniBatchDictionaryLearning(
                    n_components=self.size,
                    transform_algorithm="omp",
                    transform_n_nonzero_coefs=self.k,
                    random_state=self.seed,
                    batch_size=256,
                    max_iter=20,
                    **self.params,
                ).fit(X)
            else:
                raise ValueError(f"unknown baseline {self.method!r}")
        return self

    def encode(self, X_ND: np.ndarray) -> np.ndarray:
        X = np.asarray(X_ND, dtype=np.float64)
        if self.method == "nmf":
            return self.model.transform(np.maximum(X - self.shift_D, 0.0))
        if self.method == "kmeans":
            Z = np.zeros((len(X), self.size))
            Z[np.arange(len(X)), self.model.predict(X)] = 1.0
            return Z
        return self.model.transform(X)

    def decode(self, Z_NF: np.ndarray) -> np.ndarray:
        if self.method == "nmf":
            return Z_NF @ self.model.components_ + self.shift_D
        if self.method == "kmeans":
            return Z_NF @ self.model.cluster_centers_
        if self.method == "dictionary":
            return Z_NF @ self.model.components_
        return self.model.inverse_transform(Z_NF)

    @property
    def label(self) -> str:
        return f"{self.method}-{self.size}" + (f"-k{self.k}" if self.k else "")


@dataclass
class SAEMethod:
    """A trained SAE behind the baseline interface (rows of one modality, or routed by `modality`)."""

    sae: Any
    label: str
    modality: str | None = None

    def fit(self, X_ND) -> SAEMethod:
        return self

    @torch.no_grad()
    def encode(self, X_ND) -> np.ndarray:
        x = torch.as_tensor(np.asarray(X_ND, dtype=np.float32))
        if getattr(self.sae, "paired", False):
            return self.sae.encode(x, self.modality or "image").numpy()
        return self.sae.encode(x).numpy()

    @torch.no_grad()
    def decode(self, Z_NF) -> np.ndarray:
        z = torch.as_tensor(np.asarray(Z_NF, dtype=np.float32))
        if getattr(self.sae, "paired", False):
            return self.sae.decode(z, self.modality or "image").numpy()
        return self.sae.decode(z).numpy()


def score(method, X_ND: np.ndarray) -> dict[str, float]:
    """Held-out scores of any method, with the same metric functions as `mmsae eval`."""
    from mmsae.metrics.reconstruction import fvu, r2_global

    Z = method.encode(X_ND)
    X_hat = method.decode(Z)
    x, xh = torch.as_tensor(np.asarray(X_ND, dtype=np.float64)), torch.as_tensor(np.asarray(X_hat, dtype=np.float64))
    f = fvu(x, xh)
    return {"fvu": f, "r2": 1.0 - f, "r2_global": r2_global(x, xh), "l0": float((np.abs(Z) > 1e-12).sum(axis=1).mean())}
