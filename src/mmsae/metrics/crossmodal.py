"""Cross-modal metrics (docs/formulas.md §4): how well one concept space serves images and texts.

Pure functions on code (or embedding) matrices, plus `crossmodal_report`, which reads held-out
pairs from a store and runs all of them for any SAE (paired, pooled, or one per modality).
Rows i of `z_img_NF` and `z_txt_NF` are a matched pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmsae.vectors import unit_rows

KS = (1, 5, 10)


@dataclass(frozen=True)
class ConceptDiscovery:
    """Concepts ranked by how well their image and text top deciles coincide (`concept_discovery`)."""

    mean_overlap_live: float
    """Mean top-decile overlap over the concepts live in both modalities (0.0 when none is)."""
    n_live_both_modalities: int
    """Concepts that fire on some image and on some text."""
    ranked: list[dict[str, Any]]
    """The `top` concepts by overlap, best first: {"concept", "overlap", "both_fraction"} each."""
    overlap_F: np.ndarray
    """[F] every concept's top-decile overlap (the second array of `top_decile_overlap`)."""

    def to_json(self) -> dict[str, Any]:
        """Everything but `overlap_F`."""
        return {
            "mean_overlap_live": self.mean_overlap_live,
            "n_live_both_modalities": self.n_live_both_modalities,
            "ranked": self.ranked,
        }


@dataclass(frozen=True)
class CrossmodalReport:
    """Every cross-modal metric of a model on held-out pairs (`crossmodal_report`). With fewer than
    two pairs nothing is measured: every field but `n_pairs` is None and `to_json()` is
    {"n_pairs": n}."""

    n_pairs: int
    """Held-out pairs measured (one caption per image)."""
    split: str | None = None
    """The split the pairs come from ("val", "train" or "all")."""
    alignment: dict[str, float] | None = None
    """`alignment_quality` of the image and text codes."""
    code_retrieval: dict[str, float] | None = None
    """Recall@k by code cosine, image→text (`i2t_recall@k`) and text→image (`t2i_recall@k`)."""
    concept_discovery: ConceptDiscovery | None = None
    """Concepts ranked by top-decile overlap of their image and text activations."""
    retrieval_retention: dict[str, dict[str, float]] | None = None
    """Embedding-space recall@k with the original embeddings ("original"), with reconstructed
    images, texts or both ("recon_image", "recon_text", "recon_both"), and each of those over the
    original ("…_relative")."""
    z_img_NF: torch.Tensor | None = None
    """[N, F] codes of the sampled pairs' images (on the CPU), row i paired with row i of `z_txt_NF`."""
    z_txt_NF: torch.Tensor | None = None
    """[N, F] codes of the sampled pairs' captions (on the CPU)."""

    @property
    def overlap_F(self) -> np.ndarray | None:
        """[F] every concept's top-decile overlap (None when nothing was measured)."""
        return None if self.concept_discovery is None else self.concept_discovery.overlap_F

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe sections (no codes), in the order `mmsae eval` and metrics.json write them."""
        if self.concept_discovery is None:
            return {"n_pairs": self.n_pairs}
        return {
            "n_pairs": self.n_pairs,
            "split": self.split,
            "alignment": self.alignment,
            "code_retrieval": self.code_retrieval,
            "concept_discovery": self.concept_discovery.to_json(),
            "retrieval_retention": self.retrieval_retention,
        }


def cosine_matrix(a_NF, b_MF) -> torch.Tensor:
    """[N, M] cosines between rows of a and rows of b, in float32 (all-zero rows: cosine 0)."""
    a, b = torch.as_tensor(a_NF, dtype=torch.float32), torch.as_tensor(b_MF, dtype=torch.float32)
    return unit_rows(a) @ unit_rows(b).T


def alignment_quality(z_img_NF, z_txt_NF) -> dict[str, float]:
    """Code-space cosine matrix of images vs texts over N pairs.

    mean/min pair similarity: the diagonal; alignment score: mean diagonal / mean of all entries
    (1 = pairs no closer than random pairs; higher is better).
    """
    C = cosine_matrix(z_img_NF, z_txt_NF).double()
    diag = C.diagonal()
    mean_all = float(C.mean())
    return {
        "mean_pair_similarity": float(diag.mean()),
        "min_pair_similarity": float(diag.min()),
        "mean_similarity": mean_all,
        "alignment_score": float(diag.mean()) / mean_all if mean_all > 0 else math.inf,
    }


def retrieval_recall(
    query_NF, gallery_MF, query_keys_N, gallery_keys_M, ks: Sequence[int] = KS, block: int = 2048
) -> dict[str, float]:
    """Recall@k by cosine: a query scores if an item with its key is among its k nearest.

    Ties count against the query (an all-zero code retrieves nothing), and the gallery is
    scanned in blocks of queries, so memory is block × M.
    """
    q = unit_rows(torch.as_tensor(query_NF, dtype=torch.float32))
    g = unit_rows(torch.as_tensor(gallery_MF, dtype=torch.float32))
    qk = torch.as_tensor(np.asarray(query_keys_N))
    gk = torch.as_tensor(np.asarray(gallery_keys_M))
    hits = {k: 0 for k in ks}
    for lo in range(0, len(q), block):
        sim = q[lo : lo + block] @ g.T
        correct = qk[lo : lo + block, None] == gk[None, :]
        if not bool(correct.any(dim=1).all()):
            raise ValueError("every query needs at least one gallery item with its key")
        best = sim.masked_fill(~correct, -math.inf).max(dim=1).values
        n_before = ((sim >= best[:, None]) & ~correct).sum(dim=1)
        for k in ks:
            hits[k] += int((n_before < k).sum())
    return {f"recall@{k}": hits[k] / max(len(q), 1) for k in ks}


def top_decile_overlap(z_img_NF, z_txt_NF) -> tuple[np.ndarray, np.ndarray]:
    """Per concept: (share of pairs in the top decile of activation on both sides, that share over
    the size of a top decile, so 1 means the image's and the text's top pairs coincide).

    A concept's top decile holds the pairs whose activation is ≥ its 90th percentile and > 0, so a
    concept firing on fewer than 10% of pairs uses all pairs where it fires.
    """
    zi = torch.as_tensor(z_img_NF, dtype=torch.float32)
    zt = torch.as_tensor(z_txt_NF, dtype=torch.float32)
    N = len(zi)
    kth = N - max(1, math.ceil(0.1 * N)) + 1  # the threshold is the smallest of the top 10%
    top = []
    for z in (zi, zt):
        thr_F = z.kthvalue(kth, dim=0).values
        top.append((z >= thr_F) & (z > 0))
    both_F = (top[0] & top[1]).sum(dim=0).double()
    size_F = torch.maximum(top[0].sum(dim=0), top[1].sum(dim=0)).double().clamp_min(1)
    return (both_F / N).numpy(), (both_F / size_F).numpy()


def concept_discovery(z_img_NF, z_txt_NF, top: int = 20) -> ConceptDiscovery:
    """Concepts ranked by top-decile overlap; live = fires on some image and some text."""
    both, overlap = top_decile_overlap(z_img_NF, z_txt_NF)
    zi = torch.as_tensor(z_img_NF)
    zt = torch.as_tensor(z_txt_NF)
    live = ((zi > 0).any(dim=0) & (zt > 0).any(dim=0)).numpy()
    order = np.argsort(-overlap, kind="stable")[:top]
    return ConceptDiscovery(
        mean_overlap_live=float(overlap[live].mean()) if live.any() else 0.0,
        n_live_both_modalities=int(live.sum()),
        ranked=[{"concept": int(j), "overlap": float(overlap[j]), "both_fraction": float(both[j])} for j in order],
        overlap_F=overlap,
    )


def zero_shot_accuracy(images_ND, labels_N, prompts_CD) -> float:
    """Share of images whose most similar class prompt (cosine) is their label."""
    pred = cosine_matrix(images_ND, prompts_CD).argmax(dim=1).numpy()
    return float((pred == np.asarray(labels_N)).mean())


@torch.no_grad()
def encode_decode(model, x_ND: np.ndarray, modality: str, device, block: int = 4096):
    """(codes [N, F], reconstructions [N, D]) of a paired model on rows of one modality, in blocks."""
    codes, recon = [], []
    for lo in range(0, len(x_ND), block):
        x = torch.as_tensor(
            np.array(x_ND[lo : lo + block], dtype=np.float32), device=device
        )  # a copy: input may be a read-only memmap
        out = model(x, modality)
        codes.append(out.codes_BF.cpu())
        recon.append(out.x_hat_BD.cpu())
    return torch.cat(codes), torch.cat(recon)


@torch.no_grad()
def zero_shot_retention(model, images_ND, labels_N, prompts_CD, device="cpu") -> dict[str, float]:
    """Zero-shot accuracy with images and/or prompts replaced by their reconstructions (docs/formulas.md §4)."""
    from mmsae.models.paired import as_paired

    m = as_paired(model)
    _, img_hat = encode_decode(m, np.asarray(images_ND), "image", device)
    _, txt_hat = encode_decode(m, np.asarray(prompts_CD), "text", device)
    orig = zero_shot_accuracy(images_ND, labels_N, prompts_CD)
    res = {
        "original": orig,
        "recon_image": zero_shot_accuracy(img_hat, labels_N, prompts_CD),
        "recon_text": zero_shot_accuracy(images_ND, labels_N, txt_hat),
        "recon_both": zero_shot_accuracy(img_hat, labels_N, txt_hat),
    }
    for k in ("recon_image", "recon_text", "recon_both"):
        res[f"{k}_relative"] = res[k] / orig if orig > 0 else math.nan
    return res


def held_out_pairs(
    store, split: str = "val", val_fraction: float = 0.1, max_pairs: int = 5000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(image rows, text rows): one caption per image (its first), at most `max_pairs` sampled."""
    from mmsae.data.stream import split_mask

    img_rows, txt_rows = store.pairs()
    keep = split_mask(store.pair_ids()[txt_rows], txt_rows, split, val_fraction)
    img_rows, txt_rows = img_rows[keep], txt_rows[keep]
    _, first = np.unique(img_rows, return_index=True)
    img_rows, txt_rows = img_rows[first], txt_rows[first]
    if len(img_rows) > max_pairs:
        sel = np.sort(np.random.default_rng(seed).choice(len(img_rows), max_pairs, replace=False))
        img_rows, txt_rows = img_rows[sel], txt_rows[sel]
    return img_rows, txt_rows


@torch.no_grad()
def crossmodal_report(
    model, store, split: str = "val", val_fraction: float = 0.1, max_pairs: int = 5000, seed: int = 0, device="cpu"
) -> CrossmodalReport:
    """Every cross-modal metric of `model` on held-out pairs of `store`.

    `model`: a paired SAE, a single SAE (used for both modalities), or {"image": sae, "text": sae}.
    Retrieval galleries are the sampled pairs themselves (one caption per image), so recall@k is
    comparable across models only at equal `max_pairs`.
    """
    from mmsae.models.paired import as_paired

    m = as_paired(model)
    img_rows, txt_rows = held_out_pairs(store, split, val_fraction, max_pairs, seed)
    if len(img_rows) < 2:
        return CrossmodalReport(n_pairs=int(len(img_rows)))
    X_img, X_txt = store.get(img_rows), store.get(txt_rows)
    z_img, img_hat = encode_decode(m, X_img, "image", device)
    z_txt, txt_hat = encode_decode(m, X_txt, "text", device)
    keys = np.arange(len(img_rows))

    def both_ways(a, b):
        i2t = retrieval_recall(a, b, keys, keys)
        t2i = retrieval_recall(b, a, keys, keys)
        return {**{f"i2t_{k}": v for k, v in i2t.items()}, **{f"t2i_{k}": v for k, v in t2i.items()}}

    orig = both_ways(X_img, X_txt)
    retention = {
        "original": orig,
        "recon_image": both_ways(img_hat, X_txt),
        "recon_text": both_ways(X_img, txt_hat),
        "recon_both": both_ways(img_hat, txt_hat),
    }
    for name in ("recon_image", "recon_text", "recon_both"):
        retention[f"{name}_relative"] = {
            k: (v / orig[k] if orig[k] > 0 else math.nan) for k, v in retention[name].items()
        }
    return CrossmodalReport(
        n_pairs=int(len(img_rows)),
        split=split,
        alignment=alignment_quality(z_img, z_txt),
        code_retrieval=both_ways(z_img, z_txt),
        concept_discovery=concept_discovery(z_img, z_txt),
        retrieval_retention=retention,
        z_img_NF=z_img,
        z_txt_NF=z_txt,
    )
