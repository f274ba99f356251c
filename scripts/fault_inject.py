"""Kill -9 every writer at random moments, re-run it, and check the result equals an uninterrupted run.

Writers: import, embed (MiniLM, offline), train (resumed with --resume), a sweep (re-run with
--overwrite) and the explorer's index build. For each: one uninterrupted reference run, then
ROUNDS times: start the same command, SIGKILL it after a random share of the reference's wall
time, check that what it left is consistent (a store opens and `check()` finds nothing), re-run
it to the end, and compare with the reference (stores: every row and every metadata value;
SAEs: every tensor, bit for bit; the index: every array).

    python scripts/fault_inject.py --rounds 50 --out /tmp/faults        # the long form
    python scripts/fault_inject.py --rounds 1 --writers import,train   # what CI runs (tests/test_fault_injection.py)

Prints one JSON summary; exits 1 if any re-run differs from its reference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WRITERS = ("import", "embed", "train", "sweep", "index")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _mmsae(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmsae", *args]


def _inputs(work: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((30_000, 32)).astype(np.float32)
    np.save(work / "img.npy", img)
    np.save(work / "txt.npy", (img + 0.3 * rng.standard_normal(img.shape)).astype(np.float32))
    words = ["cat", "dog", "red", "blue", "car", "tree", "sky", "boat", "small", "large", "on", "a", "the", "near"]
    (work / "captions.txt").write_text("\n".join(" ".join(rng.choice(words, 6)) + f" {i}" for i in range(1500)) + "\n")
    store = work / "base-store"
    subprocess.run(
        _mmsae(
            "import", "--images", str(work / "img.npy"), "--texts", str(work / "txt.npy"), "--out", str(store), "--json"
        ),
        env=ENV,
        check=True,
        capture_output=True,
    )
    sae = work / "base-sae"
    subprocess.run(
        _mmsae(
            "train",
            str(store),
            "--out",
            str(sae),
            "--dict-size",
            "256",
            "--k",
            "8",
            "--batch-size",
            "512",
            "--steps",
            "30",
            "--device",
            "cpu",
            "--json",
        ),
        env=ENV,
        check=True,
        capture_output=True,
    )
    return {
        "img": work / "img.npy",
        "txt": work / "txt.npy",
        "captions": work / "captions.txt",
        "store": store,
        "sae": sae,
    }


def _command(writer: str, inp: dict[str, Path], out: Path, again: bool) -> list[str]:
    if writer == "import":
        return _mmsae(
            "import",
            "--images",
            str(inp["img"]),
            "--texts",
            str(inp["txt"]),
            "--out",
            str(out),
            "--shard-rows",
            "4000",
            "--json",
        )
    if writer == "embed":
        return _mmsae(
            "embed",
            str(inp["captions"]),
            "--model",
            "minilm",
            "--out",
            str(out),
            "--shard-rows",
            "128",
            "--text-batch-size",
            "64",
            "--device",
            "cpu",
            "--json",
        )
    train = ["--dict-size", "512", "--k", "16", "--batch-size", "256", "--device", "cpu", "--seed", "3", "--json"]
    if writer == "train":
        return _mmsae(
            "train",
            str(inp["store"]),
            "--out",
            str(out),
            "--steps",
            "200",
            "--checkpoint-every",
            "20",
            *train,
            *(["--resume"] if again else []),
        )
    if writer == "sweep":
        return _mmsae(
            "train",
            str(inp["store"]),
            "--out",
            str(out),
            "--steps",
            "80",
            "--sweep",
            "k=8,16",
            "--overwrite",
            *[a for a in train if a not in ("--k", "16")],
        )
    if writer == "index":
        shutil.copytree(inp["sae"], out, dirs_exist_ok=True)
        code = (
            "import sys; from mmsae.explorer.index import load_explorer; from mmsae.runs import find_run; "
            "load_explorer(find_run(sys.argv[1], store=sys.argv[2]))"
        )
        return [sys.executable, "-c", code, str(out), str(inp["store"])]
    raise ValueError(writer)


def _result(writer: str, out: Path) -> dict[str, np.ndarray]:
    """What must equal the reference, as named arrays."""
    if writer in ("import", "embed"):
        from mmsae.data.store import EmbeddingStore

        store = EmbeddingStore(out)
        meta = store.metadata()
        arrays = {"emb": store.all_embeddings()}
        for col in meta.column_names:
            arrays[col] = np.array(meta.column(col).to_pylist(), dtype=object)
        return arrays
    if writer in ("train", "sweep"):
        from safetensors.numpy import load_file

        return {
            f"{p.parent.relative_to(out)}/{k}": v
            for p in sorted(out.rglob("model.safetensors"))
            for k, v in load_file(p).items()
        }
    with np.load(out / "explorer" / "stats.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _equal(writer: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str | None:
    if sorted(a) != sorted(b):
        return f"different contents: {sorted(a)} vs {sorted(b)}"
    for k in a:
        if a[k].shape != b[k].shape:
            return f"{k}: shape {a[k].shape} vs {b[k].shape}"
        if writer == "embed" and k == "emb":  # a resumed run batches the captions differently: float noise
            if not np.allclose(a[k], b[k], atol=1e-5):
                return f"{k}: max difference {np.abs(a[k] - b[k]).max():.3g}"
        elif not np.array_equal(a[k], b[k]):
            return f"{k}: differs"
    return None


def _consistent(writer: str, out: Path) -> str | None:
    """What a kill may leave: a store that opens and checks clean (or none yet)."""
    if writer not in ("import", "embed") or not (out / "manifest.json").exists():
        return None
    from mmsae.data.store import EmbeddingStore

    try:
        problems = EmbeddingStore(out).check()
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return f"store does not open after the kill: {exc}"
    return "; ".join(problems) or None


def _train_finished(out: Path) -> bool:
    """A training run whose last write happened (metrics written, checkpoint removed): `--resume`
    rightly refuses it, and its files are compared as they are."""
    return (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()


def run_writer(writer: str, inp: dict[str, Path], work: Path, rounds: int, rng: random.Random) -> dict:
    ref = work / f"{writer}-ref"
    t0 = time.monotonic()
    subprocess.run(_command(writer, inp, ref, False), env=ENV, check=True, capture_output=True, timeout=1800)
    wall = time.monotonic() - t0
    want = _result(writer, ref)
    stats = {
        "rounds": rounds,
        "reference_s": round(wall, 2),
        "killed": 0,
        "finished_before_kill": 0,
        "equal_to_reference": 0,
        "failures": [],
    }
    for r in range(rounds):
        out = work / f"{writer}-{r}"
        delay = rng.uniform(0.15, 0.95) * wall
        proc = subprocess.Popen(
            _command(writer, inp, out, False), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            proc.wait(timeout=delay)
            stats["finished_before_kill"] += 1  # nothing to re-run: compare what it wrote
            again = subprocess.CompletedProcess(proc.args, proc.returncode, "", "")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            stats["killed"] += 1
            bad = _consistent(writer, out)
            if bad:
                stats["failures"].append(f"round {r} (killed at {delay:.1f} s): {bad}")
            if writer == "train" and _train_finished(out):  # killed while exiting, after its last write
                stats["finished_before_kill"] += 1
                again = subprocess.CompletedProcess(proc.args, 0, "", "")
            else:
                again = subprocess.run(
                    _command(writer, inp, out, True), env=ENV, capture_output=True, text=True, timeout=1800
                )
        if again.returncode != 0:
            stats["failures"].append(f"round {r}: re-run exited {again.returncode}: {again.stderr.strip()[-300:]}")
        else:
            diff = _equal(writer, want, _result(writer, out))
            if diff:
                stats["failures"].append(f"round {r} (killed at {delay:.1f} s): {diff}")
            else:
                stats["equal_to_reference"] += 1
        shutil.rmtree(out, ignore_errors=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="kills per writer (default 20)")
    ap.add_argument("--writers", default=",".join(WRITERS), help=f"comma-separated subset of {','.join(WRITERS)}")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    writers = [w for w in args.writers.split(",") if w]
    unknown = set(writers) - set(WRITERS)
    if unknown:
        ap.error(f"unknown writer(s) {sorted(unknown)}")
    import tempfile

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mmsae-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    try:
        inp = _inputs(work)
        summary = {w: run_writer(w, inp, work, args.rounds, rng) for w in writers}
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 1 if any(s["failures"] for s in summary.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
