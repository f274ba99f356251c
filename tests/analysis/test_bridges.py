"""Bridge Score: the fast implementation against the formula, and planted bridges found."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from mmsae.analysis.bridges import analyze_bridges, bridge_entries, bridge_matrix_dense, bridge_top, pair_codes
from mmsae.data.synthetic import load_ground_truth
from tests.analysis.conftest import best_latents


def test_fast_equals_the_formula_on_a_tiny_input(rng):
    N, F, D = 40, 12, 5
    zi = np.where(rng.random((N, F)) < 0.3, rng.random((N, F)), 0.0)
    zt = np.where(rng.random((N, F)) < 0.3, rng.random((N, F)), 0.0)
    Di, Dt = rng.standard_normal((F, D)), rng.standard_normal((F, D))
    # B_ij = (1/N) Σ_n z_img[n,i] z_txt[n,j] cos(d_i, d_j), written out with loops
    B = np.zeros((F, F))
    for i in range(F):
        for j in range(F):
            c = Di[i] @ Dt[j] / (np.linalg.norm(Di[i]) * np.linalg.norm(Dt[j]))
            B[i, j] = sum(zi[n, i] * zt[n, j] for n in range(N)) / N * c
    np.testing.assert_allclose(bridge_matrix_dense(zi, zt, Di, Dt), B, atol=1e-12)
    res = bridge_top(sp.csr_matrix(zi), sp.csr_matrix(zt), Di, Dt, top=10, block=5)
    off = B.copy()
    np.fill_diagonal(off, -np.inf)
    want = np.sort(off.ravel())[::-1][:10]
    np.testing.assert_allclose([t["score"] for t in res["top"]], want, rtol=1e-5)
    for t in res["top"]:
        assert B[t["image_concept"], t["text_concept"]] == pytest.approx(t["score"], rel=1e-5)
    pos = np.maximum(B, 0)
    np.fill_diagonal(pos, 0)
    np.testing.assert_allclose(res["mass_out"], pos.sum(1), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(res["mass_in"], pos.sum(0), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(res["self"], np.diag(B), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(
        bridge_entries(sp.csr_matrix(zi), sp.csr_matrix(zt), Di, Dt, [0, 3], [5, 3]), [B[0, 5], B[3, 3]], rtol=1e-5
    )


def test_planted_bridges_rank_above_unrelated_pairs(bridge_synth):
    store, sae = bridge_synth
    gt = load_ground_truth(store.root)
    best, cos = best_latents(sae.W_dec.detach().numpy(), gt.dictionary_CD)
    assert len(gt.bridges) == 8 and all(cos[i] > 0.9 and cos[t] > 0.9 for i, t in gt.bridges)
    Zi, Zt, _, _ = pair_codes(sae, store)
    kinds = np.array(gt.kinds)
    pos = [(best[i], best[t]) for i, t in gt.bridges]
    neg = [
        (best[i], best[t])
        for i in np.nonzero(kinds == "image")[0]
        for t in np.nonzero(kinds == "text")[0]
        if (i, t) not in gt.bridges
    ]
    W = sae.W_dec.detach().numpy()
    scores = bridge_entries(Zi, Zt, W, W, [p[0] for p in pos + neg], [p[1] for p in pos + neg])
    auroc = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], scores)
    assert auroc >= 0.95, auroc


def test_analysis_reports_them_as_significant(bridge_synth, tmp_path):
    store, sae = bridge_synth
    gt = load_ground_truth(store.root)
    best, _ = best_latents(sae.W_dec.detach().numpy(), gt.dictionary_CD)
    res = analyze_bridges(sae, store, out=tmp_path, top=20, shuffles=3)
    planted = {(int(best[i]), int(best[t])) for i, t in gt.bridges}
    top8 = {(r["image_concept"], r["text_concept"]) for r in res["top"][:8]}
    assert top8 == planted
    for r in res["top"][:8]:
        assert r["significant"] and r["bucket_image_side"] == "image" and r["bucket_text_side"] == "text"
        assert r["examples"] and r["examples"][0]["caption"]
    # shuffling captions keeps only chance co-firing (frequent concepts meeting at random)
    assert res["null"]["threshold"] < 0.75 * min(r["score"] for r in res["top"][:8])
    assert not any(r["significant"] for r in res["top"][12:])
    for ext in ("json", "png", "svg", "md"):
        assert (tmp_path / f"bridges.{ext}").stat().st_size > 0
