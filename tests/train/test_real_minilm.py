"""Real embeddings: a TopK SAE (k=32, F=8D) beats PCA-32 by 2× in held-out FVU on MiniLM captions.

A reduced version of benchmarks/minilm_coco.py (which runs all 25,014 captions): the captions of
the first 2,500 COCO val images, held out by image id.
"""

import numpy as np


def test_topk_beats_pca_on_minilm_captions(minilm_store, minilm_sae):
    from sklearn.decomposition import PCA

    from mmsae.data.stream import split_mask
    from mmsae.metrics.evaluate import evaluate_store

    store = minilm_store
    sae_fvu = evaluate_store(minilm_sae, store, split="val").metrics["fvu"]

    x = store.all_embeddings()
    val = split_mask(store.pair_ids(), np.arange(len(x)), "val", 0.1)
    pca = PCA(32, random_state=0).fit(x[~val])
    xv = x[val]
    pca_fvu = ((xv - pca.inverse_transform(pca.transform(xv))) ** 2).sum() / ((xv - xv.mean(0)) ** 2).sum()
    print(f"held-out FVU: TopK {sae_fvu:.4f}, PCA-32 {pca_fvu:.4f}, {val.sum()} val rows")
    assert sae_fvu <= 0.5 * pca_fvu
