"""Pareto: SAEs against linear baselines on planted sparse data, same held-out rows and metrics."""

import numpy as np
import pytest

from mmsae.analysis.baselines import Baseline, score
from mmsae.analysis.pareto import ParetoConfig, frontier, run_pareto


@pytest.mark.parametrize("method", ["pca", "ica", "nmf", "kmeans", "dictionary"])
def test_baselines_share_the_interface(method, rng):
    X = rng.standard_normal((300, 10)) @ rng.standard_normal((10, 10)) + 2.0
    b = Baseline(method, 4 if method != "dictionary" else 16, k=3).fit(X[:200])
    Z = b.encode(X[200:])
    s = score(b, X[200:])
    assert Z.shape[0] == 100 and 0 < s["r2"] <= 1.0
    if method == "kmeans":
        assert s["l0"] == 1.0
    if method == "dictionary":
        assert s["l0"] <= 3
    if method == "nmf":
        assert (Z >= 0).all()


def test_pca_at_full_rank_is_exact(rng):
    X = rng.standard_normal((100, 6))
    assert score(Baseline("pca", 6).fit(X), X)["r2"] == pytest.approx(1.0)


def test_frontier():
    pts = [{"label": "a", "l0": 1, "r2": 0.5}, {"label": "b", "l0": 2, "r2": 0.4}, {"label": "c", "l0": 2, "r2": 0.9}]
    assert frontier(pts) == ["a", "c"]


def test_saes_dominate_pca_and_kmeans_on_planted_data(bridge_synth, tmp_path):
    """TopK beats PCA at every L0 and k-means from L0 = 2 on. At L0 = 1 k-means (a free centroid per
    row) edges out TopK k=1 (one direction from b_dec, chosen by a linear encoder) here: 0.556 vs
    0.524 R²; the test pins that measured order too, so a change in either shows up."""
    store, _ = bridge_synth
    cfg = ParetoConfig(
        levels=(1, 2, 4, 8),
        saes=("topk",),
        baselines=("pca", "kmeans", "nmf"),
        dict_size=256,
        epochs=20,
        batch_size=256,
    )
    res = run_pareto(store, tmp_path, cfg, progress=False)
    pts = {p["label"]: p for p in res["points"]}
    for L in (1, 2, 4, 8):
        assert pts[f"topk-k{L}"]["r2"] > pts[f"pca-{L}"]["r2"], L
        assert pts[f"topk-k{L}"]["l0"] == pytest.approx(L, abs=0.01)
    best_kmeans = max(p["r2"] for p in res["points"] if p["method"] == "kmeans")
    assert pts["topk-k2"]["r2"] > best_kmeans + 0.05
    assert best_kmeans > pts["topk-k1"]["r2"] > best_kmeans - 0.1
    assert all(lab.startswith(("topk", "kmeans")) for lab in res["frontier"])
    for ext in ("json", "png", "svg", "md"):
        assert (tmp_path / f"pareto.{ext}").stat().st_size > 0
    assert np.isfinite([p["fvu"] for p in res["points"]]).all()
