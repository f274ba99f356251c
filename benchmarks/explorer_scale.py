"""Is the explorer responsive on a large run? A store of --rows rows (default 1,000,000; float16,
512-d, half images half captions, as pairs) and a TopK SAE with F = 16,384 (random weights: speed
does not depend on training), then: the one-off index build (concept statistics + top examples),
the app's resident memory, and the latency of every API call through the real HTTP stack
(FastAPI TestClient, in process), median of --repeat calls each.

    python benchmarks/explorer_scale.py [--rows 1000000] [--dim 512] [--dict-size 16384] [--k 64] [--dir /tmp/xs]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import time
from pathlib import Path

import numpy as np


def build(root: Path, rows: int, dim: int, F: int, k: int) -> None:
    import torch
    from tqdm import tqdm

    from mmsae.data.store import StoreWriter
    from mmsae.models.io import save_sae
    from mmsae.models.topk import TopKConfig, TopKSAE

    rng = np.random.default_rng(0)
    pairs = rows // 2
    chunk = 65536
    with StoreWriter(root / "store", dim=dim, dtype="float16", model_id="bench", shard_rows=262144) as w:
        for start in tqdm(range(0, pairs, chunk), desc="writing store", unit="chunk"):
            n = min(chunk, pairs - start)
            pid = np.arange(start, start + n)
            for m, off in (("image", 1.0), ("text", -1.0)):
                x = rng.standard_normal((n, dim), dtype=np.float32)
                x[:, 0] += 4 * off
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                w.append(
                    x.astype(np.float16),
                    m,
                    pair_id=pid,
                    source=[f"bench://{m}/{p}" for p in pid],
                    text=[f"{m} {p}" for p in pid],
                )
    torch.manual_seed(0)
    sae = TopKSAE(TopKConfig(d_in=dim, dict_size=F, k=k))
    save_sae(sae, root / "sae", {"store": str((root / "store").resolve())})
    names = [
        {
            "concept": j,
            "name": f"concept{j}",
            "terms": [f"concept{j}", f"term{j % 97}"],
            "scores": [0.5, 0.4],
            "confidence": 0.1,
        }
        for j in range(F)
    ]
    import json

    (root / "names").mkdir(exist_ok=True)
    (root / "names" / "names.json").write_text(json.dumps({"concepts": names}))
    (root / "run.json").write_text(json.dumps({"sae": "sae", "store": "store"}))


def main() -> None:
    from fastapi.testclient import TestClient

    from mmsae.explorer.app import create_app
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dict-size", type=int, default=16384)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default="/tmp/mmsae-explorer-scale")
    ap.add_argument("--keep", action="store_true", help="reuse/keep the generated run folder")
    args = ap.parse_args()
    root = Path(args.dir)
    if not (args.keep and (root / "run.json").exists()):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        t = time.perf_counter()
        build(root, args.rows, args.dim, args.dict_size, args.k)
        print(f"built store + SAE in {time.perf_counter() - t:.0f} s")
        shutil.rmtree(root / "explorer", ignore_errors=True)
    t = time.perf_counter()
    data = load_explorer(find_run(root), progress=True)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    data = load_explorer(find_run(root))
    t_reopen = time.perf_counter() - t
    t = time.perf_counter()
    client = TestClient(create_app(data), base_url="http://localhost")  # the Host the explorer accepts
    client.get("/api/summary")
    t_app = time.perf_counter() - t
    rng = np.random.default_rng(1)
    F, N = data.dict_size, len(data.store)
    calls = {
        "GET /api/summary": lambda i: "/api/summary",
        "GET /api/concepts (sort frequency, page 1)": lambda i: "/api/concepts?sort=frequency&limit=50",
        "GET /api/concepts (sort name, deep page)": lambda i: f"/api/concepts?sort=name&offset={8000 + i}&limit=50",
        "GET /api/concepts (filter q + bucket)": lambda i: f"/api/concepts?q=term{i}&bucket=bimodal",
        "GET /api/concepts/{j}": lambda i: f"/api/concepts/{rng.integers(F)}",
        "GET /api/rows/{r} (12 similar: full scan)": lambda i: f"/api/rows/{rng.integers(N)}",
        "GET /api/rows/{r}?similar=0": lambda i: f"/api/rows/{rng.integers(N)}?similar=0",
        "GET /api/search (names)": lambda i: f"/api/search?q=concept{rng.integers(F)}",
    }
    print(
        f"\nexplorer on {N:,} rows, D={data.store.dim}, F={F:,}; index build {t_index:.1f} s (once, cached), "
        f"reopen {t_reopen:.2f} s, app start {t_app:.2f} s"
    )
    print(f"{'call':<46}{'median ms':>10}{'max ms':>9}")
    for name, url in calls.items():
        times = []
        for i in range(args.repeat):
            u = url(i)
            t = time.perf_counter()
            r = client.get(u)
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (u, r.status_code, r.text[:200])
        print(f"{name:<46}{statistics.median(times):>10.1f}{max(times):>9.1f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
