"""Stability matching at scale: time and memory of the pruned exact matching, and its error
against the dense Hungarian assignment where that is still affordable.

Two dictionaries of unit rows (D=512): B = A with a share of rows perturbed and the rest
replaced, shuffled. Prints, per F: seconds and peak RSS of the pruned matching, and at F ≤ 4096
the mean matched cosine of both solvers.

    python benchmarks/stability_matching.py [--sizes 4096,16384] [--candidates 32]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def make(F: int, D: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((F, D)).astype(np.float32)
    B = A + 0.4 * rng.standard_normal((F, D)).astype(np.float32)
    new = rng.random(F) < 0.3  # 30% of concepts not shared by the two runs
    B[new] = rng.standard_normal((int(new.sum()), D))
    return A, B[rng.permutation(F)]


def main() -> None:
    from mmsae.analysis.stability import match_dictionaries

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--candidates", type=int, default=32)
    args = ap.parse_args()
    print(f"{'F':>7} {'solver':>8} {'seconds':>9} {'stability':>10} {'peak RSS MB':>12}")
    for F in (int(s) for s in args.sizes.split(",")):
        A, B = make(F, args.dim)
        t = time.perf_counter()
        _, c = match_dictionaries(A, B, candidates=args.candidates, dense_limit=0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{F:>7} {'pruned':>8} {time.perf_counter() - t:>9.1f} {c.mean():>10.5f} {rss:>12.0f}", flush=True)
        if F <= 4096:
            t = time.perf_counter()
            _, cd = match_dictionaries(A, B, dense_limit=F)
            print(
                f"{F:>7} {'dense':>8} {time.perf_counter() - t:>9.1f} {cd.mean():>10.5f}    "
                f"(pruned − dense: {c.mean() - cd.mean():+.2e})",
                flush=True,
            )


if __name__ == "__main__":
    main()
