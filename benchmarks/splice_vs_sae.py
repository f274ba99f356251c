"""SpLiCE (vocabulary-only, non-negative Lasso) against an SAE on the same rows: reconstruction
cosine and L0 per row, averaged.

    python benchmarks/splice_vs_sae.py SAE STORE VOCAB [--rows 200] [--modality text] [--l1 0.25,0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from mmsae.analysis.naming import embed_vocabulary, read_vocabulary
    from mmsae.analysis.splice import splice_decompose
    from mmsae.data.store import EmbeddingStore
    from mmsae.models import as_paired, load_sae

    ap = argparse.ArgumentParser()
    ap.add_argument("sae")
    ap.add_argument("store")
    ap.add_argument("vocab")
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--modality", default="text")
    ap.add_argument("--l1", default="0.25,0.05")
    args = ap.parse_args()
    store = EmbeddingStore(args.store)
    model = as_paired(load_sae(args.sae))
    rows_all = store.rows(args.modality)
    rows = np.sort(np.random.default_rng(0).choice(rows_all, min(args.rows, len(rows_all)), replace=False))
    X = store.get(rows)
    terms = read_vocabulary(args.vocab)
    E = embed_vocabulary(store, terms, templates=("a photo of a {}.",))
    mean = store.get(rows_all[:: max(1, len(rows_all) // 20000)]).mean(0)
    with torch.no_grad():
        out = model(torch.as_tensor(X), args.modality)
    z, xh = out.codes_BF.numpy(), out.x_hat_BD.numpy()
    cos = (X * xh).sum(1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(xh, axis=1))
    print(f"{len(rows)} {args.modality} rows of {args.store}; vocabulary {len(terms)} terms")
    print(f"{'method':<22}{'mean L0':>9}{'mean cosine':>13}{'seconds':>9}")
    print(f"{'SAE':<22}{(z > 0).sum(1).mean():>9.1f}{cos.mean():>13.4f}{'':>9}")
    for l1 in (float(v) for v in args.l1.split(",")):
        t = time.perf_counter()
        sp = splice_decompose(X, E, mean, l1=l1)
        print(
            f"{f'SpLiCE λ={l1:g}':<22}{sp['l0'].mean():>9.1f}{sp['cosine'].mean():>13.4f}{time.perf_counter() - t:>9.1f}"
        )


if __name__ == "__main__":
    main()
