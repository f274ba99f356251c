"""Modality scores, buckets, probe and single-concept classifiers."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmsae.analysis.modality import _auroc_columns, _best_accuracy_columns, analyze_modality, buckets, modality_scores
from mmsae.data.synthetic import load_ground_truth
from tests.analysis.conftest import best_latents


def test_score_and_buckets_transcribe_the_formula():
    e_img = np.array([1.0, 0.0, 0.5, 0.0, 0.95])
    e_txt = np.array([0.0, 2.0, 0.5, 0.0, 0.05])
    mu = modality_scores(e_img, e_txt)
    np.testing.assert_allclose(mu[[0, 1, 2, 4]], [1.0, 0.0, 0.5, 0.95])
    assert np.isnan(mu[3])
    assert list(buckets(mu)) == ["image", "text", "bimodal", "dead", "image"]


def test_column_auroc_and_best_accuracy_match_direct_computation(rng):
    y = (rng.random(60) < 0.4).astype(int)
    S = rng.standard_normal((60, 5)) + y[:, None] * np.array([0, 1, -1, 3, 0.2])
    S[:, 4] = np.round(S[:, 4], 1)  # ties
    auc = _auroc_columns(S, y)
    acc = _best_accuracy_columns(S, y)
    for f in range(5):
        assert auc[f] == pytest.approx(roc_auc_score(y, S[:, f]))
        best = 0.0
        for t in np.r_[-np.inf, np.unique(S[:, f])]:
            above = S[:, f] > t
            best = max(best, (above == y).mean(), (above != y).mean())
        assert acc[f] == pytest.approx(best)


def test_planted_concepts_land_in_the_right_bucket(bridge_synth, tmp_path):
    store, sae = bridge_synth
    gt = load_ground_truth(store.root)
    res = analyze_modality(sae, store, out=tmp_path)
    best, cos = best_latents(sae.W_dec.detach().numpy(), gt.dictionary_CD)
    want = {"shared": "bimodal", "image": "image", "text": "text"}
    got = [res["per_concept"][best[c]]["bucket"] == want[k] for c, k in enumerate(gt.kinds) if cos[c] >= 0.9]
    assert len(got) >= 0.9 * len(gt.kinds) and np.mean(got) >= 0.95, np.mean(got)
    assert res["probe"]["accuracy"] > 0.95  # the synthetic modality gap is easy to see
    s = res["single_concept_classifiers"]
    assert s["fraction_below_probe"] > 0.9 and s["median_accuracy"] < res["probe"]["accuracy"]
    assert 0 < res["cos_with_modality_direction"]["fraction_nearly_orthogonal"] < 1
    for ext in ("json", "png", "svg", "md"):
        assert (tmp_path / f"modality.{ext}").stat().st_size > 0
