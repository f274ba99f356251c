"""The explorer's index: statistics equal a brute-force pass; run folders are found; the cache is reused."""

import json
import shutil

import numpy as np
import pytest
import torch

from mmsae.errors import MmsaeError
from mmsae.explorer.index import HIST_BINS, HIST_LOG10_RANGE, concept_stats, load_explorer
from mmsae.metrics.evaluate import routed_forward
from mmsae.runs import find_run


def test_concept_stats_equal_brute_force(demo_run):
    layout = find_run(demo_run)
    data = load_explorer(layout)
    stats = concept_stats(data.model, data.store, block=777)  # odd block size: merges across chunk edges
    X = torch.as_tensor(data.store.all_embeddings())
    mods = data.store.modalities()
    Z = routed_forward(data.model, X, mods).codes_BF.detach().numpy().astype(np.float64)
    lo, hi = HIST_LOG10_RANGE
    for mi, m in enumerate(stats["modalities"]):
        z = Z[mods == m]
        assert stats["counts"][mi] == len(z)
        np.testing.assert_allclose(stats["frequency_FM"][:, mi], (z > 0).mean(0))
        np.testing.assert_allclose(stats["energy_FM"][:, mi], z.mean(0), rtol=1e-5, atol=1e-9)
        for c in range(0, z.shape[1], 37):
            v = z[:, c][z[:, c] > 0]
            b = np.clip(np.floor((np.log10(v) - lo) / (hi - lo) * HIST_BINS), 0, HIST_BINS - 1).astype(int)
            np.testing.assert_array_equal(stats["hist_FMB"][c, mi], np.bincount(b, minlength=HIST_BINS))
    # the explorer's table agrees with the modality analysis it sits beside
    mod = json.loads(layout.files["modality"].read_text())["per_concept"]
    mu = np.array([np.nan if c["modality_score"] is None else c["modality_score"] for c in mod])
    np.testing.assert_allclose(data.table["modality_score"], mu, rtol=1e-6, atol=1e-9)


def test_find_run_layout_and_errors(demo_run, tmp_path):
    layout = find_run(demo_run)
    assert layout.sae.name == "sae-topk" and layout.store.name == "store"
    assert {"names", "top_examples", "modality", "bridges", "stability"} <= set(layout.files)
    assert {"modality", "bridges", "stability"} <= set(layout.plots)
    # an SAE folder alone: the store comes from its provenance
    alone = find_run(demo_run / "sae-relu")
    assert alone.sae == demo_run / "sae-relu" and alone.store.resolve() == (demo_run / "store").resolve()
    with pytest.raises(MmsaeError, match="not a folder"):
        find_run(tmp_path / "missing")
    with pytest.raises(MmsaeError, match="no SAE"):
        find_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(MmsaeError, match="damaged"):
        find_run(tmp_path)


def test_cache_is_reused_and_rebuilt_when_the_sae_changes(demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run / "sae-relu", run)  # an SAE folder as the run: no top examples of its own
    data = load_explorer(find_run(run))
    cache = run / "explorer"
    assert (cache / "stats.npz").is_file() and (cache / "top_examples.parquet").is_file()
    stamp = (cache / "stats.npz").stat().st_mtime_ns
    load_explorer(find_run(run))
    assert (cache / "stats.npz").stat().st_mtime_ns == stamp  # reused
    from mmsae.models.io import save_sae

    save_sae(data.model, run, data.model.provenance)  # same folder, new weights file
    load_explorer(find_run(run))
    assert (cache / "stats.npz").stat().st_mtime_ns != stamp  # rebuilt
    assert data.table["bucket"].tolist().count("dead") == int((data.table["frequency"] == 0).sum())
