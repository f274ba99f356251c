"""Scoring against planted truth, on constructed answers."""

import numpy as np

from mmsae.analysis import truth


def _dictionary(rng, C=12, D=16):
    d = rng.standard_normal((C, D))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_match_planted_finds_permuted_latents(rng):
    dic = _dictionary(rng)
    perm = rng.permutation(20)[:12]  # planted c lives in latent perm[c]; 8 latents are noise
    W = rng.standard_normal((20, 16)) * 0.05
    W[perm] = 3.0 * dic + 0.01 * rng.standard_normal((12, 16))
    W[perm[0]] = dic[0] + 1.0 * rng.standard_normal(16)  # too far: not recovered
    latent, cos = truth.match_planted(W, dic)
    assert latent[0] == -1 and (latent[1:] == perm[1:]).all() and (cos[1:] > 0.99).all()
    inv = truth.planted_of_latents(latent, 20)
    assert (inv[perm[1:]] == np.arange(1, 12)).all() and (inv >= 0).sum() == 11


def test_naming_and_bucket_accuracy():
    latent = np.array([2, 0, -1, 1])
    planted = ["a", "b", "c", "d"]
    names = ["b", "d", "a"]  # latent 0 → "b" (right), latent 1 → "d" (right), latent 2 → "a" (right)
    assert truth.naming_accuracy(latent, names, planted) == {"recovered": 3, "correct": 3, "accuracy": 1.0}
    names[1] = "x"
    assert truth.naming_accuracy(latent, names, planted)["correct"] == 2
    kinds = ["shared", "image", "text", "text"]
    res = truth.bucket_accuracy(latent, ["image", "text", "bimodal"], kinds)
    # planted 0 (shared) → latent 2 bimodal ✓; planted 1 (image) → latent 0 "image" ✓; planted 3 (text) → latent 1 "text" ✓
    assert res["accuracy"] == 1.0 and res["text"]["recovered"] == 1
    res = truth.bucket_accuracy(latent, ["bimodal", "text", "bimodal"], kinds)
    assert res["image"]["accuracy"] == 0.0 and abs(res["accuracy"] - 2 / 3) < 1e-12


def test_bridge_recovery():
    latent = np.array([5, 6, 7, -1])
    planted = [(0, 1), (2, 3)]  # the second cannot be found: its text side is not recovered
    found = [
        {"image_concept": 5, "text_concept": 6, "significant": True},
        {"image_concept": 6, "text_concept": 5, "significant": True},  # reversed: not the planted direction
        {"image_concept": 7, "text_concept": 1, "significant": False},
    ]
    res = truth.bridge_recovery(latent, planted, found)
    assert res["found"] == 1 and res["recall"] == 0.5 and res["precision"] == 0.5 and res["both_sides_recovered"] == 1
