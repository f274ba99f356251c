"""Similar-row search over SAE codes: exact blocked matmul (mmsae) against scikit-learn's
NearestNeighbors (cosine, brute force on dense and on sparse codes). Same queries, same k.

    python benchmarks/similar_search.py [--gallery 50000] [--queries 1000] [--dict-size 4096] [--k-active 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp


def main() -> None:
    from sklearn.neighbors import NearestNeighbors

    from mmsae.analysis.search import similar_rows

    ap = argparse.ArgumentParser()
    ap.add_argument("--gallery", type=int, default=50000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k-active", type=int, default=32)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    G = np.zeros((args.gallery, args.dict_size), np.float32)
    for i in range(args.gallery):
        G[i, rng.choice(args.dict_size, args.k_active, replace=False)] = rng.lognormal(0, 0.5, args.k_active)
    Q = G[: args.queries]
    rows = []
    t = time.perf_counter()
    idx_m, sim_m = similar_rows(Q, G, k=args.top)
    rows.append(("mmsae blocked matmul (dense)", time.perf_counter() - t, 1.0))
    for name, X in (("sklearn brute, dense", G), ("sklearn brute, sparse CSR", sp.csr_matrix(G))):
        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=args.top, metric="cosine", algorithm="brute").fit(X)
        dist, idx = nn.kneighbors(X[: args.queries])
        sec = time.perf_counter() - t
        agree = np.mean([len(set(a) & set(b)) / args.top for a, b in zip(idx, idx_m)])
        rows.append((name, sec, agree))
    print(
        f"{args.queries} queries against {args.gallery:,} codes (F={args.dict_size}, {args.k_active} active), top {args.top}"
    )
    print(f"{'method':<32}{'seconds':>9}{'overlap with mmsae':>20}")
    for name, sec, agree in rows:
        print(f"{name:<32}{sec:>9.2f}{agree:>20.3f}")


if __name__ == "__main__":
    main()
