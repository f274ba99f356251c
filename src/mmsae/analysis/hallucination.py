"""Hallucination detection and mitigation with concepts (docs/formulas.md §7).

A caption hallucinates when it carries concepts its image lacks. The detector compares the two
codes concept by concept. Only concepts that can be seen in an image matter: a text-only concept
(style of writing, a caption template) is absent from every image and would flag every caption.
So each concept gets a weight learned from matched pairs alone (no corruption labels):

    w_j = P(z_img[j] > 0 | z_txt[j] > 0)     on matched reference pairs,

codes are put on a common scale per modality (ẑ = z / mean non-zero activation), and

    score = Σ_j w_j · max(0, ẑ_txt[j] − ẑ_img[j]) / Σ_j w_j · ẑ_txt[j]   ∈ [0, 1],

the share of the caption's groundable concept mass that its image does not show. The decision
threshold is the one with the best F1 on a labelled calibration half; the raw-cosine baseline
("CLIP score") gets its threshold the same way, so both are compared on the other half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmsae.metrics.crossmodal import cosine_matrix, encode_decode
from mmsae.models.paired import as_paired


@dataclass(frozen=True)
class HallucinationDetector:
    """Per-concept statistics of matched pairs; see the module docstring."""

    weight_F: np.ndarray
    """P(concept fires on the image | it fires on the caption)."""
    scale_image_F: np.ndarray
    """Mean non-zero activation on images (1 where never active)."""
    scale_text_F: np.ndarray
    """Mean non-zero activation on captions (1 where never active)."""

    @classmethod
    def fit(cls, model, img_ND: np.ndarray, txt_ND: np.ndarray, device="cpu") -> HallucinationDetector:
        m = as_paired(model)
        z_img, _ = encode_decode(m, img_ND, "image", device)
        z_txt, _ = encode_decode(m, txt_ND, "text", device)
        on_t, on_i = (z_txt > 0), (z_img > 0)
        weight = ((on_t & on_i).sum(0).double() / on_t.sum(0).clamp_min(1).double()).numpy()

        def scale(z, on):
            s = (z.sum(0).double() / on.sum(0).clamp_min(1).double()).numpy()
            return np.where(s > 0, s, 1.0)

        return cls(weight, scale(z_img, on_i), scale(z_txt, on_t))

    def score_codes(self, z_img_NF, z_txt_NF) -> np.ndarray:
        zi = np.asarray(z_img_NF, dtype=np.float64) / self.scale_image_F
        zt = np.asarray(z_txt_NF, dtype=np.float64) / self.scale_text_F
        missing = (np.maximum(zt - zi, 0.0) * self.weight_F).sum(axis=1)
        mass = (zt * self.weight_F).sum(axis=1)
        return missing / np.maximum(mass, 1e-12)

    def score(self, model, img_ND, txt_ND, device="cpu") -> np.ndarray:
        """Per pair, in [0, 1]: higher = more of the caption is absent from the image."""
        m = as_paired(model)
        z_img, _ = encode_decode(m, np.asarray(img_ND), "image", device)
        z_txt, _ = encode_decode(m, np.asarray(txt_ND), "text", device)
        return self.score_codes(z_img.numpy(), z_txt.numpy())


def clip_score(img_ND, txt_ND) -> np.ndarray:
    """The raw-embedding baseline: cosine of image and caption (high = matched)."""
    a = torch.as_tensor(np.asarray(img_ND), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(txt_ND), dtype=torch.float32)
    return torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()


def best_f1_threshold(scores_N, labels_N) -> float:
    """The threshold t (flag when score ≥ t) with the highest F1 on these labelled scores."""
    s = np.asarray(scores_N, dtype=np.float64)
    y = np.asarray(labels_N).astype(bool)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    f1 = 2 * tp / np.maximum(tp + fp + y.sum(), 1)
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # a threshold flags every tied score
    f1 = np.where(last_of_tie, f1, -1.0)
    return float(s_sorted[int(np.argmax(f1))])


def detection_metrics(scores_N, labels_N, threshold: float) -> dict[str, float]:
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    y = np.asarray(labels_N).astype(int)
    pred = (np.asarray(scores_N) >= threshold).astype(int)
    p, r, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    return {
        "precision": float(p),
        "recall": float(r),
        "f1": float(f1),
        "auroc": float(roc_auc_score(y, scores_N)),
        "threshold": float(threshold),
    }


def compare_with_clip_score(sae_scores_N, clip_scores_N, labels_N, seed: int = 0) -> dict[str, Any]:
    """Fit each method's threshold on a random half, report both on the other half."""
    labels_N = np.asarray(labels_N)
    calib = np.random.default_rng([seed, 12]).random(len(labels_N)) < 0.5
    for half, name in ((calib, "calibration"), (~calib, "test")):
        if len(np.unique(labels_N[half])) < 2:
            raise ValueError(f"the {name} half holds only one class; use more labelled pairs")
    out = {}
    for name, s in (("sae", np.asarray(sae_scores_N)), ("clip_score", -np.asarray(clip_scores_N))):
        t = best_f1_threshold(s[calib], labels_N[calib])
        out[name] = detection_metrics(s[~calib], labels_N[~calib], t)
    out["clip_score"]["threshold"] = -out["clip_score"]["threshold"]  # flag when cosine ≤ this
    out["n_calibration"], out["n_test"] = int(calib.sum()), int((~calib).sum())
    return out


@torch.no_grad()
def mitigate(model, img_ND, txt_ND, n_concepts: int = 4, beta: float = 1.0, device="cpu") -> np.ndarray:
    """Corrected caption embeddings: on the `n_concepts` concepts where the caption's code differs
    most from the image's, z_txt' = (1 − β) z_txt + β z_img; then decode into the text space."""
    m = as_paired(model)
    z_img, _ = encode_decode(m, np.asarray(img_ND), "image", device)
    z_txt, _ = encode_decode(m, np.asarray(txt_ND), "text", device)
    idx = (z_txt - z_img).abs().topk(min(n_concepts, z_txt.shape[1]), dim=1).indices
    z_new = z_txt.clone()
    mixed = (1 - beta) * z_txt.gather(1, idx) + beta * z_img.gather(1, idx)
    z_new.scatter_(1, idx, mixed)
    return m.decode(z_new.to(device), "text").cpu().numpy()


def own_image_retrieval(txt_ND, img_MD, own_N) -> dict[str, float]:
    """Text i against all M images: recall@1 of its own image `own_N[i]` and that image's mean rank (1 = best)."""
    sim = cosine_matrix(txt_ND, img_MD)
    own = sim[torch.arange(len(sim)), torch.as_tensor(np.asarray(own_N))]
    rank = (sim > own[:, None]).sum(dim=1) + 1
    return {"recall@1": float((rank == 1).double().mean()), "mean_rank": float(rank.double().mean())}


def mitigation_effect(model, img_ND, txt_ND, labels_N, n_concepts: int = 4, beta: float = 1.0) -> dict[str, Any]:
    """How well corrupted captions retrieve their own image, before and after mitigation."""
    bad = np.asarray(labels_N).astype(bool)
    own = np.nonzero(bad)[0]
    fixed = mitigate(model, img_ND[bad], txt_ND[bad], n_concepts, beta)
    return {
        "before": own_image_retrieval(txt_ND[bad], img_ND, own),
        "after": own_image_retrieval(fixed, img_ND, own),
        "n_concepts": n_concepts,
        "beta": beta,
        "n_corrupted": int(bad.sum()),
    }
