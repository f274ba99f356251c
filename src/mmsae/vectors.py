"""Row vectors: unit-norm rows, and the cosines that match learned latents to planted concepts.

A low module (numpy only, nothing from mmsae), so `data/` and every layer above it use the same
normalisation instead of a copy each. It takes torch tensors too without importing torch, which
`mmsae.data` does not load: a tensor can only exist once torch is imported.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

EPS = 1e-12
"""Norms are floored here before dividing, so an all-zero row stays zero (its cosine with
anything is 0) instead of becoming NaN."""

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def unit_rows(x: ArrayT) -> ArrayT:
    """`x` with each vector along its last axis scaled to unit norm (a [D] vector, the rows of an
    [N, D] matrix, ...); all-zero vectors stay zero. A torch tensor gives a torch tensor (what
    `torch.nn.functional.normalize(x, dim=-1)` gives), anything else a numpy array, each in its
    own dtype: convert before calling where the dtype matters."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x / x.norm(dim=-1, keepdim=True).clamp_min(EPS)
    x = np.asarray(x)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def decoder_cosines(W_dec_FD, dictionary_CD) -> np.ndarray:
    """[F, C] cosine, in float64, of every latent's decoder direction with every planted concept
    direction: the one rule that matches learned latents to planted concepts (a latent *is* a
    planted concept when the cosine is ≥ 0.9). Both sides are normalised here, so neither needs
    unit rows; a zero decoder row has cosine 0 with everything."""
    W_FD = unit_rows(np.asarray(W_dec_FD, dtype=np.float64))
    d_CD = unit_rows(np.asarray(dictionary_CD, dtype=np.float64))
    return W_FD @ d_CD.T
