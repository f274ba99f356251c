"""Top examples over a large store in bounded memory: wall time and peak RSS.

Writes a synthetic store of N pairs (2N rows, float16, D=256) once, then, in a fresh process,
computes the top-k images and texts of every concept of a TopK SAE (F latents; random weights
are enough to measure time and memory) and reports the peak RSS of that process.

    python benchmarks/top_examples_scale.py [--pairs 500000] [--dict-size 4096] [--k 10] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(store: str, dict_size: int, k: int) -> None:
    import torch

    from mmsae.analysis.top_examples import to_table, top_examples
    from mmsae.data.store import EmbeddingStore
    from mmsae.models import build_sae

    s = EmbeddingStore(store)
    torch.manual_seed(0)
    sae = build_sae("topk", d_in=s.dim, dict_size=dict_size, k=32)
    t = time.perf_counter()
    tops = top_examples(sae, s, k=k)
    table = to_table(tops)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    print(
        json.dumps(
            {
                "rows": len(s),
                "seconds": time.perf_counter() - t,
                "table_rows": table.num_rows,
                "rss_anon_mb": int(status["RssAnon"].split()[0]) / 1024,
                "rss_file_mb": int(status["RssFile"].split()[0]) / 1024,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "store_mb": sum(f.stat().st_size for f in Path(store).rglob("*.npy")) / 2**20,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=500_000)
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--work", default="bench-top-examples")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        return measure(args.measure, args.dict_size, args.k)
    from mmsae.data.synthetic import SynthConfig, write_synthetic

    store = Path(args.work) / f"store-{args.pairs}"
    if not (store / "manifest.json").exists():
        t = time.perf_counter()
        write_synthetic(store, SynthConfig(n_pairs=args.pairs), dtype="float16", progress=True)
        print(f"wrote {2 * args.pairs:,} rows in {time.perf_counter() - t:.0f} s")
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(store), "--dict-size", str(args.dict_size), "-k", str(args.k)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"top-{args.k} examples of F={args.dict_size} concepts over {r['rows']:,} rows ({r['store_mb']:.0f} MB of "
        f"embeddings on disk): {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB (at the end: "
        f"{r['rss_anon_mb']:.0f} MB anonymous, {r['rss_file_mb']:.0f} MB file-backed, i.e. memory-mapped store "
        f"pages the kernel can drop), {r['table_rows']:,} table rows"
    )


if __name__ == "__main__":
    main()
