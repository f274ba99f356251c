"""The seed's comparison of multimodal SAEs, in one call: independent SAEs per modality, one SAE on
pooled images and texts, the MultiModalSAE without and with its alignment term, and VL-SAE, all
trained on the same store and scored on the same held-out pairs.

Kept beside `demo.py` (not in `analysis/`) because it trains models.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsae.data.store import EmbeddingStore
from mmsae.data.view import TrainingData
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.train.config import TrainConfig
from mmsae.train.schedule import Schedule
from mmsae.train.trainer import MIN_HELD_OUT, Trainer, scheduled

MODELS = ("independent", "pooled", "multimodal-noalign", "multimodal", "vlsae")
VAL_FRACTION = TrainConfig.val_fraction
"""Held-out share of every model (the trainer's default), and of the scores."""
MIN_EPOCHS = 20.0
"""Epochs of every model on a large store (the old fixed default); smaller stores get more steps
from `auto_schedule`."""


@dataclass(frozen=True)
class CompareConfig:
    """Shared training settings; every model gets the same F, k and data, and a schedule sized to
    the rows (pairs) it trains on."""

    dict_size: int = 1024
    """Latents F of every model."""
    k: int = 8
    """Active latents per row (every model here is TopK)."""
    epochs: float | None = None
    """Passes over each model's training rows (pairs); None: at least 20, more on small stores so
    that every model gets `train.schedule.MIN_STEPS` steps (`auto_schedule`)."""
    batch_size: int | None = None
    """Rows (or pairs) per step; None: from each model's training rows, 128 to 1024 (`auto_schedule`)."""
    lr: float = 3e-3
    """Peak learning rate."""
    lambda_align: float = 0.3
    """Alignment weight of the aligned MultiModalSAE."""
    vlsae_k: int | None = None
    """k of VL-SAE (None: k + 4; its cosine activations need a little slack, see the docs)."""
    seed: int = 0
    """Seed of every model."""
    models: tuple[str, ...] = MODELS
    """Which rows of the table to produce."""
    max_pairs: int = 5000
    """Held-out pairs for the cross-modal metrics."""


def _train(store, out: Path, progress: bool, cfg: CompareConfig, schedules: list, **kw) -> Path:
    """Train one SAE into `out` with the schedule `auto_schedule` gives it (given values kept);
    appends {"sae", "batch_size", "epochs", "steps", "auto"} to `schedules`."""
    tc, sched = scheduled(
        store, TrainConfig(device="cpu", checkpoint_every=0, **kw), cfg.batch_size, cfg.epochs, MIN_EPOCHS
    )
    res = Trainer(store, out, tc, overwrite=True, progress=progress).run()
    schedules.append(
        {"sae": out.name, **dataclasses.asdict(Schedule(sched.batch_size, sched.epochs, res.steps, sched.auto))}
    )
    return out


def describe_schedules(schedules: list[dict[str, Any]]) -> str:
    """`batch 128, 5,625 steps, 20 epochs` for one SAE; `image: ...; text: ...` for two."""
    one = [Schedule(s["batch_size"], s["epochs"], s["steps"], s["auto"]).describe() for s in schedules]
    if len(one) == 1:
        return one[0]
    return "; ".join(f"{s['sae']}: {d}" for s, d in zip(schedules, one))


def compare_models(
    store: EmbeddingStore | str, out: str | Path, cfg: CompareConfig = CompareConfig(), progress: bool = True
) -> dict[str, Any]:
    from mmsae.data.synthetic import hallucination_set, has_ground_truth, load_ground_truth, synth_config_of
    from mmsae.metrics.crossmodal import crossmodal_report
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.models.io import load_sae
    from mmsae.models.paired import ModalityRouter

    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    out = Path(out)
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise MmsaeError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if len(store.pairs()[0]) == 0:
        raise MmsaeError(f"{store.root} has no image/text pairs to compare on")
    pairs = TrainingData(store, pairs=True, val_fraction=VAL_FRACTION)
    n_val, n_train = pairs.count("val"), pairs.count("train")
    if n_val < MIN_HELD_OUT or n_train == 0:  # the table is held-out scores: a store this small has none
        raise MmsaeError(
            f"compare scores every model on held-out pairs; {store.root} splits into {n_train} training and "
            f"{n_val} held-out pairs ({VAL_FRACTION:.0%} held out), and needs at least 1 and {MIN_HELD_OUT}"
        )
    common = dict(dict_size=cfg.dict_size, lr=cfg.lr, seed=cfg.seed)
    synthetic = has_ground_truth(store.root)
    if synthetic:
        gt, scfg = load_ground_truth(store.root), synth_config_of(store.root)
        h_img, h_txt, h_lab, _ = hallucination_set(scfg, gt, 4000, seed=cfg.seed)
    rows = []
    for name in cfg.models:
        t0 = time.perf_counter()
        sch: list[dict[str, Any]] = []
        if name == "independent":
            # different seeds: with one seed both SAEs would start from the same random dictionary,
            # and that shared start alone makes their latents partly correspond
            img = load_sae(
                _train(
                    store,
                    out / "independent-image",
                    progress,
                    cfg,
                    sch,
                    arch="topk",
                    k=cfg.k,
                    modality="image",
                    **common,
                )
            )
            txt = load_sae(
                _train(
                    store,
                    out / "independent-text",
                    progress,
                    cfg,
                    sch,
                    arch="topk",
                    k=cfg.k,
                    modality="text",
                    **{**common, "seed": cfg.seed + 1},
                )
            )
            model = ModalityRouter({"image": img, "text": txt})
        elif name == "pooled":
            model = load_sae(_train(store, out / "pooled", progress, cfg, sch, arch="topk", k=cfg.k, **common))
        elif name.startswith("multimodal"):
            lam = 0.0 if name == "multimodal-noalign" else cfg.lambda_align
            model = load_sae(
                _train(store, out / name, progress, cfg, sch, arch="multimodal", k=cfg.k, lambda_align=lam, **common)
            )
        else:
            model = load_sae(
                _train(store, out / "vlsae", progress, cfg, sch, arch="vlsae", k=cfg.vlsae_k or cfg.k + 4, **common)
            )
        seconds = time.perf_counter() - t0
        ev = evaluate_store(model, store, split="val")
        cm = crossmodal_report(model, store, split="val", max_pairs=cfg.max_pairs, seed=cfg.seed)
        row = {
            "model": name,
            "alignment_score": cm.alignment["alignment_score"],
            "mean_pair_similarity": cm.alignment["mean_pair_similarity"],
            "fvu_image": ev.by_modality["image"]["fvu"],
            "fvu_text": ev.by_modality["text"]["fvu"],
            "i2t_recall@1": cm.code_retrieval["i2t_recall@1"],
            "t2i_recall@1": cm.code_retrieval["t2i_recall@1"],
            "l0": ev.metrics["l0"],
            "train_seconds": seconds,
            "schedule": sch,
        }
        if synthetic:
            from mmsae.analysis.crossmodal import shared_concept_recovery
            from mmsae.analysis.hallucination import HallucinationDetector, clip_score, compare_with_clip_score
            from mmsae.data.synthetic import fresh_pairs

            row["shared_recovery"] = shared_concept_recovery(model, scfg, gt)["shared_recovery"]
            ref_img, ref_txt, _, _ = fresh_pairs(scfg, gt, 10000, seed=cfg.seed + 1)
            det = HallucinationDetector.fit(model, ref_img, ref_txt)
            h = compare_with_clip_score(det.score(model, h_img, h_txt), clip_score(h_img, h_txt), h_lab, seed=cfg.seed)
            row.update(
                {
                    "hallucination_f1": h["sae"]["f1"],
                    "hallucination_auroc": h["sae"]["auroc"],
                    "clip_score_f1": h["clip_score"]["f1"],
                    "clip_score_auroc": h["clip_score"]["auroc"],
                }
            )
        rows.append(row)
    result = {
        "store": str(store.root),
        "config": dataclasses.asdict(cfg),
        "rows": rows,
        "n_val_pairs": cm.n_pairs,
        "synthetic": synthetic,
    }
    result["table"] = format_table(result)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "comparison.json", result)
    atomic_write(out / "comparison.md", result["table"] + "\n")
    return result


def format_table(res: dict[str, Any]) -> str:
    cols = [
        ("alignment_score", "align", "{:.2f}"),
        ("mean_pair_similarity", "pair sim", "{:.3f}"),
        ("fvu_image", "FVU img", "{:.4f}"),
        ("fvu_text", "FVU txt", "{:.4f}"),
        ("i2t_recall@1", "i→t R@1", "{:.3f}"),
        ("t2i_recall@1", "t→i R@1", "{:.3f}"),
    ]
    if res["synthetic"]:
        cols += [
            ("shared_recovery", "shared rec", "{:.3f}"),
            ("hallucination_f1", "halluc F1", "{:.3f}"),
            ("hallucination_auroc", "halluc AUROC", "{:.3f}"),
        ]
    c = res["config"]
    auto = [x for x, v in (("batch size", c["batch_size"]), ("epochs", c["epochs"])) if v is None]
    lines = [
        f"Multimodal SAE comparison on {res['store']} (F={c['dict_size']}, k={c['k']}; held-out metrics on "
        f"{res['n_val_pairs']} pairs; code-space alignment and retrieval)",
        "",
        "Training (rows, or pairs for the multimodal SAEs, per step; "
        + (f"{' and '.join(auto)} sized to each model's training split" if auto else "as given")
        + "): "
        + "; ".join(f"{r['model']} {describe_schedules(r['schedule'])}" for r in res["rows"]),
        "",
        "| model | " + " | ".join(h for _, h, _ in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['model']} | " + " | ".join(f.format(r[k]) for k, _, f in cols) + " |")
    if res["synthetic"] and res["rows"]:
        r0 = res["rows"][0]
        lines += [
            "",
            f"raw-cosine (CLIP score) baseline for hallucination: F1 {r0['clip_score_f1']:.3f}, "
            f"AUROC {r0['clip_score_auroc']:.3f}",
        ]
    return "\n".join(lines)
