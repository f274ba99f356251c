"""Each metric against a direct numpy transcription of docs/formulas.md §3."""

import numpy as np
import pytest
import torch

from mmsae import metrics as M
from mmsae.metrics.accumulate import MetricAccumulator


@pytest.fixture
def data(rng):
    x = rng.standard_normal((200, 9)) + 2.0  # non-centred, so the three FVU/R² definitions differ
    xh = x + 0.3 * rng.standard_normal(x.shape)
    z = np.maximum(rng.standard_normal((200, 30)) - 1.0, 0)
    z[:, 5] = 0  # a dead latent
    z[:, 7] = np.abs(z[:, 7]) + 0.1  # a dense latent (always on)
    return x, xh, z


def np_fvu(x, xh):
    return ((x - xh) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()


def np_fvu_per_sample(x, xh):
    return np.mean([np.var(a - b) / np.var(a) for a, b in zip(x, xh)])


def np_r2_global(x, xh):
    return 1 - np.mean((x - xh) ** 2) / np.mean((x - x.mean()) ** 2)


def np_nmae(x, xh):
    return np.mean([np.mean(np.abs(b - a)) / np.mean(np.abs(a)) for a, b in zip(x, xh)])


def np_cos(x, xh):
    return np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(x, xh)])


def test_reconstruction_metrics(data):
    x, xh, _ = data
    t, th = torch.tensor(x), torch.tensor(xh)
    assert M.fvu(t, th) == pytest.approx(np_fvu(x, xh), rel=1e-10)
    assert M.fvu_per_sample(t, th) == pytest.approx(np_fvu_per_sample(x, xh), rel=1e-10)
    assert M.r2_global(t, th) == pytest.approx(np_r2_global(x, xh), rel=1e-10)
    assert M.nmae(t, th) == pytest.approx(np_nmae(x, xh), rel=1e-10)
    assert M.cosine(t, th) == pytest.approx(np_cos(x, xh), rel=1e-10)
    # the three definitions really are different numbers on non-centred data
    assert len({round(np_fvu(x, xh), 4), round(np_fvu_per_sample(x, xh), 4), round(1 - np_r2_global(x, xh), 4)}) == 3


def test_sparsity_metrics(data):
    _, _, z = data
    t = torch.tensor(z)
    assert M.l0(t) == pytest.approx(np.mean((z != 0).sum(1)))
    assert M.l0_fraction_zero(t) == pytest.approx(np.mean(z == 0))
    freq = (z > 0).mean(0)
    np.testing.assert_allclose(M.frequency(t).numpy(), freq)
    np.testing.assert_allclose(M.energy(t).numpy(), z.mean(0))
    assert M.dead_fraction(t) == pytest.approx(np.mean(freq == 0))
    assert M.dense_fraction(t) == pytest.approx(np.mean(freq > 0.1))
    assert M.dead_fraction(t) > 0 and M.dense_fraction(t) > 0


def test_streaming_accumulator_equals_one_shot(data):
    x, xh, z = data
    acc = MetricAccumulator(30)
    for i in range(0, 200, 37):  # uneven batches
        acc.update(torch.tensor(x[i : i + 37]), torch.tensor(xh[i : i + 37]), torch.tensor(z[i : i + 37]))
    r = acc.result()
    assert r["fvu"] == pytest.approx(np_fvu(x, xh), rel=1e-9)
    assert r["r2"] == pytest.approx(1 - np_fvu(x, xh), rel=1e-9)
    assert r["fvu_per_sample"] == pytest.approx(np_fvu_per_sample(x, xh), rel=1e-9)
    assert r["r2_global"] == pytest.approx(np_r2_global(x, xh), rel=1e-9)
    assert r["nmae"] == pytest.approx(np_nmae(x, xh), rel=1e-9)
    assert r["cosine"] == pytest.approx(np_cos(x, xh), rel=1e-9)
    assert r["l0"] == pytest.approx(np.mean((z != 0).sum(1)))
    assert r["l0_fraction_zero"] == pytest.approx(np.mean(z == 0))
    assert r["dead_fraction"] == pytest.approx(np.mean((z > 0).mean(0) == 0))
    assert r["dense_fraction"] == pytest.approx(np.mean((z > 0).mean(0) > 0.1))
    assert r["n_rows"] == 200


def test_evaluate_store_by_modality(small_synth):
    from mmsae.data.store import EmbeddingStore
    from mmsae.metrics import evaluate_store
    from mmsae.models import build_sae

    store = EmbeddingStore(small_synth)
    torch.manual_seed(0)
    sae = build_sae("topk", d_in=64, dict_size=32, k=4)
    res = evaluate_store(sae, store)
    x = torch.tensor(store.all_embeddings())
    out = sae(x)
    assert res.metrics["fvu"] == pytest.approx(M.fvu(x, out.x_hat_BD), rel=1e-6)
    mods = store.modalities()
    img = torch.tensor(np.nonzero(mods == "image")[0])
    assert res.by_modality["image"]["fvu"] == pytest.approx(M.fvu(x[img], out.x_hat_BD[img]), rel=1e-6)
    assert res.by_modality["image"]["n_rows"] == 4000
