"""Training throughput of mmsae's TopK trainer, with the encoder-GEMM floor measured in the same run.

    python benchmarks/train_throughput.py [--dim 512] [--dict-size 4096] [--k 32] [--batch-size 4096]
                                          [--rows 200000] [--repeats 3] [--json]

Data as in issue 8: each vector a sparse non-negative combination of ~16 of 4,096 random unit
directions, lognormal magnitudes, small noise, plus a constant offset of norm 5. The store is
written once; each repeat trains one pass with `Trainer` (streaming from the store, progress off)
and reports vectors/s over the whole training loop, data streaming and the first steps included
(initialisation and the final validation excluded). The floor is one fp32 forward GEMM
[B, D] × [D, F] timed alone (`torch.matmul`: MKL on CPU), interleaved with the runs; the same GEMM
through oneDNN, which mmsae's encoder uses on CPU (`mmsae.models.kernels.gemm`), is timed beside it as a
second, stricter floor where oneDNN is the faster of the two (AMD CPUs, where MKL runs AVX2 code). `--compare-dense` also times, in the same
run and interleaved, the TopK step with plain autograd through `topk` (what mmsae did before the
sparse backward of `mmsae.models.kernels.sparse_encode`): same data, same seeds.

`--peers` instead runs every trainer in its own process through `benchmarks/peers/run_peer.py`
(mmsae fp32, mmsae bf16 selection, sparsify, SAELens, overcomplete, dictionary_learning, each when
its Python can import it; `benchmarks/peers/setup.sh` makes their venvs), on the same rows, for
the same number of steps, interleaved repeat by repeat with the floor. It prints steady-state
vectors/s, held-out FVU / L0 / dead on the same held-out rows, peak RSS, and each one's ratio
to mmsae.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmsae.data.store import StoreWriter
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer


def synthetic_rows(rows: int, dim: int, n_dirs: int = 4096, active: int = 16, seed: int = 0):
    """The issue's data, in blocks of 16,384 rows."""
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((n_dirs, dim)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    offset = rng.standard_normal(dim).astype(np.float32)
    offset *= 5.0 / np.linalg.norm(offset)
    for start in range(0, rows, 16384):
        n = min(16384, rows - start)
        idx = rng.integers(0, n_dirs, (n, active))
        mag = rng.lognormal(0, 0.5, (n, active)).astype(np.float32)
        yield np.einsum("na,nad->nd", mag, dirs[idx]) + offset + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)


def make_store(root: Path, rows: int, dim: int, n_dirs: int = 4096, active: int = 16, seed: int = 0) -> None:
    with StoreWriter(root, dim=dim, model_id="bench") as w:
        for x in synthetic_rows(rows, dim, n_dirs, active, seed):
            w.append(x, "image")


def make_peer_data(root: Path, rows: int, val_rows: int, dim: int) -> None:
    """train.f32 + val.f32 (raw rows for the peers), meta.json, and an mmsae store of the train rows."""
    root.mkdir(parents=True, exist_ok=True)
    blocks = synthetic_rows(rows + val_rows, dim)
    with (
        open(root / "val.f32", "wb") as val_f,
        open(root / "train.f32", "wb") as train_f,
        StoreWriter(root / "store", dim=dim, model_id="bench") as w,
    ):
        need_val = val_rows
        for x in blocks:
            if need_val:
                v, x = x[:need_val], x[need_val:]
                val_f.write(np.ascontiguousarray(v, np.float32).tobytes())
                need_val -= len(v)
            if len(x):
                train_f.write(np.ascontiguousarray(x, np.float32).tobytes())
                w.append(x, "image")
    (root / "meta.json").write_text(json.dumps({"dim": dim, "rows": rows, "val_rows": val_rows}))


PEERS = ("mmsae", "mmsae-bf16", "sparsify", "saelens", "overcomplete", "dictionary_learning")
IMPORTS = {
    "mmsae": "mmsae",
    "mmsae-bf16": "mmsae",
    "sparsify": "sparsify",
    "saelens": "sae_lens",
    "overcomplete": "overcomplete",
    "dictionary_learning": "dictionary_learning",
}


def peer_pythons(peers_dir: Path, overrides: list[str]) -> dict[str, str]:
    """Which interpreter runs each trainer: --python NAME=PATH, else the peer's venv from setup.sh,
    else this one; a trainer whose library the interpreter cannot import is left out."""
    chosen = dict(o.split("=", 1) for o in overrides)
    found = {}
    for name in PEERS:
        venv = peers_dir / name.replace("mmsae-bf16", "mmsae") / "bin" / "python"
        for py in [chosen.get(name), str(venv) if venv.exists() else None, sys.executable]:
            probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({IMPORTS[name]!r}) is None)"
            if (
                py
                and subprocess.run(
                    [py, "-c", probe], capture_output=True, env={**os.environ, "PYTHONPATH": ""}
                ).returncode
                == 0
            ):
                found[name] = py
                break
    return found


def run_peers(args) -> dict:
    here = Path(__file__).resolve().parent
    pythons = peer_pythons(Path(args.peers_dir), args.python)
    missing = [n for n in PEERS if n not in pythons]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_peer_data(data, args.rows, args.val_rows, args.dim)
        steps = int(0.98 * args.rows / args.batch_size)  # mmsae holds out 1% of its store: no second epoch
        results: dict[str, list[dict]] = {n: [] for n in pythons}
        floors, onednn_floors, bf16_floors = [], [], []
        for r in range(args.repeats):  # interleaved: this machine's speed drifts
            floors.append(gemm_floor(args.batch_size, args.dim, args.dict_size, device=args.device))
            if args.device == "cpu":
                onednn_floors.append(onednn_floor(args.batch_size, args.dim, args.dict_size))
            else:  # on a GPU the second floor is the same GEMM in bf16
                bf16_floors.append(
                    gemm_floor(args.batch_size, args.dim, args.dict_size, device=args.device, dtype=torch.bfloat16)
                )
            for name, py in pythons.items():
                cmd = [
                    py,
                    str(here / "peers" / "run_peer.py"),
                    name,
                    "--data",
                    str(data),
                    "--scratch",
                    str(Path(tmp) / f"{name}{r}"),
                    "--steps",
                    str(steps),
                    "--dict-size",
                    str(args.dict_size),
                    "--k",
                    str(args.k),
                    "--batch-size",
                    str(args.batch_size),
                    "--seed",
                    str(r),
                    "--device",
                    args.device,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
                if proc.returncode != 0:
                    print(f"{name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                if not args.json:
                    res = results[name][-1]
                    print(
                        f"  repeat {r} {name:<20}{res['vectors_per_s']:>10,.0f} /s  FVU {res['val_fvu']:.4f}  "
                        f"RSS {res['peak_rss_mb']:,.0f} MB",
                        file=sys.stderr,
                    )
    floor = statistics.median(floors)
    floor2 = statistics.median(onednn_floors) if onednn_floors and None not in onednn_floors else None
    summary = {}
    for name, runs in results.items():
        if runs:
            med = lambda key: statistics.median(x[key] for x in runs)  # noqa: E731, B023 (called at once, in this iteration)
            summary[name] = {
                "vectors_per_s": med("vectors_per_s"),
                "val_fvu": med("val_fvu"),
                "l0": med("l0"),
                "dead": med("dead"),
                "peak_rss_mb": med("peak_rss_mb"),
                "runs": runs,
            }
    base = summary.get("mmsae", {}).get("vectors_per_s")
    for s_ in summary.values():
        s_["ratio_to_floor"] = s_["vectors_per_s"] / floor
        s_["ratio_to_onednn_floor"] = s_["vectors_per_s"] / floor2 if floor2 else None
        s_["ratio_to_mmsae"] = s_["vectors_per_s"] / base if base else None
    return {
        "config": {k: v for k, v in vars(args).items() if k != "python"},
        "steps": steps,
        "encoder_gemm_floor_vectors_per_s": floor,
        "floors": floors,
        "onednn_gemm_floor_vectors_per_s": floor2,
        "onednn_floors": onednn_floors,
        "bf16_gemm_floor_vectors_per_s": statistics.median(bf16_floors) if bf16_floors else None,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(args.device),
        "trainers": summary,
        "not_run": missing,
        "pythons": pythons,
    }


def print_peers(out: dict) -> None:
    c = out["config"]
    print(f"on {out['device']}")
    print(
        f"TopK, D={c['dim']} F={c['dict_size']} k={c['k']} batch={c['batch_size']}: {out['steps']} steps on "
        f"{c['rows']:,} rows, held-out FVU on {c['val_rows']:,} other rows; median of {c['repeats']}, interleaved"
    )
    fmt = lambda v: f"{v:.2f}" if v else "-"  # noqa: E731
    floor2 = out["onednn_gemm_floor_vectors_per_s"]
    print(
        f"{'trainer':<22}{'vectors/s':>11}{'x floor':>9}{'x oneDNN':>9}{'x mmsae':>9}{'val FVU':>9}{'L0':>7}"
        f"{'dead':>7}{'peak RSS':>11}"
    )
    print(
        f"{'fp32 GEMM (matmul)':<22}{out['encoder_gemm_floor_vectors_per_s']:>11,.0f}{1.0:>9.2f}"
        f"{fmt(floor2 and out['encoder_gemm_floor_vectors_per_s'] / floor2):>9}"
    )
    if out.get("bf16_gemm_floor_vectors_per_s"):
        bf = out["bf16_gemm_floor_vectors_per_s"]
        print(f"{'bf16 GEMM (matmul)':<22}{bf:>11,.0f}{bf / out['encoder_gemm_floor_vectors_per_s']:>9.2f}")
    if floor2:
        print(
            f"{'fp32 GEMM (oneDNN)':<22}{floor2:>11,.0f}{floor2 / out['encoder_gemm_floor_vectors_per_s']:>9.2f}{1.0:>9.2f}"
        )
    for name, s in out["trainers"].items():
        print(
            f"{name:<22}{s['vectors_per_s']:>11,.0f}{s['ratio_to_floor']:>9.2f}{fmt(s['ratio_to_onednn_floor']):>9}"
            f"{fmt(s['ratio_to_mmsae']):>9}{s['val_fvu']:>9.4f}{s['l0']:>7.1f}{s['dead']:>7.3f}{s['peak_rss_mb']:>8,.0f} MB"
        )
    if out["not_run"]:
        print(f"not run (no interpreter imports them; see benchmarks/peers/setup.sh): {', '.join(out['not_run'])}")


def _vectors_per_s(gemm, B: int, reps: int, device: str = "cpu") -> float:
    """Rows per second of `gemm` (one [B, D] batch per call), after two warm-up calls (on a GPU,
    timed from a synchronisation to the next)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        gemm()
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        gemm()
    sync()
    return B * reps / (time.perf_counter() - t)


def gemm_floor(B: int, D: int, F: int, reps: int = 10, device: str = "cpu", dtype=torch.float32) -> float:
    """The issue's floor: one [B, D] × [D, F] `matmul` (fp32: MKL on CPU, cuBLAS without TF32 on a
    GPU), vectors/s."""
    x, W = torch.randn(B, D, device=device, dtype=dtype), torch.randn(D, F, device=device, dtype=dtype)
    if not device.startswith("cuda"):
        return _vectors_per_s(lambda: x @ W, B, reps)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _vectors_per_s(lambda: x @ W, B, reps * 10, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def onednn_floor(B: int, D: int, F: int, reps: int = 10) -> float | None:
    """The same GEMM through oneDNN (`torch.ops.mkldnn._linear_pointwise`, what mmsae's encoder uses
    on CPU), the faster of one call and 1024-row blocks, vectors/s; None without oneDNN. A
    stricter floor where oneDNN beats MKL (AMD CPUs: MKL runs its AVX2 kernels there)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return None
    x, W = torch.randn(B, D), torch.randn(F, D)
    lp = torch.ops.mkldnn._linear_pointwise

    def blocks(rows: int) -> None:
        for lo in range(0, B, rows):
            lp(x[lo : lo + rows], W, None, "none", [], "")

    return max(_vectors_per_s(lambda: blocks(rows), B, reps) for rows in (B, 1024))  # noqa: B023 (called at once)


def dense_training_loss(self, xs, dead_F=None, step=0, total_steps=1):
    """The TopK step with dense autograd through `topk` (the reference the sparse one replaced)."""
    from mmsae.models.base import ALL, LossOutput, auxk_loss, recon_loss, topk_sparse

    x_BD = xs[ALL]
    pre_BF = self.pre_acts(x_BD)
    idx_BK, val_BK = topk_sparse(pre_BF, self.cfg.k)
    x_hat_BD = self.decode_sparse(idx_BK, val_BK)
    mse = recon_loss(x_BD, x_hat_BD)
    aux = auxk_loss(self.W_dec, pre_BF, x_BD, x_hat_BD, dead_F, self.cfg.aux_k)
    fired_F = torch.zeros(self.cfg.dict_size, dtype=torch.bool)
    fired_F[idx_BK[val_BK > 0]] = True
    l0 = (val_BK > 0).float().sum(dim=-1).mean()
    return LossOutput(mse + self.cfg.aux_coef * aux, x_hat_BD, fired_F, l0, {"mse": mse.item(), "auxk": aux.item()})


def dense_batchtopk_loss(self, xs, dead_F=None, step=0, total_steps=1):
    """BatchTopK with dense autograd through its batch-level `topk` (before the sparse backward)."""
    import torch.nn.functional as F

    from mmsae.models.base import ALL, LossOutput, auxk_loss, recon_loss

    x_BD = xs[ALL]
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
    aux = auxk_loss(self.W_dec, pre_BF, x_BD, x_hat_BD, dead_F, self.cfg.aux_k)
    with torch.no_grad():
        m = self.cfg.threshold_momentum
        self.threshold.mul_(1 - m).add_(m * vals.min()) if step else self.threshold.fill_(vals.min())
    fired_F = torch.zeros(F_, dtype=torch.bool)
    fired_F[cols] = True
    return LossOutput(
        mse + self.cfg.aux_coef * aux,
        x_hat_BD,
        fired_F,
        torch.tensor(len(vals) / B),
        {"mse": mse.item(), "auxk": aux.item()},
    )


def train_once(store: Path, out: Path, args, seed: int, dense: bool, select_dtype: str = "float32") -> dict:
    from mmsae.models.batchtopk import BatchTopKSAE
    from mmsae.models.topk import TopKSAE

    cfg = TrainConfig(
        arch=args.arch,
        dict_size=args.dict_size,
        k=args.k,
        batch_size=args.batch_size,
        epochs=1,
        val_fraction=0.02,
        checkpoint_every=0,
        device=args.device,
        seed=seed,
        select_dtype=select_dtype,
    )
    cls, dense_loss = (
        (BatchTopKSAE, dense_batchtopk_loss) if args.arch == "batchtopk" else (TopKSAE, dense_training_loss)
    )
    sparse_loss = cls.training_loss
    if dense:
        cls.training_loss = dense_loss
    try:
        res = Trainer(store, out, cfg, progress=False).run()
    finally:
        cls.training_loss = sparse_loss
    return {
        "vectors_per_s": res.vectors_per_second,
        "val_fvu": res.val_metrics["fvu"],
        "l0": res.val_metrics["l0"],
        "dead": res.val_metrics["dead_fraction"],
    }


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
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: where the trainers (with --peers, every peer) and the floor GEMM run",
    )
    ap.add_argument("--peers", action="store_true", help="every trainer in its own process, peers included")
    ap.add_argument(
        "--peers-dir",
        default=str(Path(__file__).resolve().parent.parent / ".venv-peers"),
        help="where benchmarks/peers/setup.sh made one venv per peer",
    )
    ap.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the interpreter for one trainer (e.g. sparsify=/path/bin/python)",
    )
    ap.add_argument("--val-rows", type=int, default=8192, help="--peers: held-out rows")
    args = ap.parse_args()
    if args.peers:
        out = run_peers(args)
        print(json.dumps(out, indent=2)) if args.json else print_peers(out)
        return
    if args.bf16 and args.arch != "topk":
        ap.error("--bf16 applies to --arch topk")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        make_store(store, args.rows, args.dim)
        runs, floors, onednn_floors, dense_runs, bf16_runs, bf16_floors = [], [], [], [], [], []
        for r in range(args.repeats):  # interleave floor and trainers: this machine's speed drifts
            floors.append(gemm_floor(args.batch_size, args.dim, args.dict_size, device=args.device))
            if args.device.startswith("cuda"):
                onednn_floors.append(None)
                bf16_floors.append(
                    gemm_floor(args.batch_size, args.dim, args.dict_size, device=args.device, dtype=torch.bfloat16)
                )
            else:
                onednn_floors.append(onednn_floor(args.batch_size, args.dim, args.dict_size))
            runs.append(train_once(store, Path(tmp) / f"sae{r}", args, r, dense=False))
            if args.compare_dense:
                dense_runs.append(train_once(store, Path(tmp) / f"dense{r}", args, r, dense=True))
            if args.bf16:
                bf16_runs.append(
                    train_once(store, Path(tmp) / f"bf16{r}", args, r, dense=False, select_dtype="bfloat16")
                )
    out = {
        "config": vars(args),
        "torch_threads": torch.get_num_threads(),
        "mmsae_topk_vectors_per_s": statistics.median(r["vectors_per_s"] for r in runs),
        "encoder_gemm_floor_vectors_per_s": statistics.median(floors),
        "runs": runs,
        "floors": floors,
        "onednn_gemm_floor_vectors_per_s": statistics.median(onednn_floors) if None not in onednn_floors else None,
        "onednn_floors": onednn_floors,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(args.device),
    }
    if bf16_floors:
        out["bf16_gemm_floor_vectors_per_s"] = statistics.median(bf16_floors)
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
    print(
        f"{args.arch}: D={args.dim} F={args.dict_size} k={args.k} batch={args.batch_size}, {args.rows} rows, one pass, "
        f"median of {args.repeats}"
    )
    print(f"{'':<32}{'vectors/s':>12}{'val FVU':>10}{'L0':>7}{'dead':>7}")
    print(f"{'encoder fwd GEMM floor (fp32)':<32}{out['encoder_gemm_floor_vectors_per_s']:>12,.0f}")
    if "bf16_gemm_floor_vectors_per_s" in out:
        print(f"{'the same GEMM in bf16':<32}{out['bf16_gemm_floor_vectors_per_s']:>12,.0f}")
    if out["onednn_gemm_floor_vectors_per_s"]:
        print(f"{'the same GEMM through oneDNN':<32}{out['onednn_gemm_floor_vectors_per_s']:>12,.0f}")
    for i, r in enumerate(runs):
        print(
            f"{'mmsae ' + args.arch + ', run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}{r['l0']:>7.1f}{r['dead']:>7.3f}"
        )
    for i, r in enumerate(bf16_runs):
        print(
            f"{'mmsae topk bf16 select, run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}"
            f"{r['l0']:>7.1f}{r['dead']:>7.3f}"
        )
    for i, r in enumerate(dense_runs):
        print(
            f"{'dense-autograd ' + args.arch + ', run ' + str(i):<32}{r['vectors_per_s']:>12,.0f}{r['val_fvu']:>10.4f}{r['l0']:>7.1f}"
            f"{r['dead']:>7.3f}"
        )
    print(
        f"{'mmsae ' + args.arch + ' (median)':<32}{out['mmsae_topk_vectors_per_s']:>12,.0f}   ratio to floor {out['ratio_to_floor']:.2f}"
    )
    if bf16_runs:
        print(
            f"{'mmsae topk bf16 select (median)':<32}{out['bf16_topk_vectors_per_s']:>12,.0f}   ratio to fp32 floor "
            f"{out['bf16_ratio_to_floor']:.2f}"
        )
    if dense_runs:
        print(
            f"{'dense-autograd ' + args.arch + ' (median)':<32}{out['dense_topk_vectors_per_s']:>12,.0f}   sparse step is "
            f"{out['speedup_over_dense']:.2f}x faster"
        )


if __name__ == "__main__":
    main()
