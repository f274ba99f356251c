"""Reconstruction against sparsity for SAEs and linear baselines, on the same held-out rows
(Papadimitriou et al. 2025, docs/formulas.md §5). The finding to check: SAEs give the best trade-off.

Each method is fitted on rows of the training split (SAEs by the usual trainer) and scored on
rows of the validation split with the same metric functions; L0 is measured from the codes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.analysis.baselines import Baseline, SAEMethod, score
from mmsae.analysis.results import new_figure, save_figure, write_json, write_markdown
from mmsae.data.store import EmbeddingStore
from mmsae.data.stream import split_mask
from mmsae.errors import MmsaeError
from mmsae.models.registry import ARCHITECTURES, DEFAULT_SWEEP_ARCHITECTURES, SINGLE_ARCHITECTURES

SAE_ARCHS = SINGLE_ARCHITECTURES
BASELINES = ("pca", "ica", "nmf", "kmeans", "dictionary")
MIN_EPOCHS = 10.0
"""SAE epochs on a large store (the old fixed default); smaller stores get more (`auto_schedule`)."""


@dataclass(frozen=True)
class ParetoConfig:
    """Which methods, at which sparsity levels, with how much data."""

    levels: tuple[int, ...] = (2, 4, 8, 16, 32)
    """Target L0 values: components for PCA/ICA/NMF, k for TopK-family SAEs and OMP."""
    saes: tuple[str, ...] = DEFAULT_SWEEP_ARCHITECTURES
    """SAE architectures to train at every level (relu and gated sweep their L1 weight, jumprelu its L0
    weight instead); empty for none."""
    baselines: tuple[str, ...] = BASELINES
    """Linear baselines to fit at every level (k-means at its own cluster counts); empty for none."""
    dict_size: int | None = None
    """Latents of SAEs and atoms of dictionary learning (None: 4 × D)."""
    kmeans_sizes: tuple[int, ...] = ()
    """Cluster counts for k-means (L0 = 1); empty means dict_size / 4 and dict_size."""
    l1_coefs: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    """Sparsity sweep of the L1-penalty SAEs (relu, gated): one SAE per L1 weight."""
    l0_coefs: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    """Sparsity sweep of jumprelu: one SAE per L0 weight."""
    epochs: float | None = None
    """SAE training passes (None: 10, or more on a small store so that every SAE gets at least
    3,000 optimizer steps; `auto_schedule`)."""
    batch_size: int | None = None
    """SAE batch size (None: from the training rows, 128 to 1024, 1024 from 307,200 rows up;
    `auto_schedule`)."""
    lr: float = 3e-3
    """SAE peak learning rate."""
    fit_rows: int = 20000
    """Training rows sampled to fit the baselines (dictionary learning uses at most 5,000)."""
    eval_rows: int = 10000
    """Held-out rows every method is scored on."""
    modality: str | None = None
    """Use rows of one modality only (image or text; None: all rows)."""
    val_fraction: float = 0.1
    """Held-out share (pair-id split, as in training)."""
    seed: int = 0
    """Seed of the row samples, the baselines and the SAEs."""


def _rows(store: EmbeddingStore, split: str, cfg: ParetoConfig, n: int) -> np.ndarray:
    keep = split_mask(store.pair_ids(), np.arange(len(store)), split, cfg.val_fraction)
    if cfg.modality is not None:
        keep &= store.modalities() == cfg.modality
    rows = np.nonzero(keep)[0]
    if len(rows) > n:
        rows = np.sort(np.random.default_rng([cfg.seed, split == "val"]).choice(rows, n, replace=False))
    return rows


def run_pareto(
    store: EmbeddingStore | str, out: str | Path, cfg: ParetoConfig = ParetoConfig(), progress: bool = True
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from mmsae.models.io import load_sae
    from mmsae.train.config import TrainConfig
    from mmsae.train.trainer import Trainer, scheduled

    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    out = Path(out)
    D = store.dim
    F = cfg.dict_size or 4 * D
    bad = [m for m in cfg.saes if m not in SAE_ARCHS] + [m for m in cfg.baselines if m not in BASELINES]
    if bad:
        raise MmsaeError(f"unknown method(s) {bad}; SAEs: {', '.join(SAE_ARCHS)}; baselines: {', '.join(BASELINES)}")
    levels = sorted({int(v) for v in cfg.levels})
    if not levels or levels[0] < 1 or levels[-1] > min(D, F):
        raise MmsaeError(f"levels must be in [1, {min(D, F)}], got {cfg.levels}")
    X_fit = store.get(_rows(store, "train", cfg, cfg.fit_rows))
    X_val = store.get(_rows(store, "val", cfg, cfg.eval_rows))
    if len(X_val) < 10 or len(X_fit) < max(levels):
        raise MmsaeError("too few rows for a Pareto comparison (need held-out rows and more training rows than levels)")

    jobs: list[tuple[str, Any]] = []
    schedules: dict[str, dict[str, Any]] = {}  # per SAE label: the batch size, epochs and steps it got
    for b in cfg.baselines:
        if b == "kmeans":
            for size in cfg.kmeans_sizes or (max(2, F // 4), F):
                jobs.append((b, lambda size=size: Baseline("kmeans", size, seed=cfg.seed)))
        elif b == "dictionary":
            for k in levels:
                jobs.append((b, lambda k=k: Baseline("dictionary", F, k=k, seed=cfg.seed)))
        else:
            for k in levels:
                jobs.append((b, lambda k=k, b=b: Baseline(b, k, seed=cfg.seed)))
    grids = {"k": levels, "l1_coef": cfg.l1_coefs, "l0_coef": cfg.l0_coefs}
    for arch in cfg.saes:
        key = ARCHITECTURES[arch].sparsity_field({})  # the field that sets its sparsity, swept over its grid
        for v in grids[key]:

            def make(arch=arch, key=key, v=v):
                label = f"{arch}-{key.replace('_coef', '')}{v:g}"
                tc = TrainConfig(
                    arch=arch,
                    dict_size=F,
                    lr=cfg.lr,
                    seed=cfg.seed,
                    modality=cfg.modality,
                    val_fraction=cfg.val_fraction,
                    device="cpu",
                    checkpoint_every=0,
                    **{key: v},
                )
                tc, sched = scheduled(store, tc, cfg.batch_size, cfg.epochs, MIN_EPOCHS)
                res = Trainer(store, out / "saes" / label, tc, overwrite=True, progress=False).run()
                schedules[label] = {"batch_size": sched.batch_size, "epochs": sched.epochs, "steps": res.steps}
                return SAEMethod(load_sae(out / "saes" / label), label, cfg.modality)

            jobs.append((arch, make))

    points = []
    bar = tqdm(jobs, desc="pareto", unit="fit", disable=not progress)
    for family, make in bar:
        t0 = time.perf_counter()
        method = make()
        bar.set_postfix_str(method.label)
        fit_X = X_fit[:5000] if family == "dictionary" else X_fit
        method.fit(fit_X)
        s = score(method, X_val)
        point = {"method": family, "label": method.label, **s, "seconds": time.perf_counter() - t0}
        points.append({**point, **schedules.get(method.label, {})})
    bar.close()
    result = {
        "store": str(store.root),
        "config": dataclasses.asdict(cfg),
        "dict_size": F,
        "n_fit": len(X_fit),
        "n_eval": len(X_val),
        "points": points,
    }
    result["frontier"] = frontier(points)
    write_json(out, "pareto", result)
    plot_pareto(points, out)
    write_markdown(out, "pareto", format_pareto(result))
    return result


def training_line(res: dict[str, Any]) -> str:
    """How long the SAEs trained: one schedule when all got the same, else one per label."""
    from mmsae.train.schedule import Schedule

    c = res["config"]
    auto = [x for x, v in (("batch size", c["batch_size"]), ("epochs", c["epochs"])) if v is None]
    how = f"{' and '.join(auto)} sized to the training rows" if auto else "as given"
    sched = {
        p["label"]: Schedule(p["batch_size"], p["epochs"], p["steps"], bool(auto)).describe()
        for p in res["points"]
        if "steps" in p
    }
    if len(set(sched.values())) == 1:
        return f"SAE training ({how}): {next(iter(sched.values()))} each."
    return f"SAE training ({how}): " + "; ".join(f"{lab} {d}" for lab, d in sched.items()) + "."


def frontier(points: list[dict]) -> list[str]:
    """Labels of points no other point beats on both L0 (lower) and R² (higher)."""
    keep = []
    for p in points:
        if not any(q["l0"] <= p["l0"] and q["r2"] > p["r2"] and q is not p for q in points):
            keep.append(p["label"])
    return keep


def plot_pareto(points: list[dict], out: Path) -> list[str]:
    fig, ax = new_figure()
    for m in dict.fromkeys(p["method"] for p in points):
        pts = sorted((p for p in points if p["method"] == m), key=lambda p: p["l0"])
        ax.plot([p["l0"] for p in pts], [p["r2"] for p in pts], marker="o", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L0 (non-zeros per row, held-out)")
    ax.set_ylabel("R² = 1 − FVU (held-out)")
    ax.set_title("Reconstruction vs sparsity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out, "pareto")


def format_pareto(res: dict[str, Any]) -> str:
    lines = [
        "# Pareto: reconstruction vs sparsity",
        "",
        f"Store `{res['store']}`; methods fitted on {res['n_fit']} training rows, scored on {res['n_eval']} "
        f"held-out rows; SAEs and dictionary learning with {res['dict_size']} atoms. R² = 1 − FVU (dataset "
        "level); R² global is overcomplete's (scalar mean). Points on the frontier are marked *.",
        "",
        *([training_line(res), ""] if any("steps" in p for p in res["points"]) else []),
        "| method | label | L0 | R² | R² global | FVU | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    front = set(res["frontier"])
    for p in sorted(res["points"], key=lambda p: (p["method"], p["l0"])):
        star = " *" if p["label"] in front else ""
        lines.append(
            f"| {p['method']} | {p['label']}{star} | {p['l0']:.2f} | {p['r2']:.4f} | {p['r2_global']:.4f} | "
            f"{p['fvu']:.4f} | {p['seconds']:.1f} |"
        )
    return "\n".join(lines)
