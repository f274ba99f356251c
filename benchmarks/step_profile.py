"""Where a TopK training step's time goes: the operators of `Trainer.step`'s work, per step.

    python benchmarks/step_profile.py [--dim 512] [--dict-size 4096] [--k 32] [--batch-size 4096]
                                      [--select-dtype float32|bfloat16] [--steps 8] [--rows 20]

Builds a TopK SAE and a batch of issue 8's data, runs the step the trainer runs (loss, backward,
parallel-gradient removal, fused AdamW, decoder renormalisation) a few times to warm up, then
prints the median wall time of a step, the fp32 encoder GEMM of the same batch through oneDNN
(the floor the issue compares against, timed in the same process), and PyTorch's profiler table
of self time per operator, averaged per step. Autograd Functions written in Python (the sparse
encoder, the sparse decoder) show their own Python-side work as self time; the compiled row
selection runs inside `_TopKEncode`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import onednn_floor, synthetic_rows  # noqa: E402

from mmsae.models.base import ALL  # noqa: E402
from mmsae.models.topk import TopKConfig, TopKSAE  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--select-dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rows", type=int, default=20, help="operators to list")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.as_tensor(next(synthetic_rows(args.batch_size, args.dim)))
    x = (x - x.mean(0)) / x.norm(dim=1).mean() * args.dim**0.5  # what the trainer's normalisation gives
    sae = TopKSAE(TopKConfig(d_in=args.dim, dict_size=args.dict_size, k=args.k))
    if args.select_dtype != "float32":
        sae.select_dtype = getattr(torch, args.select_dtype)
    opt = torch.optim.AdamW(sae.parameters(), lr=1e-3, fused=True)
    dead_F = torch.zeros(args.dict_size, dtype=torch.bool)

    def step() -> None:
        out = sae.training_loss({ALL: x}, dead_F)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.remove_parallel_grads_()
        opt.step()
        sae.normalize_decoder_()

    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    floor = onednn_floor(args.batch_size, args.dim, args.dict_size)
    ms = statistics.median(times) * 1e3
    gemm_ms = args.batch_size / floor * 1e3 if floor else float("nan")
    print(
        f"D={args.dim} F={args.dict_size} k={args.k} B={args.batch_size} select {args.select_dtype}: "
        f"step {ms:.1f} ms (median of {args.steps}); oneDNN fp32 encoder GEMM alone {gemm_ms:.1f} ms "
        f"→ step at {gemm_ms / ms:.2f}× the floor\n"
    )
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.rows]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / args.steps / 1e3
    print(f"{'operator':<48}{'ms/step':>9}{'calls/step':>12}")
    for e in rows:
        print(f"{e.key[:47]:<48}{e.self_cpu_time_total / args.steps / 1e3:>9.2f}{e.count / args.steps:>12.1f}")
    print(f"{'(all operators, profiled)':<48}{total:>9.2f}")


if __name__ == "__main__":
    main()
