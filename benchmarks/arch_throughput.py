"""Training throughput of every architecture against the same encoder-GEMM floors, in one run.

    python benchmarks/arch_throughput.py [--pairs 65536] [--dim 512] [--dict-size 4096] [--k 32]
                                         [--batch-size 4096] [--repeats 3] [--arch topk relu ...] [--json]

One store of --pairs image/text pairs (issue 8's data for the images, the same rows shifted and
noised for their captions); the penalty-trained architectures (ReLU, Gated, JumpReLU) take
`TrainConfig`'s default weights. Each single-dictionary architecture trains one pass over all rows
(pooled), each paired one (VL-SAE, MultiModalSAE) one pass over the pairs, both modalities in a
step, so every trainer sees 2 × --pairs vectors; batches of --batch-size vectors (pairs for the
paired ones: B/2 each side). Vectors/s is the trainer's own figure (the training loop, data
streaming and first steps included). Each repeat first times the fp32 encoder GEMM of one batch
([B, D] × [D, F]) through MKL (`torch.matmul`) and through oneDNN (what mmsae's sparse encoders
use on CPU), so every row's ratio is to floors measured minutes apart on the same machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import gemm_floor, onednn_floor, synthetic_rows  # noqa: E402

from mmsae.data.store import StoreWriter  # noqa: E402
from mmsae.models.registry import ARCHITECTURES  # noqa: E402
from mmsae.train.config import TrainConfig  # noqa: E402
from mmsae.train.trainer import Trainer  # noqa: E402


def make_paired_store(root: Path, pairs: int, dim: int) -> None:
    rng = np.random.default_rng(1)
    shift = rng.standard_normal(dim).astype(np.float32)
    shift *= 3.0 / np.linalg.norm(shift)
    with StoreWriter(root, dim=dim, model_id="bench") as w:
        start = 0
        for x in synthetic_rows(pairs, dim):
            pid = np.arange(start, start + len(x))
            w.append(x, "image", pair_id=pid)
            w.append(x + shift + 0.1 * rng.standard_normal(x.shape).astype(np.float32), "text", pair_id=pid)
            start += len(x)


def train_once(store: Path, out: Path, arch: str, args, seed: int) -> dict:
    paired = ARCHITECTURES[arch].paired
    cfg = TrainConfig(
        arch=arch,
        dict_size=args.dict_size,
        k=args.k,
        batch_size=args.batch_size // 2 if paired else args.batch_size,
        epochs=1,
        val_fraction=0.02,
        checkpoint_every=0,
        seed=seed,
    )
    res = Trainer(store, out, cfg, progress=False).run()
    return {"vectors_per_s": res.vectors_per_second, "val_fvu": res.val_metrics["fvu"], "l0": res.val_metrics["l0"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {a: [] for a in args.arch}
    mkl, onednn = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_paired_store(store, args.pairs, args.dim)
        for r in range(args.repeats):  # floors and trainers interleaved: this machine's speed drifts
            mkl.append(gemm_floor(args.batch_size, args.dim, args.dict_size))
            onednn.append(onednn_floor(args.batch_size, args.dim, args.dict_size) or float("nan"))
            for arch in args.arch:
                runs[arch].append(train_once(store, Path(tmp) / f"{arch}{r}", arch, args, r))
    floor_mkl, floor_onednn = statistics.median(mkl), statistics.median(onednn)
    rows = {}
    for arch, rs in runs.items():
        v = statistics.median(x["vectors_per_s"] for x in rs)
        rows[arch] = {
            "vectors_per_s": v,
            "x_mkl_floor": v / floor_mkl,
            "x_onednn_floor": v / floor_onednn,
            "val_fvu": statistics.median(x["val_fvu"] for x in rs),
            "l0": statistics.median(x["l0"] for x in rs),
            "runs": rs,
        }
    out = {"config": vars(args), "mkl_floor": floor_mkl, "onednn_floor": floor_onednn, "archs": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"D={args.dim} F={args.dict_size} k={args.k} batch {args.batch_size} vectors, {2 * args.pairs:,} vectors "
        f"({args.pairs:,} pairs), one pass, median of {args.repeats}"
    )
    print(f"floors: fp32 encoder GEMM through MKL {floor_mkl:,.0f} /s, through oneDNN {floor_onednn:,.0f} /s\n")
    print("| architecture | vectors/s | × MKL floor | × oneDNN floor | held-out FVU | L0 |")
    print("|---|---|---|---|---|---|")
    for arch, r in rows.items():
        print(
            f"| {arch} | {r['vectors_per_s']:,.0f} | {r['x_mkl_floor']:.2f} | {r['x_onednn_floor']:.2f} "
            f"| {r['val_fvu']:.4f} | {r['l0']:.1f} |"
        )


if __name__ == "__main__":
    main()
