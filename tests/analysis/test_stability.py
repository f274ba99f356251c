"""Stability: the assignment against brute force, pruned against dense, planted concepts across seeds."""

import itertools

import numpy as np
import pytest

from mmsae.analysis.stability import match_dictionaries, stability, stability_report
from mmsae.data.synthetic import load_ground_truth
from mmsae.metrics.evaluate import evaluate_store
from mmsae.models import load_sae
from mmsae.train.trainer import train
from tests.analysis.conftest import best_latents


def test_stability_is_the_best_permutation_average(rng):
    A, B = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    # max over permutations P of (1/F) tr(D Pᵀ D'ᵀ), by enumeration
    brute = max(np.mean([An[i] @ Bn[p[i]] for i in range(6)]) for p in itertools.permutations(range(6)))
    assert stability(A, B) == pytest.approx(brute)
    assert stability(A, -B, absolute=True) == pytest.approx(stability(A, B, absolute=True))


def test_recovers_a_permutation_and_pruned_equals_dense(rng):
    A = rng.standard_normal((300, 16))
    perm = rng.permutation(300)
    p, cos = match_dictionaries(A, A[perm] + 0.01 * rng.standard_normal((300, 16)))
    assert (perm[p] == np.arange(300)).all() and cos.min() > 0.99
    B = A + 0.8 * rng.standard_normal((300, 16))
    pd, cd = match_dictionaries(A, B)
    pp, cp = match_dictionaries(A, B, dense_limit=0, candidates=8)
    assert cp.mean() == pytest.approx(cd.mean(), abs=1e-3)


def test_frequent_planted_concepts_are_stable_across_seeds(bridge_synth, tmp_path):
    store, _ = bridge_synth
    gt = load_ground_truth(store.root)
    saes = []
    for seed in range(3):
        train(
            store,
            tmp_path / f"s{seed}",
            arch="topk",
            dict_size=256,
            k=8,
            epochs=30,
            batch_size=256,
            lr=3e-3,
            seed=seed,
            device="cpu",
            checkpoint_every=0,
            progress=False,
        )
        saes.append(load_sae(tmp_path / f"s{seed}"))
    ev = evaluate_store(saes[0], store)
    res = stability_report(
        [s.W_dec.detach().numpy() for s in saes],
        ev.frequency_F.numpy(),
        ev.energy_F.numpy(),
        ["s0", "s1", "s2"],
        out=tmp_path / "out",
    )
    per = np.array([c["stability"] for c in res["per_concept"]])
    best, cos = best_latents(saes[0].W_dec.detach().numpy(), gt.dictionary_CD)
    frequent = np.argsort(-gt.frequency_C)[: len(gt.kinds) // 4]
    assert per[best[frequent]].mean() >= 0.95
    assert res["spearman_stability_vs_frequency"] > 0.3  # the paper's finding: frequent concepts are stable
    for ext in ("json", "png", "svg", "md"):
        assert (tmp_path / "out" / f"stability.{ext}").stat().st_size > 0
