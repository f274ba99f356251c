"""The demo pipeline: synthetic data with ground truth → SAEs → metrics → recovery report.

Kept out of the CLI so that tests and notebooks can run it too.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsae.data.synthetic import SynthConfig, load_ground_truth, recovery, write_synthetic
from mmsae.errors import MmsaeError
from mmsae.models.io import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer


@dataclass(frozen=True)
class DemoConfig:
    """Data and training sizes of the demo."""

    synth: SynthConfig
    """The synthetic data set."""
    dict_size: int
    """Latents per SAE."""
    k: int
    """Active latents (TopK family)."""
    l1_coef: float
    """L1 weight of the ReLU SAE."""
    epochs: float
    """Passes over the training split."""
    batch_size: int
    """Rows per step."""
    lr: float
    """Peak learning rate."""
    archs: tuple[str, ...] = ("topk", "batchtopk", "matryoshka", "relu")
    """Architectures to train."""

    @classmethod
    def preset(cls, size: str, archs: tuple[str, ...] = ("topk", "batchtopk", "matryoshka", "relu")) -> "DemoConfig":
        if size == "small":
            return cls(SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24), dict_size=256, k=8,
                       l1_coef=1.0, epochs=30, batch_size=256, lr=3e-3, archs=archs)
        return cls(SynthConfig(), dict_size=1024, k=8, l1_coef=1.0, epochs=30, batch_size=1024, lr=3e-3, archs=archs)


def run_demo(cfg: DemoConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    out = Path(out)
    store_dir = out / "store"
    if out.exists() and any(out.iterdir()):
        if not (out / "demo_summary.json").exists() and not (store_dir / "manifest.json").exists():
            raise MmsaeError(f"{out} exists and is not an mmsae demo folder; choose another --out")
        shutil.rmtree(out)  # a previous demo run: start over
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    store = write_synthetic(store_dir, cfg.synth, progress=progress)
    gt = load_ground_truth(store_dir)
    rows = []
    for arch in cfg.archs:
        tcfg = TrainConfig(arch=arch, dict_size=cfg.dict_size, k=cfg.k, l1_coef=cfg.l1_coef, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, device="cpu", checkpoint_every=0)
        t0 = time.perf_counter()
        res = Trainer(store, out / f"sae-{arch}", tcfg, overwrite=True, progress=progress).run()
        sae = load_sae(res.out_dir)
        rec, _ = recovery(sae.W_dec.detach().numpy(), gt.dictionary_CD)
        val = res.val_metrics
        rows.append({"arch": arch, "recovery": rec, "fvu": val["fvu"], "l0": val["l0"],
                     "dead_fraction": val["dead_fraction"], "cosine": val["cosine"],
                     "fvu_image": val["by_modality"]["image"]["fvu"], "fvu_text": val["by_modality"]["text"]["fvu"],
                     "train_seconds": time.perf_counter() - t0, "sae": res.out_dir})
    seconds = time.perf_counter() - t_start
    summary = {"store": str(store_dir), "rows": len(store), "dim": store.dim, "planted_concepts": len(gt.kinds),
               "dict_size": cfg.dict_size, "k": cfg.k, "results": rows, "seconds": seconds,
               "synth": dataclasses.asdict(cfg.synth)}
    summary["report"] = format_report(summary)
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(summary["report"] + "\n")
    return summary


def format_report(s: dict[str, Any]) -> str:
    lines = [
        f"mmsae demo: {s['rows']:,} synthetic rows (dim {s['dim']}, {s['planted_concepts']} planted concepts), "
        f"SAEs with F={s['dict_size']}",
        "held-out (validation split) metrics; recovery = share of planted directions matched by a decoder row "
        "with cosine >= 0.9",
        "",
        f"{'arch':<12}{'recovery':>10}{'FVU':>9}{'FVU img':>9}{'FVU txt':>9}{'L0':>7}{'dead':>7}{'cos':>7}{'time s':>8}",
    ]
    for r in s["results"]:
        lines.append(f"{r['arch']:<12}{r['recovery']:>10.3f}{r['fvu']:>9.4f}{r['fvu_image']:>9.4f}{r['fvu_text']:>9.4f}"
                     f"{r['l0']:>7.1f}{r['dead_fraction']:>7.3f}{r['cosine']:>7.3f}{r['train_seconds']:>8.1f}")
    lines += ["", f"total {s['seconds']:.1f} s; store in {s['store']}; SAE folders beside it "
              "(inspect with `mmsae info`, re-evaluate with `mmsae eval SAE STORE`)"]
    return "\n".join(lines)
