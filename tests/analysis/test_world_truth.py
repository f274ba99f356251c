"""Scores against the scene world's attributes (`mmsae.analysis.world_truth`), on constructed answers:
each function is checked against a direct computation (scikit-learn's AUROC, a loop) or against a
case whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmsae.analysis import world_truth as wt


def test_auroc_matrix_equals_sklearn_per_column_with_ties():
    rng = np.random.default_rng(0)
    scores_NF = rng.integers(0, 4, size=(200, 5)).astype(float)  # many ties, like sparse codes
    scores_NF[:, 2] = 0.0  # a constant column: AUROC 0.5
    y_NC = rng.random((200, 3)) < 0.3
    auc = wt.auroc_matrix(scores_NF, y_NC)
    assert auc.shape == (3, 5)
    for c in range(3):
        for f in range(5):
            assert auc[c, f] == pytest.approx(roc_auc_score(y_NC[:, c], scores_NF[:, f]))


def test_auroc_matrix_is_nan_for_a_label_with_one_class():
    auc = wt.auroc_matrix(np.arange(10.0)[:, None], np.c_[np.zeros(10, bool), np.ones(10, bool)])
    assert np.isnan(auc).all()


def test_best_columns_signed_and_unsigned():
    auc_CF = np.array([[0.6, 0.05, 0.7], [np.nan, np.nan, np.nan]])
    best, col = wt.best_columns(auc_CF, signed=True)
    assert best[0] == pytest.approx(0.7) and col[0] == 2 and np.isnan(best[1])
    best, col = wt.best_columns(auc_CF, signed=False)
    assert best[0] == pytest.approx(0.95) and col[0] == 1  # read the other way up


def _planted(n=400, seed=0):
    """Labels for 3 values and codes where latent 2 fires exactly on value 0 and latent 0 on value 1;
    value 2 is noise for every latent. The raw space has value 0 on dim 1, negated."""
    rng = np.random.default_rng(seed)
    y_NC = rng.random((n, 3)) < 0.4
    codes_NF = np.zeros((n, 4))
    codes_NF[:, 2] = y_NC[:, 0] * (1 + rng.random(n))
    codes_NF[:, 0] = y_NC[:, 1] * (1 + rng.random(n))
    codes_NF[:, 3] = rng.random(n)
    x_ND = rng.normal(size=(n, 3))
    x_ND[:, 1] -= 3 * y_NC[:, 0]
    return y_NC, codes_NF, x_ND


def test_sparse_probing_finds_the_planted_latents_and_reads_directions_either_way():
    y_NC, codes_NF, x_ND = _planted()
    t = wt.sparse_probing("image", codes_NF, x_ND, x_ND, y_NC, ["a=0", "a=1", "b=0"])
    assert t.keys == ["a=0", "a=1", "b=0"]
    assert t.sae_latent[:2] == [2, 0]
    assert t.sae_auroc[0] == pytest.approx(1.0) and t.sae_auroc[1] == pytest.approx(1.0)
    assert t.sae_auroc[2] < 0.7
    assert t.raw_auroc[0] > 0.9  # dim 1 is negatively tied to value 0: unsigned reading
    s = t.summary()
    assert s["values"] == 3 and s["share_detected"] == pytest.approx(2 / 3)
    by = t.by_attribute()
    assert list(by) == ["a", "b"] and by["a"]["detected"] == 2 and by["b"]["detected"] == 0
    assert by["a"]["sae_mean"] == pytest.approx(1.0) and by["b"]["values"] == 1


def test_sparse_probing_skips_values_with_too_few_positives():
    y_NC, codes_NF, x_ND = _planted()
    y_NC[:, 2] = False
    y_NC[:5, 2] = True
    t = wt.sparse_probing("text", codes_NF, x_ND, x_ND, y_NC, ["a=0", "a=1", "b=0"], min_positives=20)
    assert t.keys == ["a=0", "a=1"] and t.n_positive == [int(y_NC[:, 0].sum()), int(y_NC[:, 1].sum())]


def test_detecting_latents_naming_and_buckets():
    y_NC, codes_NF, x_ND = _planted()
    keys = ["colour=red", "shape=star", "mood=calm"]
    t = wt.sparse_probing("image", codes_NF, x_ND, x_ND, y_NC, keys)
    det = wt.detecting_latents([t])
    assert set(det) == {0, 2} and det[2][0] == "colour=red" and det[0][0] == "shape=star"
    names = ["star", None, "blue", "red"]
    acc = wt.naming_accuracy(det, names, {"colour=red": "red", "shape=star": "star", "mood=calm": "calm"})
    assert acc["latents"] == 2 and acc["correct"] == 1 and acc["by_attribute"]["colour"]["accuracy"] == 0.0
    kinds = {"colour=red": "shared", "shape=star": "text", "mood=calm": "text"}
    b = wt.modality_buckets(det, ["text", "image", "image", "bimodal"], kinds)
    assert b["shared"]["image"] == 1 and "accuracy" not in b["shared"]
    assert b["text"] == {"latents": 1, "image": 0, "text": 1, "bimodal": 0, "expected": "text", "accuracy": 1.0}
    assert np.isnan(b["image"]["accuracy"])
    assert wt.best_value_by_latent(t) == {0: "shape=star", 2: "colour=red"}


def test_bridge_agreement_counts_labelled_significant_bridges():
    bridges = [
        {"image_concept": 1, "text_concept": 5, "significant": True},
        {"image_concept": 2, "text_concept": 6, "significant": True},
        {"image_concept": 3, "text_concept": 7, "significant": False},
        {"image_concept": 9, "text_concept": 5, "significant": True},  # image side unlabelled
    ]
    img = {1: "colour=red", 2: "shape=star", 3: "colour=red"}
    txt = {5: "colour=red", 6: "shape=ring", 7: "colour=red"}
    r = wt.bridge_agreement(bridges, img, txt)
    assert r == {"bridges": 4, "significant": 3, "labelled": 2, "same_attribute": 1.0, "same_value": 0.5}


def test_steering_shift_moves_neighbours_toward_the_direction():
    rng = np.random.default_rng(0)
    D = 16
    gallery = rng.normal(size=(100, D))
    says = np.zeros(100, bool)
    says[:20] = True
    gallery[:20, 0] += 4.0  # captions saying the value lie along e0
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    img = rng.normal(size=(30, D))
    img[:, 0] -= 1.0
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    e0 = np.eye(D)[0]
    before, after = wt.steering_shift(img, e0, 3.0, gallery, says)
    assert after > before + 0.5
    same, _ = wt.steering_shift(img, e0, 0.0, gallery, says)
    assert same == pytest.approx(before)


def test_spearman():
    assert wt.spearman(np.arange(10), np.arange(10) ** 2) == pytest.approx(1.0)
    assert np.isnan(wt.spearman(np.ones(10), np.arange(10)))


def test_sparse_probing_scores_the_chosen_column_on_other_rows():
    # pure noise: no column knows the labels, so a held-out reading stays near 0.5 where choosing
    # and scoring on the same rows would report the best of 128 draws (about 0.6 and more)
    rng = np.random.default_rng(3)
    x_ND = rng.normal(size=(1000, 128))
    y_NC = rng.random((1000, 10)) < 0.1
    codes_NF = np.maximum(rng.normal(size=(1000, 64)), 0)
    t = wt.sparse_probing("image", codes_NF, x_ND, x_ND, y_NC, [f"a={i}" for i in range(10)])
    same_rows, _ = wt.best_columns(wt.auroc_matrix(x_ND, y_NC), signed=False)
    assert same_rows.mean() > 0.58
    assert abs(np.mean(t.pca_auroc) - 0.5) < 0.04 and abs(np.mean(t.sae_auroc) - 0.5) < 0.04


def test_linear_probe_reads_a_value_spread_over_many_dimensions():
    # value 0 is the sign of the sum of 16 dimensions: no single dimension reads it well, a logistic
    # regression on all of them does; value 1 is noise and stays near 0.5 on the held-out half
    rng = np.random.default_rng(4)
    x_ND = rng.normal(size=(2000, 32))
    y_NC = np.c_[x_ND[:, :16].sum(1) > 0, rng.random(2000) < 0.3]
    fit_N = rng.random(2000) < 0.5
    lin = wt.linear_probe_auroc(x_ND, y_NC, fit_N)
    assert lin[0] > 0.97 and abs(lin[1] - 0.5) < 0.06
    t = wt.sparse_probing("image", np.maximum(x_ND, 0), x_ND, x_ND, y_NC, ["a=0", "a=1"])
    assert max(t.raw_auroc[0], t.pca_auroc[0]) < 0.8 < t.linear_auroc[0]
    assert t.summary()["carried"] == 1 and t.by_attribute()["a"]["carried"] == 1
    # a label with one class on either half has no score
    assert np.isnan(wt.linear_probe_auroc(x_ND, np.c_[fit_N], fit_N)[0])
