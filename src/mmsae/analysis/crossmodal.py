"""Cross-modal checks against planted ground truth: shared concepts recovered as single latents,
and the synthetic zero-shot task."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmsae.data.synthetic import GroundTruth, SynthConfig, fresh_pairs, zero_shot_set
from mmsae.metrics.crossmodal import encode_decode, zero_shot_retention
from mmsae.models.paired import as_paired
from mmsae.vectors import decoder_cosines


@torch.no_grad()
def shared_concept_recovery(
    model,
    cfg: SynthConfig,
    gt: GroundTruth,
    threshold: float = 0.9,
    cofire: float = 0.5,
    n_pairs: int = 20000,
    min_support: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Share of planted shared concepts that one latent captures on both sides of a pair.

    Concept c counts as recovered by latent j when j's image-decoder and text-decoder directions
    both have cosine ≥ `threshold` with c's planted direction, and, on fresh pairs where c is
    present in both the image and the caption, j fires on both sides in at least `cofire` of them.
    Concepts present in fewer than `min_support` fresh pairs are left out (reported as such).
    """
    m = as_paired(model)
    kinds = np.array(gt.kinds)
    shared = np.nonzero(kinds == "shared")[0]
    d_CD = gt.dictionary_CD[shared]
    cos = {
        mod: decoder_cosines(m.decoder_directions(mod).detach().cpu().double().numpy(), d_CD)
        for mod in ("image", "text")
    }
    score_FC = np.minimum(cos["image"], cos["text"])
    best_C = score_FC.argmax(axis=0)
    best_cos_C = score_FC.max(axis=0)

    img, txt, code_img, code_txt = fresh_pairs(cfg, gt, n_pairs, seed)
    z_img, _ = encode_decode(m, img, "image", "cpu")
    z_txt, _ = encode_decode(m, txt, "text", "cpu")
    present_NC = (code_img[:, shared] > 0) & (code_txt[:, shared] > 0)
    support_C = present_NC.sum(axis=0)
    fires_NC = ((z_img[:, best_C] > 0) & (z_txt[:, best_C] > 0)).numpy()
    cofire_C = np.where(support_C > 0, (fires_NC & present_NC).sum(axis=0) / np.maximum(support_C, 1), 0.0)
    evaluable = support_C >= min_support
    recovered = (best_cos_C >= threshold) & (cofire_C >= cofire) & evaluable
    return {
        "shared_recovery": float(recovered.sum() / max(evaluable.sum(), 1)),
        "decoder_recovery": float((best_cos_C[evaluable] >= threshold).mean()) if evaluable.any() else 0.0,
        "n_shared": int(len(shared)),
        "n_evaluable": int(evaluable.sum()),
        "threshold": threshold,
        "cofire": cofire,
        "per_concept": [
            {
                "concept": int(c),
                "latent": int(best_C[i]),
                "cosine": float(best_cos_C[i]),
                "cofire": float(cofire_C[i]),
                "support": int(support_C[i]),
                "recovered": bool(recovered[i]),
            }
            for i, c in enumerate(shared)
        ],
    }


def synthetic_zero_shot(
    model, cfg: SynthConfig, gt: GroundTruth, n: int = 5000, n_classes: int = 20, seed: int = 0
) -> dict[str, float]:
    """Zero-shot retention on the planted task of `zero_shot_set`."""
    images, labels, prompts, _ = zero_shot_set(cfg, gt, n, n_classes, seed)
    return zero_shot_retention(model, images, labels, prompts)
