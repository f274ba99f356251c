"""Bridge Score at scale without a dense F × F matrix: time and peak memory.

Sparse codes of N pairs with k active latents per row over F concepts (Zipf-like popularity;
each caption shares half of its image's latents), unit random directions of dimension D. Times
`bridge_top` (top 100 bridges + per-concept bridge mass); the SAE encoding of a store is not
included (it is one streaming pass, measured by `mmsae eval`).

    python benchmarks/bridges_scale.py [--pairs 1000000] [--dict-size 65536] [--k 32]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp


def codes(N: int, F: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(F) + 50.0) ** 0.8
    p /= p.sum()
    img = rng.choice(F, size=(N, k), p=p).astype(np.int32)
    txt = rng.choice(F, size=(N, k), p=p).astype(np.int32)
    txt[:, : k // 2] = img[:, : k // 2]  # matched pairs share concepts
    vals = rng.lognormal(0, 0.5, (2, N, k)).astype(np.float32)
    indptr = np.arange(0, N * k + 1, k)
    Zi = sp.csr_matrix((vals[0].ravel(), img.ravel(), indptr), shape=(N, F))
    Zt = sp.csr_matrix((vals[1].ravel(), txt.ravel(), indptr), shape=(N, F))
    Zi.sum_duplicates()
    Zt.sum_duplicates()
    return Zi, Zt


def main() -> None:
    from mmsae.analysis.bridges import bridge_top

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--dict-size", type=int, default=65536)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    t = time.perf_counter()
    Zi, Zt = codes(args.pairs, args.dict_size, args.k)
    D = np.random.default_rng(1).standard_normal((args.dict_size, args.dim)).astype(np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"codes: {args.pairs:,} pairs, F={args.dict_size:,}, k={args.k} ({time.perf_counter() - t:.1f} s to make; "
        f"peak RSS so far {rss0:.0f} MB)",
        flush=True,
    )
    t = time.perf_counter()
    res = bridge_top(Zi, Zt, D, D, top=100)
    sec = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dense_gb = args.dict_size**2 * 8 / 2**30
    print(
        f"bridge_top: {sec:.1f} s, peak RSS {rss:.0f} MB (a dense float64 F×F matrix alone: {dense_gb:.0f} GB); "
        f"{res['coactivation_nnz']:,} non-zero co-activations; best score {res['top'][0]['score']:.3g}"
    )


if __name__ == "__main__":
    main()
