"""Cross-modal metrics against direct transcriptions of docs/formulas.md §4 on small inputs."""

import math

import numpy as np
import pytest
import torch

from mmsae.metrics.crossmodal import (
    alignment_quality,
    crossmodal_report,
    retrieval_recall,
    top_decile_overlap,
    zero_shot_accuracy,
)


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def test_alignment_quality_matches_loops(rng):
    zi = np.maximum(rng.standard_normal((7, 5)), 0)
    zt = np.maximum(zi + 0.5 * rng.standard_normal((7, 5)), 0)
    C = np.array([[_cos(zi[i], zt[j]) for j in range(7)] for i in range(7)])
    res = alignment_quality(zi, zt)
    assert res["mean_pair_similarity"] == pytest.approx(np.mean(np.diag(C)), abs=1e-6)
    assert res["min_pair_similarity"] == pytest.approx(np.min(np.diag(C)), abs=1e-6)
    assert res["alignment_score"] == pytest.approx(np.mean(np.diag(C)) / C.mean(), rel=1e-5)


def test_retrieval_recall_matches_brute_force(rng):
    q, g = rng.standard_normal((30, 4)), rng.standard_normal((40, 4))
    qk, gk = rng.integers(0, 10, 30), rng.integers(0, 10, 40)
    gk[:10] = np.arange(10)  # every key present
    res = retrieval_recall(q, g, qk, gk, ks=(1, 3, 5), block=7)
    for k in (1, 3, 5):
        hits = 0
        for i in range(30):
            sims = [_cos(q[i], g[j]) for j in range(40)]
            top = np.argsort(sims)[::-1][:k]
            hits += any(gk[j] == qk[i] for j in top)
        assert res[f"recall@{k}"] == pytest.approx(hits / 30)


def test_retrieval_ties_count_against_the_query():
    zeros = np.zeros((3, 4))  # all-zero codes: every cosine is 0, nothing is retrieved
    res = retrieval_recall(zeros, zeros, np.arange(3), np.arange(3), ks=(1, 2, 3))
    assert res["recall@1"] == 0 and res["recall@2"] == 0 and res["recall@3"] == 1.0


def test_top_decile_overlap_matches_transcription(rng):
    N, F = 50, 6
    zi = np.maximum(rng.standard_normal((N, F)), 0)
    zt = np.where(rng.random((N, F)) < 0.7, zi, np.maximum(rng.standard_normal((N, F)), 0))
    both, overlap = top_decile_overlap(zi, zt)
    for j in range(F):
        top_i = set(np.argsort(-zi[:, j], kind="stable")[:5]) & set(np.nonzero(zi[:, j] > 0)[0])
        top_t = set(np.argsort(-zt[:, j], kind="stable")[:5]) & set(np.nonzero(zt[:, j] > 0)[0])
        assert both[j] == pytest.approx(len(top_i & top_t) / N)
        assert overlap[j] == pytest.approx(len(top_i & top_t) / max(len(top_i), len(top_t), 1))
    same_b, same_o = top_decile_overlap(zi, zi)
    assert np.all(same_o[(zi > 0).any(0)] == 1.0)


def test_zero_shot_accuracy():
    prompts = np.eye(3)
    images = np.array([[1, 0.1, 0], [0, 0, 2], [0.9, 1, 0]])
    assert zero_shot_accuracy(images, [0, 2, 0], prompts) == pytest.approx(2 / 3)


def test_report_on_a_perfect_pair_model(small_synth):
    """The identity 'SAE' (codes = embeddings after a shift) gives the raw embeddings' retrieval."""
    from mmsae.data.store import EmbeddingStore
    from mmsae.models import build_sae

    store = EmbeddingStore(small_synth)
    sae = build_sae("relu", d_in=64, dict_size=64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(64))
        sae.W_dec.copy_(torch.eye(64))
        sae.b_dec.fill_(-10.0)  # shift every coordinate positive, so ReLU keeps everything
    res = crossmodal_report(sae, store, split="val", max_pairs=300)
    assert res.n_pairs == 300
    ret = res.retrieval_retention
    for k, v in ret["recon_both_relative"].items():
        assert v == pytest.approx(1.0, abs=1e-6), k
    assert res.alignment["alignment_score"] > 1.0
    assert not math.isnan(res.alignment["mean_pair_similarity"])
