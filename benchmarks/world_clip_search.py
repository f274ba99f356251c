"""Several `mmsae world train` recipes side by side on one GPU, each for the same wall-clock time,
then measured with `mmsae world eval --probes`: how docs/world.md's GPU table was made.

    python benchmarks/world_clip_search.py --out DIR [--minutes 6] [--scenes 50000] [--runs a,b]
                                           [--device cuda] [--pack DIR]

Every run is its own process (`python -m mmsae world train ... --minutes M --json`), all started
at once: a small model is bound by kernel launches, so one GPU serves several. `--minutes` makes
each choose its epochs from the time of its first steps, measured while the others run too; the
record in each folder gives the epochs chosen, so `mmsae world train --epochs E` with the same
options reproduces a run (on the same kind of device: GPU sums may round differently run to run).
`--pack DIR` also writes each model folder as DIR/NAME.tar.gz as soon as it is measured, and the
results as DIR/summary.json at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RUNS = {
    "b32-lr3e-4": ["--batch-size", "32", "--lr", "3e-4"],
    "b256-lr3e-4": ["--batch-size", "256", "--lr", "3e-4"],
    "b256-lr1e-3": ["--batch-size", "256", "--lr", "1e-3"],
    "b512-lr5e-4-text0.1": ["--batch-size", "512", "--lr", "5e-4", "--text-lr-scale", "0.1"],
    "b1024-lr5e-4": ["--batch-size", "1024", "--lr", "5e-4"],
    "b1024-lr1e-3": ["--batch-size", "1024", "--lr", "1e-3"],
}
"""Batch size is the main question: in a random batch of 32 colours, sizes, counts and backgrounds
tell almost every pair apart, so the loss never asks for shape or position; among 1,024 they do not."""


def run_one(name: str, extra: list[str], args, log) -> dict:
    folder = Path(args.out) / name
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    train_cmd = [sys.executable, "-m", "mmsae", "world", "train", "--out", str(folder), "--overwrite", "--json"]
    train_cmd += ["--scenes", str(args.scenes), "--minutes", str(args.minutes), "--device", args.device, *extra]
    start = time.perf_counter()
    done = subprocess.run(train_cmd, capture_output=True, text=True, env=env)
    log(f"{name}: train exit {done.returncode} after {time.perf_counter() - start:.0f} s {done.stderr[-800:]}")
    if done.returncode:
        return {"name": name, "error": done.stderr[-800:]}
    trained = json.loads(done.stdout)
    done = subprocess.run(
        [sys.executable, "-m", "mmsae", "world", "eval", str(folder), "--probes", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    log(f"{name}: eval exit {done.returncode} after {time.perf_counter() - start:.0f} s")
    evaluated = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-800:]}
    (folder / "eval.json").write_text(json.dumps(evaluated, indent=2))
    record = json.loads((folder / "world_clip.json").read_text())
    if args.pack:  # at once: a run that finishes is kept even if a later one outlasts the lease
        Path(args.pack).mkdir(parents=True, exist_ok=True)
        with tarfile.open(Path(args.pack) / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=name)
    return {"name": name, "options": extra, "train": trained, "eval": evaluated, "record": record}


def row(r: dict) -> str:
    if "error" in r:
        return f"{r['name']:<22} failed: {r['error'][-200:]}"
    t, e = r["train"], r["eval"]
    p = e.get("probes", {})

    def probe(attr: str, side: str) -> str:
        v = p.get(attr, {}).get(side)
        return "   –" if v is None else f"{v:4.2f}"

    return (
        f"{r['name']:<22}{t['steps']:>7}{t['epochs']:>5}{t['seconds']:>6.0f}{t['last_loss']:>7.3f}"
        f"{e.get('image_to_text_r1', float('nan')):>7.3f}{e.get('text_to_image_r1', float('nan')):>7.3f}"
        f"{e.get('zero_shot_colour', float('nan')):>7.3f}{e.get('zero_shot_shape', float('nan')):>7.3f}"
        f"  {probe('shape', 'image')} {probe('position', 'image')}  {probe('shape', 'text')} {probe('position', 'text')}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--scenes", type=int, default=50_000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--runs", help="comma-separated names of RUNS (default: all)")
    ap.add_argument("--pack", help="also write NAME.tar.gz per model and summary.json here")
    args = ap.parse_args()
    names = args.runs.split(",") if args.runs else list(RUNS)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: run_one(n, RUNS[n], args, log), names))
    header = (
        f"{'run':<22}{'steps':>7}{'ep':>5}{'sec':>6}{'loss':>7}{'i→t':>7}{'t→i':>7}{'zs col':>7}{'zs shp':>7}"
        "  image shape/pos  text shape/pos"
    )
    print(header)
    for r in results:
        print(row(r))
    if args.pack:
        (Path(args.pack) / "summary.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
