"""Where a whole TopK training loop's time goes, reading the store included (for a GPU, where the
step's GEMM is a fraction of a millisecond and what surrounds it decides the speed).

    python benchmarks/loop_profile.py [--device cuda] [--dim 512] [--dict-size 4096] [--k 32]
                                      [--batch-size 4096] [--rows 200000] [--top 25]

Writes a store of issue 8's data (as `train_throughput.py`), trains one pass with `Trainer` once
to warm up (compilation, allocator, page cache), then again under cProfile and prints the loop's
vectors/s and the functions with the most own time, and, on a GPU, the run's kernels by GPU time
from PyTorch's profiler (a third pass) against the loop's wall time: the gap between the two is
time the GPU waits on the host.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import make_store  # noqa: E402

from mmsae.train.config import TrainConfig  # noqa: E402
from mmsae.train.trainer import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--top", type=int, default=25, help="functions / kernels to list")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store, args.rows, args.dim)
        cfg = TrainConfig(
            arch="topk",
            dict_size=args.dict_size,
            k=args.k,
            batch_size=args.batch_size,
            epochs=1,
            val_fraction=0.01,
            checkpoint_every=0,
            device=args.device,
        )

        def one_pass(name: str) -> float:
            t = time.perf_counter()
            Trainer(store, Path(tmp) / name, cfg, overwrite=True, progress=False).run()
            return time.perf_counter() - t

        one_pass("warm")
        prof = cProfile.Profile()
        prof.enable()
        seconds = one_pass("profiled")
        prof.disable()
        rows = int(args.rows * 0.99)
        print(
            f"one pass on {args.device}: {seconds:.2f} s, {rows / seconds:,.0f} vectors/s (setup and validation included)"
        )
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
        if args.device.startswith("cuda"):
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
                seconds = one_pass("kernels")
            kernels = sum(e.self_device_time_total for e in p.key_averages()) / 1e6
            print(f"torch.profiler pass: {seconds:.2f} s wall, {kernels:.2f} s of GPU kernel time")
            print(p.key_averages().table(sort_by="self_device_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
