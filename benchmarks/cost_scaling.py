"""How time and peak memory grow with the dictionary size F and with the number of rows.

    python benchmarks/cost_scaling.py [--dict-sizes 4096,16384,65536] [--rows 100000,1000000,10000000]
                                      [--work /tmp/mmsae-cost] [--json]

Against F (D = 512): a TopK training step (k = 32, batch 4,096, fp32; ms per step, median of 5
after 2 warm-up steps), the Bridge Score (`bridge_top` on 200,000 pairs of sparse codes, k = 32,
as `bridges_scale.py` makes them), stability matching (`match_dictionaries`, pruned, as
`stability_matching.py`) and the explorer's index (`index_pass`: statistics and top examples) of
100,000 rows. Against rows (F = 4,096, k = 32, 512-d float16 stores): top examples
(`top_examples`, k = 12) and the explorer's index. Models have random weights (speed does not
depend on training). Every measurement runs in a fresh process, so its peak RSS (VmHWM, imports
included, from /proc/self/status) is its own; stores are written once into --work and reused (10M rows take 10 GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 512
K = 32


def write_store(root: Path, rows: int) -> None:
    """Rows built from one random block (rows permuted, scaled and sign-flipped per chunk), half
    images half captions: random enough for timing, cheap to write at 10M rows."""
    from mmsae.data.store import StoreWriter

    rng = np.random.default_rng(0)
    base = rng.standard_normal((65536, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    tmp = root.with_name(root.name + ".tmp")
    with StoreWriter(tmp, dim=DIM, dtype="float16", model_id="bench", shard_rows=1 << 20) as w:
        for start in range(0, rows, 65536):
            n = min(65536, rows - start)
            x = base[rng.permutation(65536)[:n]] * rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
            x[:, : DIM // 2] *= rng.choice(np.float32([-1, 1]), DIM // 2)
            w.append(x.astype(np.float16), "image" if (start // 65536) % 2 == 0 else "text")
    tmp.rename(root)


def _sae(F: int):
    import torch

    from mmsae.models.topk import TopKConfig, TopKSAE

    torch.manual_seed(0)
    return TopKSAE(TopKConfig(d_in=DIM, dict_size=F, k=K))


def measure(kind: str, F: int, rows: int, store: str | None) -> dict:
    """One measurement in this process: {"seconds": …} (and what else it reports)."""
    t = time.perf_counter()
    if kind == "train":
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_throughput import synthetic_rows

        from mmsae.models.base import ALL

        x = torch.as_tensor(next(synthetic_rows(4096, DIM)))
        x = (x - x.mean(0)) / x.norm(dim=1).mean() * DIM**0.5
        sae = _sae(F)
        opt = torch.optim.AdamW(sae.parameters(), lr=1e-3, fused=True)
        times = []
        for i in range(7):
            t0 = time.perf_counter()
            out = sae.training_loss({ALL: x})
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            sae.remove_parallel_grads_()
            opt.step()
            sae.normalize_decoder_()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        return {"seconds": step, "vectors_per_s": 4096 / step}
    if kind == "bridges":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bridges_scale import codes

        from mmsae.analysis.bridges import bridge_top

        Zi, Zt = codes(200_000, F, K)
        Dm = np.random.default_rng(1).standard_normal((F, DIM)).astype(np.float32)
        t = time.perf_counter()
        bridge_top(Zi, Zt, Dm, Dm, top=100)
    elif kind == "stability":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from stability_matching import make

        from mmsae.analysis.stability import match_dictionaries

        A, B = make(F, DIM)
        t = time.perf_counter()
        match_dictionaries(A, B, candidates=32, dense_limit=0)
    elif kind in ("index", "top"):
        import torch

        from mmsae.analysis.search import QUERY_POOL
        from mmsae.analysis.top_examples import top_examples
        from mmsae.data.store import EmbeddingStore
        from mmsae.explorer.index import index_pass

        s = EmbeddingStore(store)
        sae = _sae(F)
        sae.encode_sparse(torch.zeros(256, DIM))  # loads the compiled selection (numba's cache) untimed
        t = time.perf_counter()
        if kind == "index":
            index_pass(sae, s, QUERY_POOL)
        else:
            top_examples(sae, s, k=QUERY_POOL)
    return {"seconds": time.perf_counter() - t}


def _vm_hwm_mb() -> float:
    """This process's peak RSS. Not getrusage: on Linux its maxrss survives exec, so a child
    would report at least its parent's peak at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(kind: str, F: int, rows: int, store: str | None) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, str(F), str(rows), store or ""]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        kind, F, rows, store = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] or None
        res = measure(kind, F, rows, store)
        res["peak_rss_mb"] = _vm_hwm_mb()
        print(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dict-sizes", default="4096,16384,65536")
    ap.add_argument("--rows", default="100000,1000000,10000000")
    ap.add_argument("--work", default="/tmp/mmsae-cost")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.dict_sizes.split(",")]
    row_counts = [int(s) for s in args.rows.split(",")]
    stores = {}
    for n in sorted({100_000, *row_counts}):
        stores[n] = work / f"store-{n}"
        if not stores[n].exists():
            t = time.perf_counter()
            write_store(stores[n], n)
            print(f"wrote {n:,} rows in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    results = []
    for F in sizes:
        for kind in ("train", "bridges", "stability", "index"):
            r = run_one(kind, F, 100_000, str(stores[100_000]) if kind == "index" else None)
            results.append({"against": "F", "kind": kind, "F": F, "rows": 100_000, **r})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    for n in row_counts:
        for kind in ("top", "index"):
            r = run_one(kind, 4096, n, str(stores[n]))
            results.append({"against": "rows", "kind": kind, "F": 4096, "rows": n, **r})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    what = {
        "train": "TopK training step (batch 4,096)",
        "bridges": "Bridge Score, 200k pairs",
        "stability": "stability matching (pruned)",
        "index": "explorer index",
        "top": "top examples",
    }
    print(f"\nAgainst F (D = {DIM}, k = {K}; the index over 100,000 rows)\n")
    print("| work | " + " | ".join(f"F = {F:,}" for F in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for kind in ("train", "bridges", "stability", "index"):
        cells = [_cell(r) for r in results if r["against"] == "F" and r["kind"] == kind]
        print(f"| {what[kind]} | " + " | ".join(cells) + " |")
    print(f"\nAgainst rows (F = 4,096, k = {K}, float16 stores)\n")
    print("| work | " + " | ".join(f"{n:,} rows" for n in row_counts) + " |")
    print("|---|" + "---|" * len(row_counts))
    for kind in ("top", "index"):
        cells = [_cell(r) for r in results if r["against"] == "rows" and r["kind"] == kind]
        print(f"| {what[kind]} | " + " | ".join(cells) + " |")


def _cell(r: dict) -> str:
    if "error" in r:
        return f"failed: {r['error'][:60]}"
    t = r["seconds"]
    time_s = f"{t * 1e3:.0f} ms" if t < 1 else f"{t:.1f} s"
    return f"{time_s}, {r['peak_rss_mb']:,.0f} MB"


if __name__ == "__main__":
    main()
