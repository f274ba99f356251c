"""One TopK training run of one library, in its own process, for `benchmarks/train_throughput.py`.

    python benchmarks/peers/run_peer.py NAME --data DIR --steps S --dict-size F --k K --batch-size B --seed N
                                        [--device cpu|cuda]

NAME is mmsae, mmsae-bf16, sparsify, saelens, overcomplete or dictionary_learning; each is imported
only here, so every library runs under its own interpreter (its own venv) and its peak RSS is its
own. DIR holds train.f32 and val.f32 (raw float32 rows, dim in meta.json) and, for mmsae, an
mmsae store of the same training rows. Every library trains S steps of batch B with Adam, lr 1e-3,
5% linear warm-up then cosine decay (mmsae's defaults; dictionary_learning's own trainer decays
linearly), each with its own initialisation and loss as its authors ship them. The peers read
their batches with plain file reads (no memory map, so no page-cache pages in their RSS); on a GPU
(`--device cuda`) each batch is then copied to it, as their own trainers do.

Prints one JSON line: vectors/s over the steady-state steps (the first `--warm` excluded), held-out
FVU, L0 and dead fraction on val.f32, and the peak RSS (VmHWM) of this process at the end of
training (imports included; the held-out evaluation, the same code for all, comes after).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Batches:
    """Consecutive batches of B rows of a raw float32 file, read into one reused buffer."""

    def __init__(self, path: Path, dim: int, batch: int, device: str = "cpu"):
        self.f = open(path, "rb", buffering=0)
        self.buf = np.empty((batch, dim), np.float32)
        self.device = device

    def next(self) -> torch.Tensor:
        n = self.f.readinto(memoryview(self.buf).cast("B"))
        if n < self.buf.nbytes:
            self.f.seek(0)
            self.f.readinto(memoryview(self.buf).cast("B"))
        return torch.from_numpy(self.buf).to(self.device)


def schedule(steps: int):
    warm = max(1, math.ceil(0.05 * steps))
    return lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))


def timed_loop(steps: int, warm: int, batches: Batches, step_fn) -> float:
    t0 = None
    for s in range(steps):
        if s == warm:
            t0 = time.perf_counter()
        step_fn(s, batches.next())
    if batches.device.startswith("cuda"):
        torch.cuda.synchronize(batches.device)
    return (steps - warm) * len(batches.buf) / (time.perf_counter() - t0)


def held_out(encode_decode, val_ND: np.ndarray, F: int, device: str = "cpu") -> dict:
    """Held-out FVU, L0 and dead fraction; and the peak RSS of training, read before evaluating."""
    rss = peak_rss_mb()
    x = torch.from_numpy(val_ND).to(device)
    fired = torch.zeros(F, dtype=torch.bool, device=device)
    se, l0 = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), 4096):
            xb = x[i : i + 4096]
            codes_BF, x_hat_BD = encode_decode(xb)
            se += float((xb - x_hat_BD).pow(2).sum())
            active = codes_BF != 0
            l0 += float(active.sum())
            fired |= active.any(0)
    var = float((x - x.mean(0)).pow(2).sum())
    return {"val_fvu": se / var, "l0": l0 / len(x), "dead": float(1 - fired.float().mean()), "peak_rss_mb": rss}


def run_mmsae(args, meta, val, select_dtype: str) -> dict:
    from mmsae.models.io import load_sae
    from mmsae.train.config import TrainConfig
    from mmsae.train.trainer import Trainer

    out = Path(args.scratch)
    cfg = TrainConfig(
        arch="topk",
        dict_size=args.dict_size,
        k=args.k,
        batch_size=args.batch_size,
        steps=args.steps,
        val_fraction=0.01,
        checkpoint_every=0,
        log_every=5,
        device=args.device,
        seed=args.seed,
        select_dtype=select_dtype,
    )
    Trainer(Path(args.data) / "store", out, cfg, overwrite=True, progress=False).run()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first = next(r for r in log if r["step"] > args.warm)  # the log's clock: steady-state steps only
    last = log[-1]
    vps = (last["step"] - first["step"]) * args.batch_size / (last["seconds"] - first["seconds"])
    sae = load_sae(out).to(args.device)

    def enc_dec(x):
        o = sae(x)
        return o.codes_BF, o.x_hat_BD

    return {"vectors_per_s": vps, **held_out(enc_dec, val, args.dict_size, args.device)}


def run_sparsify(args, meta, val) -> dict:
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(meta["dim"], SparseCoderConfig(num_latents=args.dict_size, k=args.k), device=args.device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(args.steps))

    def step(s, x):
        if s == 0:  # as sparsify's trainer: b_dec at the first batch's mean
            sae.b_dec.data = x.mean(0)
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sched.step()

    vps = timed_loop(
        args.steps, args.warm, Batches(Path(args.data) / "train.f32", meta["dim"], args.batch_size, args.device), step
    )
    sae.set_decoder_norm_to_unit_norm()

    def enc_dec(x):
        out = sae(x)
        codes = torch.zeros(len(x), args.dict_size, device=x.device)
        codes.scatter_(1, out.latent_indices, out.latent_acts.float())  # bf16 from its CUDA kernels
        return codes, out.sae_out.float()

    return {"vectors_per_s": vps, **held_out(enc_dec, val, args.dict_size, args.device)}


def run_saelens(args, meta, val) -> dict:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=meta["dim"], d_sae=args.dict_size, k=args.k, device=args.device))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(args.steps))
    since_fired = torch.zeros(args.dict_size, device=args.device)

    def step(s, x):
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=since_fired > 10_000,
                n_training_steps=s,
                is_logging_step=False,
            )
        )
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        with torch.no_grad():
            since_fired.add_(len(x))
            since_fired[(out.feature_acts > 0).any(0)] = 0

    vps = timed_loop(
        args.steps, args.warm, Batches(Path(args.data) / "train.f32", meta["dim"], args.batch_size, args.device), step
    )
    sae.eval()

    def enc_dec(x):
        codes = sae.encode(x)
        return codes, sae.decode(codes)

    return {"vectors_per_s": vps, **held_out(enc_dec, val, args.dict_size, args.device)}


def run_overcomplete(args, meta, val) -> dict:
    import types

    sys.modules["overcomplete.models"] = types.ModuleType("overcomplete.models")  # its image models need torchvision
    for name in ("DinoV2", "SigLIP", "ViT", "ResNet", "ConvNeXt"):
        setattr(sys.modules["overcomplete.models"], name, None)
    from overcomplete.sae import TopKSAE

    sae = TopKSAE(meta["dim"], nb_concepts=args.dict_size, top_k=args.k, device=args.device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(args.steps))

    def step(s, x):  # as overcomplete's train_sae: MSE, gradient clipping at 1
        _, _, x_hat = sae(x)
        (x - x_hat).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        sched.step()

    vps = timed_loop(
        args.steps, args.warm, Batches(Path(args.data) / "train.f32", meta["dim"], args.batch_size, args.device), step
    )
    sae.eval()

    def enc_dec(x):
        _, codes, x_hat = sae(x)
        return codes, x_hat

    return {"vectors_per_s": vps, **held_out(enc_dec, val, args.dict_size, args.device)}


def run_dictionary_learning(args, meta, val) -> dict:
    from dictionary_learning.trainers.top_k import TopKTrainer

    warm = max(1, math.ceil(0.05 * args.steps))
    trainer = TopKTrainer(
        steps=args.steps,
        activation_dim=meta["dim"],
        dict_size=args.dict_size,
        k=args.k,
        layer=0,
        lm_name="bench",
        lr=1e-3,
        warmup_steps=warm,
        decay_start=warm + 1,
        seed=args.seed,
        device=args.device,
    )
    vps = timed_loop(
        args.steps,
        args.warm,
        Batches(Path(args.data) / "train.f32", meta["dim"], args.batch_size, args.device),
        lambda s, x: trainer.update(s, x),
    )
    ae = trainer.ae

    def enc_dec(x):
        codes = ae.encode(x)
        return codes, ae.decode(codes)

    return {"vectors_per_s": vps, **held_out(enc_dec, val, args.dict_size, args.device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "name", choices=["mmsae", "mmsae-bf16", "sparsify", "saelens", "overcomplete", "dictionary_learning"]
    )
    ap.add_argument("--data", required=True)
    ap.add_argument("--scratch", default="", help="mmsae: the SAE's output folder")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warm", type=int, default=3, help="steps left out of the timing")
    ap.add_argument("--dict-size", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where every trainer runs")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    val = np.fromfile(Path(args.data) / "val.f32", dtype=np.float32).reshape(-1, meta["dim"])
    if args.name.startswith("mmsae"):
        res = run_mmsae(args, meta, val, "bfloat16" if args.name == "mmsae-bf16" else "float32")
    else:
        res = {
            "sparsify": run_sparsify,
            "saelens": run_saelens,
            "overcomplete": run_overcomplete,
            "dictionary_learning": run_dictionary_learning,
        }[args.name](args, meta, val)
    print(
        json.dumps(
            {
                "name": args.name,
                **res,
                "peak_rss_with_eval_mb": peak_rss_mb(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
