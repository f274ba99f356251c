"""Training from stores of growing size: is resident memory flat in store size, and is the
throughput that of a store held in memory?

    python benchmarks/stream_scale.py [--sizes-gb 0.25,4,12] [--steps 120] [--dim 512] [--out DIR]

For each size a float16 store is written (rows: a sparse non-negative mix of 16 of 4,096 random
directions plus an offset, as in issue 8, generated cheaply in blocks), then a fresh process
trains a TopK SAE (F = 4096, k = 32, batch 4096) for --steps steps through `Trainer.start/step`
(the final validation pass is left out: it reads the whole store by design) and reports
steady-state vectors/s (steps after the 10th) and its peak RSS (`VmHWM`, which counts mapped
file pages too). The smallest store is the in-memory reference: the page cache holds it.
A store larger than the page cache reads from disk; run with --warm to read each store once
before timing, so the comparison is of the streaming code, not of the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import torch
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer
store, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = TrainConfig(arch="topk", dict_size=4096, k=32, batch_size=4096, steps=steps, checkpoint_every=0,
                  val_fraction=0.02, device="cpu", init_rows=16384, shuffle_buffer=65536)
t = Trainer(store, out, cfg, progress=False, overwrite=True)
state = t.start()
from mmsae.data.prefetch import Prefetch
batches = Prefetch(t._batches(t.stream_cfg))  # as Trainer.run reads
for i in range(steps):
    if i == 10:
        t0 = time.perf_counter()
    t.step(state, next(batches))
dt = time.perf_counter() - t0
t.close(state)
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's RSS at fork time
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"vectors_per_s": (steps - 10) * cfg.batch_size / dt, "peak_rss_mb": hwm / 1024}))
"""


def write_store(root: Path, gb: float, dim: int) -> int:
    from mmsae.data.store import StoreWriter

    rows = int(gb * (1 << 30) / (dim * 2))
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((4096, dim)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 5 / np.linalg.norm(offset)
    block = 65536
    # a pool of distinct rows, recombined per block: realistic statistics, cheap to write at scale
    pool = np.empty((block, dim), np.float16)
    for lo in range(0, block, 4096):
        idx = rng.integers(0, 4096, (4096, 16))
        mag = rng.lognormal(0, 0.5, (4096, 16)).astype(np.float32)
        pool[lo : lo + 4096] = np.einsum("na,nad->nd", mag, dirs[idx]) + offset
    with StoreWriter(root, dim=dim, dtype="float16", shard_rows=262144, model_id="bench") as w:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            perm = rng.permutation(block)[:n]
            w.append(pool[perm] + rng.standard_normal((n, dim)).astype(np.float16) * np.float16(0.05), "image")
    return rows


def read_once(root: Path) -> float:
    t0 = time.perf_counter()
    for p in sorted((root / "shards").glob("*.npy")):
        with open(p, "rb") as f:
            while f.read(64 << 20):
                pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-gb", default="0.25,4,12")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", default=None, help="folder for the stores (default: a temporary one)")
    ap.add_argument("--warm", action="store_true", help="read each store once before training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.out) if args.out else Path(os.environ.get("TMPDIR", "/tmp")) / "mmsae-stream-bench"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for gb in (float(x) for x in args.sizes_gb.split(",")):
            root = work / f"store-{gb:g}gb"
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            rows = write_store(root, gb, args.dim)
            write_s = time.perf_counter() - t0
            warm_s = read_once(root) if args.warm else None
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(root), str(work / "sae"), str(args.steps)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
            results.append({"store_gb": gb, "rows": rows, "write_s": write_s, "warm_read_s": warm_s, **r})
            shutil.rmtree(root, ignore_errors=True)
            print(f"{gb:g} GB done: {r}", file=sys.stderr)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    ref = results[0]["vectors_per_s"]
    for r in results:
        r["ratio_to_smallest"] = r["vectors_per_s"] / ref
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"TopK F=4096 k=32 batch 4096, {args.steps} steps (steady state after 10), float16 stores, "
        f"{'warm' if args.warm else 'as written'} page cache"
    )
    print(f"{'store':>8} {'rows':>12} {'vectors/s':>10} {'ratio':>6} {'peak RSS':>9}")
    for r in results:
        print(
            f"{r['store_gb']:>6g}GB {r['rows']:>12,} {r['vectors_per_s']:>10,.0f} {r['ratio_to_smallest']:>6.3f} "
            f"{r['peak_rss_mb']:>7.0f}MB"
        )


if __name__ == "__main__":
    main()
