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
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

MODELS = ("independent", "pooled", "multimodal-noalign", "multimodal", "vlsae")


@dataclass(frozen=True)
class CompareConfig:
    """Shared training settings; every model gets the same F, k, steps and data."""

    dict_size: int = 1024
    """Latents F of every model."""
    k: int = 8
    """Active latents per row (every model here is TopK)."""
    epochs: float = 20.0
    """Passes over the training pairs (single-modality SAEs see the same rows)."""
    batch_size: int = 1024
    """Rows (or pairs) per step."""
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


def _train(store, out: Path, progress: bool, **kw) -> Path:
    Trainer(store, out, TrainConfig(device="cpu", checkpoint_every=0, **kw), overwrite=True, progress=progress).run()
    return out


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
    common = dict(dict_size=cfg.dict_size, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    synthetic = has_ground_truth(store.root)
    if synthetic:
        gt, scfg = load_ground_truth(store.root), synth_config_of(store.root)
        h_img, h_txt, h_lab, _ = hallucination_set(scfg, gt, 4000, seed=cfg.seed)
    rows = []
    for name in cfg.models:
        t0 = time.perf_counter()
        if name == "independent":
            # different seeds: with one seed both SAEs would start from the same random dictionary,
            # and that shared start alone makes their latents partly correspond
            img = load_sae(
                _train(store, out / "independent-image", progress, arch="topk", k=cfg.k, modality="image", **common)
            )
            txt = load_sae(
                _train(
                    store,
                    out / "independent-text",
                    progress,
                    arch="topk",
                    k=cfg.k,
                    modality="text",
                    **{**common, "seed": cfg.seed + 1},
                )
            )
            model = ModalityRouter({"image": img, "text": txt})
        elif name == "pooled":
            model = load_sae(_train(store, out / "pooled", progress, arch="topk", k=cfg.k, **common))
        elif name.startswith("multimodal"):
            lam = 0.0 if name == "multimodal-noalign" else cfg.lambda_align
            model = load_sae(
                _train(store, out / name, progress, arch="multimodal", k=cfg.k, lambda_align=lam, **common)
            )
        else:
            model = load_sae(_train(store, out / "vlsae", progress, arch="vlsae", k=cfg.vlsae_k or cfg.k + 4, **common))
        seconds = time.perf_counter() - t0
        ev = evaluate_store(model, store, split="val")
        cm = crossmodal_report(model, store, split="val", max_pairs=cfg.max_pairs, seed=cfg.seed)
        row = {
            "model": name,
            "alignment_score": cm["alignment"]["alignment_score"],
            "mean_pair_similarity": cm["alignment"]["mean_pair_similarity"],
            "fvu_image": ev["by_modality"]["image"]["fvu"],
            "fvu_text": ev["by_modality"]["text"]["fvu"],
            "i2t_recall@1": cm["code_retrieval"]["i2t_recall@1"],
            "t2i_recall@1": cm["code_retrieval"]["t2i_recall@1"],
            "l0": ev["l0"],
            "train_seconds": seconds,
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
        "n_val_pairs": cm["n_pairs"],
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
    lines = [
        f"Multimodal SAE comparison on {res['store']} (F={c['dict_size']}, k={c['k']}, {c['epochs']:g} epochs; "
        f"held-out metrics on {res['n_val_pairs']} pairs; code-space alignment and retrieval)",
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
