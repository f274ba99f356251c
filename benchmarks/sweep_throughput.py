"""Many SAEs per pass: a sweep trained in one read of the data against the same runs one after
another, in the same process.

    python benchmarks/sweep_throughput.py [--ks 16,32,64] [--dict-size 4096] [--rows 200000] [--repeats 2]

Data as in issue 8 (`train_throughput.make_store`), stored as float16 like a real extraction. Each
repeat times (a) `train` once per k, sequentially, and (b) `train_sweep` over the same configs,
interleaved; wall time covers set-up, one pass of training and the final validation of every
SAE. The sweep reads each batch once; the sequential runs read it once per SAE. Held-out FVU is
printed to show the SAEs are the same either way (the sweep is exact; a test checks it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mmsae.data.store import EmbeddingStore
from mmsae.train import TrainConfig, train, train_sweep


def make_f16_store(root: Path, rows: int, dim: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from train_throughput import make_store

    tmp = root.with_name(root.name + "-f32")
    make_store(tmp, rows, dim)
    src = EmbeddingStore(tmp)
    from mmsae.data.store import StoreWriter

    with StoreWriter(root, dim=dim, dtype="float16", model_id="bench") as w:
        for i in range(len(src.shards)):
            w.append(src.shard_embeddings(i), "image")
    shutil.rmtree(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="16,32,64")
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="mmsae-sweep-"))
    try:
        store = work / "store"
        make_f16_store(store, args.rows, args.dim)
        base = TrainConfig(
            arch="topk",
            dict_size=args.dict_size,
            batch_size=args.batch_size,
            epochs=1,
            val_fraction=0.02,
            checkpoint_every=0,
            device="cpu",
        )
        cfgs = [dataclasses.replace(base, k=int(k)) for k in args.ks.split(",")]
        seq, swp, fvu_seq, fvu_swp = [], [], [], []
        for _r in range(args.repeats):
            shutil.rmtree(work / "runs", ignore_errors=True)
            t0 = time.perf_counter()
            res = [train(store, work / "runs" / f"seq{i}", c, progress=False) for i, c in enumerate(cfgs)]
            seq.append(time.perf_counter() - t0)
            fvu_seq = [x.val_metrics["fvu"] for x in res]
            t0 = time.perf_counter()
            res = train_sweep(store, [(work / "runs" / f"sweep{i}", c) for i, c in enumerate(cfgs)], progress=False)
            swp.append(time.perf_counter() - t0)
            fvu_swp = [x.val_metrics["fvu"] for x in res]
        out = {
            "ks": args.ks,
            "dict_size": args.dict_size,
            "rows": args.rows,
            "sequential_s": seq,
            "sweep_s": swp,
            "median_sequential_s": statistics.median(seq),
            "median_sweep_s": statistics.median(swp),
            "saving": 1 - statistics.median(swp) / statistics.median(seq),
            "fvu_sequential": fvu_seq,
            "fvu_sweep": fvu_swp,
        }
        if args.json:
            print(json.dumps(out, indent=2))
            return
        print(
            f"{len(cfgs)} TopK SAEs (k = {args.ks}, F = {args.dict_size}), one pass over {args.rows:,} float16 rows; "
            f"median of {args.repeats}, interleaved"
        )
        print(f"  sequential: {out['median_sequential_s']:.1f} s  (runs: {', '.join(f'{x:.1f}' for x in seq)})")
        print(f"  one sweep:  {out['median_sweep_s']:.1f} s  (runs: {', '.join(f'{x:.1f}' for x in swp)})")
        print(f"  saving: {100 * out['saving']:.1f}%; held-out FVU sequential {fvu_seq}, sweep {fvu_swp}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
