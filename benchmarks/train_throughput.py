"""Training throughput of mmsae's TopK trainer, with the encoder-GEMM floor measured in the same run.

    python benchmarks/train_throughput.py [--dim 512] [--dict-size 4096] [--k 32] [--batch-size 4096]
                                          [--rows 200000] [--repeats 3] [--json]

Data as in issue 8: each vector a sparse non-negative combination of ~16 of 4,096 random unit
directions, lognormal magnitudes, small noise, plus a constant offset of norm 5. The store is
written once; each repeat trains one pass with `Trainer` (streaming from the store, progress off)
and reports vectors/s over the whole training loop, data streaming and the first steps included
(initialisation and the final validation excluded). The floor is one fp32 forward GEMM
[B, D] × [D, F] timed alone, interleaved with the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmsae.data.store import StoreWriter
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer


def make_store(root: Path, rows: int, dim: int, n_dirs: int = 4096, active: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_dirs, dim)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 5.0 / np.linalg.norm(offset)
    with StoreWriter(root, dim=dim, model_id="bench") as w:
        for start in range(0, rows, 16384):
            n = min(16384, rows - start)
            idx = rng.integers(0, n_dirs, (n, active))
            mag = rng.lognormal(0, 0.5, (n, active)).astype(np.float32)
            x = np.einsum("na,nad->nd", mag, dirs[idx]) + offset + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
            w.append(x, "image")


def gemm_floor(B: int, D: int, F: int, reps: int = 10) -> float:
    x, W = torch.randn(B, D), torch.randn(D, F)
    for _ in range(2):
        x @ W
    t = time.perf_counter()
    for _ in range(reps):
        x @ W
    return B * reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store, args.rows, args.dim)
        runs, floors = [], []
        for r in range(args.repeats):  # interleave floor and trainer: this machine's speed drifts
            floors.append(gemm_floor(args.batch_size, args.dim, args.dict_size))
            cfg = TrainConfig(arch="topk", dict_size=args.dict_size, k=args.k, batch_size=args.batch_size, epochs=1,
                              val_fraction=0.02, checkpoint_every=0, device="cpu", seed=r)
            res = Trainer(store, Path(tmp) / f"sae{r}", cfg, progress=False).run()
            runs.append({"vectors_per_s": res.vectors_per_second, "val_fvu": res.val_metrics["fvu"],
                         "l0": res.val_metrics["l0"], "dead": res.val_metrics["dead_fraction"]})
    out = {"config": vars(args), "torch_threads": torch.get_num_threads(),
           "mmsae_topk_vectors_per_s": statistics.median(r["vectors_per_s"] for r in runs),
           "encoder_gemm_floor_vectors_per_s": statistics.median(floors), "runs": runs, "floors": floors}
    out["ratio_to_floor"] = out["mmsae_topk_vectors_per_s"] / out["encoder_gemm_floor_vectors_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"D={args.dim} F={args.dict_size} k={args.k} batch={args.batch_size}, {args.rows} rows, one pass, "
          f"median of {args.repeats}")
    print(f"{'':<32}{'vectors/s':>12}{'val FVU':>10}{'L0':>7}{'dead':>7}")
    print(f"{'encoder fwd GEMM floor (fp32)':<32}{out['encoder_gemm_floor_vectors_per_s']:>12,.0f}")
    for i, r in enumerate(runs):
        print(f"{'mmsae topk, run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}{r['l0']:>7.1f}{r['dead']:>7.3f}")
    print(f"{'mmsae topk (median)':<32}{out['mmsae_topk_vectors_per_s']:>12,.0f}   ratio to floor {out['ratio_to_floor']:.2f}")


if __name__ == "__main__":
    main()
