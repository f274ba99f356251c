"""Scoring analyses against planted ground truth (synthetic stores): which latent is which planted
concept, and whether its name, modality bucket and bridges are the planted ones.

A latent *is* a planted concept when its decoder direction has cosine ≥ 0.9 with it
(`mmsae.vectors.decoder_cosines`, which `recovery` and `shared_concept_recovery` use too); each
planted concept is represented by its best such latent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mmsae.vectors import decoder_cosines

EXPECTED_BUCKET = {"shared": "bimodal", "image": "image", "text": "text"}
"""A shared concept fires on both sides of a pair; an image-only or text-only one on its side only."""


def match_planted(
    W_dec_FD: np.ndarray, dictionary_CD: np.ndarray, threshold: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """(latent_C, cos_C): per planted concept its best latent by decoder cosine (-1 below threshold)."""
    cos = decoder_cosines(W_dec_FD, dictionary_CD)
    best, top = cos.argmax(axis=0), cos.max(axis=0)
    return np.where(top >= threshold, best, -1), top


def latent_names(model, store, threshold: float = 0.9) -> list[str | None] | None:
    """On a store with planted truth, each latent's planted concept (the best by decoder cosine, if
    ≥ `threshold`; image-side decoder for paired SAEs), else None for every latent; None when the
    store has no planted truth."""
    from mmsae.data.synthetic import has_ground_truth, load_ground_truth
    from mmsae.models.paired import as_paired

    if not has_ground_truth(store.root):
        return None
    gt = load_ground_truth(store.root)
    cos = decoder_cosines(as_paired(model).decoder_directions("image").detach().cpu().numpy(), gt.dictionary_CD)
    best = cos.argmax(axis=1)
    return [gt.names[best[i]] if cos[i, best[i]] >= threshold else None for i in range(len(cos))]


def planted_of_latents(latent_C: np.ndarray, F: int) -> np.ndarray:
    """Inverse map: per latent, the planted concept it represents (-1 for none)."""
    out = np.full(F, -1)
    ok = np.nonzero(latent_C >= 0)[0]
    out[latent_C[ok]] = ok
    return out


def naming_accuracy(
    latent_C: np.ndarray, names_F: Sequence[str | None], planted_names: Sequence[str]
) -> dict[str, Any]:
    """Share of recovered planted concepts whose latent got the planted name."""
    rec = np.nonzero(latent_C >= 0)[0]
    hits = [names_F[latent_C[c]] == planted_names[c] for c in rec]
    return {
        "recovered": int(len(rec)),
        "correct": int(sum(hits)),
        "accuracy": float(np.mean(hits)) if hits else float("nan"),
    }


def bucket_accuracy(latent_C: np.ndarray, buckets_F: Sequence[str], kinds: Sequence[str]) -> dict[str, Any]:
    """Share of recovered planted concepts whose latent lands in the bucket of its kind, per kind too."""
    out: dict[str, Any] = {}
    hits_all = []
    for kind, want in EXPECTED_BUCKET.items():
        rec = [c for c in np.nonzero(latent_C >= 0)[0] if kinds[c] == kind]
        hits = [buckets_F[latent_C[c]] == want for c in rec]
        hits_all += hits
        out[kind] = {
            "expected": want,
            "recovered": len(rec),
            "accuracy": float(np.mean(hits)) if hits else float("nan"),
        }
    out["accuracy"] = float(np.mean(hits_all)) if hits_all else float("nan")
    return out


def bridge_recovery(
    latent_C: np.ndarray,
    planted: Sequence[tuple[int, int]],
    found: Sequence[dict[str, Any]],
    significant_only: bool = True,
) -> dict[str, Any]:
    """Share of planted (image concept, text concept) bridges that appear among `found` bridges
    (`image_concept`, `text_concept` latents), and the share of found bridges that are planted."""
    pairs = {
        (int(b["image_concept"]), int(b["text_concept"]))
        for b in found
        if b.get("significant", True) or not significant_only
    }
    want = {(int(latent_C[i]), int(latent_C[t])) for i, t in planted if latent_C[i] >= 0 and latent_C[t] >= 0}
    hit = pairs & want
    return {
        "planted": len(planted),
        "both_sides_recovered": len(want),
        "found": len(hit),
        "recall": len(hit) / len(planted) if planted else float("nan"),
        "precision": len(hit) / len(pairs) if pairs else float("nan"),
        "reported": len(pairs),
    }
