"""Training throughput of mmsae's TopK trainer, with the encoder-GEMM floor measured in the same run.

    python benchmarks/train_throughput.py [--dim 512] [--dict-size 4096] [--k 32] [--batch-size 4096]
                                          [--rows 200000] [--repeats 3] [--json]

Data as in issue 8: each vector a sparse non-negative combination of ~16 of 4,096 random unit
directions, lognormal magnitudes, small noise, plus a constant offset of norm 5. The store is
written once; each repeat trains one pass with `Trainer` (streaming from the store, progress off)
and reports vectors/s over the whole training loop, data streaming and the first steps included
(initialisation and the final validation excluded). The floor is one fp32 forward GEMM
[B, D] × [D, F] timed alone, interleaved with the runs. `--compare-dense` also times, in the same
run and interleaved, the TopK step with plain autograd through `topk` (what mmsae did before the
sparse backward of `mmsae.models.sparse_encode`): same data, same seeds.
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


def dense_training_loss(self, x_BD, dead_F=None, step=0, total_steps=1):
    """The TopK step with dense autograd through `topk` (the reference the sparse one replaced)."""
    from mmsae.models.base import LossOutput, auxk_loss, recon_loss, topk_sparse

    pre_BF = self.pre_acts(x_BD)
    idx_BK, val_BK = topk_sparse(pre_BF, self.cfg.k)
    x_hat_BD = self.decode_sparse(idx_BK, val_BK)
    mse = recon_loss(x_BD, x_hat_BD)
    aux = auxk_loss(self.W_dec, pre_BF, x_BD - x_hat_BD, dead_F, self.cfg.aux_k)
    fired_F = torch.zeros(self.cfg.dict_size, dtype=torch.bool)
    fired_F[idx_BK[val_BK > 0]] = True
    l0 = (val_BK > 0).float().sum(dim=-1).mean()
    return LossOutput(mse + self.cfg.aux_coef * aux, x_hat_BD, fired_F, l0, {"mse": mse.item(), "auxk": aux.item()})


def dense_batchtopk_loss(self, x_BD, dead_F=None, step=0, total_steps=1):
    """BatchTopK with dense autograd through its batch-level `topk` (before the sparse backward)."""
    import torch.nn.functional as F

    from mmsae.models.base import LossOutput, auxk_loss, recon_loss

    pre_BF = self.pre_acts(x_BD)
    B, F_ = pre_BF.shape
    flat_val, flat_idx = torch.topk(F.relu(pre_BF).flatten(), B * self.cfg.k, sorted=False)
    keep = flat_val > 0
    flat_val, flat_idx = flat_val[keep], flat_idx[keep]
    order = torch.argsort(flat_idx // F_, stable=True)
    rows, cols, vals = flat_idx[order] // F_, flat_idx[order] % F_, flat_val[order]
    offsets = torch.zeros(B, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.bincount(rows, minlength=B), 0)[:-1]
    x_hat_BD = F.embedding_bag(cols, self.W_dec, offsets, mode="sum", per_sample_weights=vals) + self.b_dec
    mse = recon_loss(x_BD, x_hat_BD)
    aux = auxk_loss(self.W_dec, pre_BF, x_BD - x_hat_BD, dead_F, self.cfg.aux_k)
    with torch.no_grad():
        m = self.cfg.threshold_momentum
        self.threshold.mul_(1 - m).add_(m * vals.min()) if step else self.threshold.fill_(vals.min())
    fired_F = torch.zeros(F_, dtype=torch.bool)
    fired_F[cols] = True
    return LossOutput(mse + self.cfg.aux_coef * aux, x_hat_BD, fired_F, torch.tensor(len(vals) / B),
                      {"mse": mse.item(), "auxk": aux.item()})


def train_once(store: Path, out: Path, args, seed: int, dense: bool, select_dtype: str = "float32") -> dict:
    from mmsae.models.batchtopk import BatchTopKSAE
    from mmsae.models.topk import TopKSAE

    cfg = TrainConfig(arch=args.arch, dict_size=args.dict_size, k=args.k, batch_size=args.batch_size, epochs=1,
                      val_fraction=0.02, checkpoint_every=0, device="cpu", seed=seed, select_dtype=select_dtype)
    cls, dense_loss = (BatchTopKSAE, dense_batchtopk_loss) if args.arch == "batchtopk" else (TopKSAE, dense_training_loss)
    sparse_loss = cls.training_loss
    if dense:
        cls.training_loss = dense_loss
    try:
        res = Trainer(store, out, cfg, progress=False).run()
    finally:
        cls.training_loss = sparse_loss
    return {"vectors_per_s": res.vectors_per_second, "val_fvu": res.val_metrics["fvu"], "l0": res.val_metrics["l0"],
            "dead": res.val_metrics["dead_fraction"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch", choices=["topk", "batchtopk"], default="topk")
    ap.add_argument("--compare-dense", action="store_true", help="also time the dense-autograd step")
    ap.add_argument("--bf16", action="store_true", help="also time --select-dtype bfloat16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.bf16 and args.arch != "topk":
        ap.error("--bf16 applies to --arch topk")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store, args.rows, args.dim)
        runs, floors, dense_runs, bf16_runs = [], [], [], []
        for r in range(args.repeats):  # interleave floor and trainers: this machine's speed drifts
            floors.append(gemm_floor(args.batch_size, args.dim, args.dict_size))
            runs.append(train_once(store, Path(tmp) / f"sae{r}", args, r, dense=False))
            if args.compare_dense:
                dense_runs.append(train_once(store, Path(tmp) / f"dense{r}", args, r, dense=True))
            if args.bf16:
                bf16_runs.append(train_once(store, Path(tmp) / f"bf16{r}", args, r, dense=False, select_dtype="bfloat16"))
    out = {"config": vars(args), "torch_threads": torch.get_num_threads(),
           "mmsae_topk_vectors_per_s": statistics.median(r["vectors_per_s"] for r in runs),
           "encoder_gemm_floor_vectors_per_s": statistics.median(floors), "runs": runs, "floors": floors}
    if bf16_runs:
        out["bf16_topk_vectors_per_s"] = statistics.median(r["vectors_per_s"] for r in bf16_runs)
        out["bf16_runs"] = bf16_runs
        out["bf16_ratio_to_floor"] = out["bf16_topk_vectors_per_s"] / out["encoder_gemm_floor_vectors_per_s"]
    if dense_runs:
        out["dense_topk_vectors_per_s"] = statistics.median(r["vectors_per_s"] for r in dense_runs)
        out["dense_runs"] = dense_runs
        out["speedup_over_dense"] = out["mmsae_topk_vectors_per_s"] / out["dense_topk_vectors_per_s"]
    out["ratio_to_floor"] = out["mmsae_topk_vectors_per_s"] / out["encoder_gemm_floor_vectors_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.arch}: D={args.dim} F={args.dict_size} k={args.k} batch={args.batch_size}, {args.rows} rows, one pass, "
          f"median of {args.repeats}")
    print(f"{'':<32}{'vectors/s':>12}{'val FVU':>10}{'L0':>7}{'dead':>7}")
    print(f"{'encoder fwd GEMM floor (fp32)':<32}{out['encoder_gemm_floor_vectors_per_s']:>12,.0f}")
    for i, r in enumerate(runs):
        print(f"{'mmsae ' + args.arch + ', run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}{r['l0']:>7.1f}{r['dead']:>7.3f}")
    for i, r in enumerate(bf16_runs):
        print(f"{'mmsae topk bf16 select, run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}"
              f"{r['l0']:>7.1f}{r['dead']:>7.3f}")
    for i, r in enumerate(dense_runs):
        print(f"{'dense-autograd ' + args.arch + ', run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}{r['l0']:>7.1f}"
              f"{r['dead']:>7.3f}")
    print(f"{'mmsae ' + args.arch + ' (median)':<32}{out['mmsae_topk_vectors_per_s']:>12,.0f}   ratio to floor {out['ratio_to_floor']:.2f}")
    if bf16_runs:
        print(f"{'mmsae topk bf16 select (median)':<32}{out['bf16_topk_vectors_per_s']:>12,.0f}   ratio to fp32 floor "
              f"{out['bf16_ratio_to_floor']:.2f}")
    if dense_runs:
        print(f"{'dense-autograd ' + args.arch + ' (median)':<32}{out['dense_topk_vectors_per_s']:>12,.0f}   sparse step is "
              f"{out['speedup_over_dense']:.2f}x faster")


if __name__ == "__main__":
    main()
