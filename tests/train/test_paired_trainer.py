"""Training paired SAEs from a store: folding, exact resume, errors."""

import numpy as np
import pytest
import torch

from mmsae.data.store import EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError
from mmsae.models import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

COMMON = dict(dict_size=128, k=8, batch_size=128, lr=3e-3, device="cpu", seed=5)


@pytest.mark.parametrize("arch", ["multimodal", "vlsae"])
def test_resume_after_interruption_gives_identical_weights(small_synth, tmp_path, arch, monkeypatch):
    cfg = TrainConfig(arch=arch, steps=60, checkpoint_every=20, **COMMON)
    Trainer(small_synth, tmp_path / "full", cfg, progress=False).run()

    real = Trainer._checkpoint

    def checkpoint_then_die(self, sae, opt, sched, step, *rest):
        real(self, sae, opt, sched, step, *rest)
        if step == 40:
            raise KeyboardInterrupt  # as if killed right after the second checkpoint

    monkeypatch.setattr(Trainer, "_checkpoint", checkpoint_then_die)
    with pytest.raises(KeyboardInterrupt):
        Trainer(small_synth, tmp_path / "cut", cfg, progress=False).run()
    monkeypatch.setattr(Trainer, "_checkpoint", real)
    assert not (tmp_path / "cut" / "config.json").exists()
    Trainer(small_synth, tmp_path / "cut", cfg, resume=True, progress=False).run()
    a, b = load_sae(tmp_path / "full"), load_sae(tmp_path / "cut")
    for name, t in a.named_tensors().items():
        torch.testing.assert_close(t, b.named_tensors()[name], rtol=0, atol=1e-6)


def test_multimodal_folds_per_modality_normalisation(small_synth, tmp_path):
    """The saved model works on raw embeddings: its held-out FVU equals the one computed by hand."""
    res = Trainer(
        small_synth, tmp_path / "mm", TrainConfig(arch="multimodal", epochs=5, **COMMON), progress=False
    ).run()
    sae = load_sae(tmp_path / "mm")
    store = EmbeddingStore(small_synth)
    from mmsae.data.stream import split_mask

    rows = np.nonzero(split_mask(store.pair_ids(), np.arange(len(store)), "val", 0.1) & (store.modalities() == "text"))[
        0
    ]
    x = torch.from_numpy(store.get(rows))
    x_hat = sae(x, "text").x_hat_BD.detach()
    fvu = float((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())
    assert fvu == pytest.approx(res.val_metrics["by_modality"]["text"]["fvu"], rel=1e-3)
    assert res.val_metrics["crossmodal"]["alignment"]["alignment_score"] > 1
    norm = sae.provenance["normalization"]
    assert norm["mode"] == "center_scale" and set(norm["scale"]) == {"image", "text"}


def test_paired_architectures_need_pairs(tmp_path, rng):
    w = StoreWriter(tmp_path / "s", dim=8)
    w.append(rng.standard_normal((600, 8)).astype(np.float32), "image")
    w.close()
    with pytest.raises(MmsaeError, match="no \\(image, text\\) pairs"):
        Trainer(tmp_path / "s", tmp_path / "o", TrainConfig(arch="vlsae", dict_size=16, k=2, batch_size=64))


def test_config_checks():
    with pytest.raises(MmsaeError, match="modality does not apply"):
        TrainConfig(arch="multimodal", modality="image")
    with pytest.raises(MmsaeError, match="centring cannot be folded"):
        TrainConfig(arch="vlsae", normalize="center_scale")
    assert TrainConfig(arch="vlsae").resolved_normalize() == "none"
    assert TrainConfig(arch="multimodal", sparsity="l1", k=0).paired


def test_mix_sets_the_image_text_ratio(small_synth, tmp_path):
    from mmsae.data.view import count_rows, mix_subsample

    store = EmbeddingStore(small_synth)
    sub = mix_subsample(store, (1.0, 3.0), 0.1)
    n_img = count_rows(store, "train", 0.1, "image", sub)
    n_txt = count_rows(store, "train", 0.1, "text", sub)
    assert n_txt == count_rows(store, "train", 0.1, "text") and n_txt / n_img == pytest.approx(3.0, rel=0.1)
    res = Trainer(store, tmp_path / "m", TrainConfig(arch="topk", mix="1:3", steps=5, **COMMON), progress=False).run()
    assert res.steps == 5
    with pytest.raises(MmsaeError, match="1:3"):
        TrainConfig(mix="lots")
    with pytest.raises(MmsaeError, match="exclude"):
        TrainConfig(mix="1:1", modality="text")
