"""Multimodal SAEs on planted pairs: shared concepts recovered, alignment, hallucination detection.

One comparison run on the default synthetic data set (20,000 pairs of 256-d embeddings, 192 shared
+ 96 image-only + 96 text-only planted concepts; F = 1024, k = 8, 20 epochs), reused by every test.
"""

import json

import pytest

from mmsae.analysis.crossmodal import shared_concept_recovery
from mmsae.data.synthetic import SynthConfig, load_ground_truth, synth_config_of, write_synthetic
from mmsae.models import load_sae
from mmsae.pipelines.compare import CompareConfig, compare_models
from mmsae.train.trainer import train


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    store = write_synthetic(root / "store", SynthConfig())
    res = compare_models(
        store, root / "cmp", CompareConfig(dict_size=1024, k=8, epochs=20, batch_size=1024), progress=False
    )
    return root, {r["model"]: r for r in res["rows"]}, res


def test_vlsae_and_multimodal_recover_shared_concepts(planted):
    _, rows, _ = planted
    assert rows["multimodal"]["shared_recovery"] >= 0.9, rows["multimodal"]
    assert rows["vlsae"]["shared_recovery"] >= 0.9, rows["vlsae"]  # k + 4 = 12, official (uncentred) encoder
    # two SAEs trained apart have no reason to share latents
    assert rows["independent"]["shared_recovery"] < 0.1, rows["independent"]


def test_centred_vlsae_recovers_shared_concepts(planted):
    root, _, _ = planted
    out = root / "vlsae-center"
    train(
        root / "store",
        out,
        arch="vlsae",
        vlsae_center=True,
        dict_size=1024,
        k=8,
        epochs=20,
        batch_size=1024,
        lr=3e-3,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    rec = shared_concept_recovery(load_sae(out), synth_config_of(root / "store"), load_ground_truth(root / "store"))
    assert rec["shared_recovery"] >= 0.9, rec["shared_recovery"]


def test_alignment_raises_the_alignment_score(planted):
    _, rows, _ = planted
    assert rows["multimodal"]["alignment_score"] > 2 * rows["independent"]["alignment_score"]
    assert rows["multimodal"]["alignment_score"] > rows["multimodal-noalign"]["alignment_score"]
    assert rows["multimodal"]["mean_pair_similarity"] > rows["multimodal-noalign"]["mean_pair_similarity"]
    assert rows["multimodal"]["i2t_recall@1"] > rows["independent"]["i2t_recall@1"]


def test_hallucination_detection_beats_raw_cosine(planted):
    _, rows, _ = planted
    for name in ("multimodal", "vlsae", "pooled"):
        r = rows[name]
        assert r["hallucination_f1"] > r["clip_score_f1"], (name, r)
        assert r["hallucination_auroc"] > r["clip_score_auroc"], (name, r)


def test_comparison_files(planted):
    root, _, res = planted
    saved = json.loads((root / "cmp" / "comparison.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["independent", "pooled", "multimodal-noalign", "multimodal", "vlsae"]
    table = (root / "cmp" / "comparison.md").read_text()
    assert "| multimodal |" in table and "CLIP score" in table
    for r in saved["rows"]:
        assert 0 < r["fvu_image"] < 1 and 0 < r["fvu_text"] < 1
