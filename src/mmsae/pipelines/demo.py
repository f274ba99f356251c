"""The demo pipeline: synthetic pairs with ground truth (and pictures) → SAEs → metrics → every
analysis → scores against the planted truth → HTML report → explorer cache.

Kept out of the CLI so that tests and notebooks can run it too. Each step writes into the run
folder what the stand-alone command would write, so `mmsae explore` and `mmsae report` read a demo
run exactly as they read a user's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.data.synthetic import load_ground_truth, recovery, write_synthetic
from mmsae.errors import MmsaeError
from mmsae.pipelines.common import (
    SINGLE_ARCHS,
    DemoConfig,
    Steps,
    finish_run,
    index_run,
    name_concepts_into,
    prepare_out,
    stability_runs,
    train_archs,
)


def run_demo(
    cfg: DemoConfig, out: str | Path, progress: bool = True, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    from mmsae.analysis import truth
    from mmsae.analysis.bridges import analyze_bridges
    from mmsae.analysis.modality import analyze_modality
    from mmsae.analysis.naming import read_vocabulary
    from mmsae.analysis.search import QUERY_POOL
    from mmsae.analysis.top_examples import write_top_examples

    out = Path(out)
    store_dir = out / "store"
    if not cfg.archs or any(a not in SINGLE_ARCHS for a in cfg.archs):
        raise MmsaeError(f"--archs must name some of {', '.join(SINGLE_ARCHS)}; got {','.join(cfg.archs) or 'none'}")
    prepare_out(out)
    analysis = out / "analysis"
    steps = Steps(6 + cfg.pareto + (cfg.stability_seeds > 1) + cfg.multimodal, log)
    t_start = time.perf_counter()

    steps(f"writing {cfg.synth.n_pairs:,} synthetic image/text pairs" + (" and their pictures" if cfg.images else ""))
    store = write_synthetic(store_dir, cfg.synth, progress=progress, images=cfg.images)
    gt = load_ground_truth(store_dir)

    steps(f"training {len(cfg.archs)} SAEs ({', '.join(cfg.archs)}), F={cfg.dict_size}")
    rows, models = train_archs(store, out, cfg, progress)
    for r in rows:
        r["recovery"], _ = recovery(models[r["arch"]].W_dec.detach().numpy(), gt.dictionary_CD)
    main_arch = cfg.archs[0]
    sae = models[main_arch]
    latent_C, _ = truth.match_planted(sae.W_dec.detach().numpy(), gt.dictionary_CD)
    scores: dict[str, Any] = {"recovery": {r["arch"]: r["recovery"] for r in rows}}

    steps(f"naming the {main_arch} SAE's concepts from the vocabulary and finding their top examples")
    vocab = store_dir / "ground_truth" / "vocab.txt"
    terms = read_vocabulary(vocab)
    names = name_concepts_into(sae, store, terms, vocab, analysis / "names", progress=progress)
    write_top_examples(sae, store, analysis / "top", k=QUERY_POOL, progress=progress)
    scores["naming"] = truth.naming_accuracy(latent_C, [n.name for n in names], gt.names)

    steps("modality scores and Bridge Scores")
    mod = analyze_modality(sae, store, out=analysis / "modality")
    scores["modality_buckets"] = truth.bucket_accuracy(latent_C, [c["bucket"] for c in mod["per_concept"]], gt.kinds)
    br = analyze_bridges(
        sae, store, out=analysis / "bridges", top=max(50, 2 * cfg.synth.n_bridges), names=[n.name for n in names]
    )
    scores["bridges"] = truth.bridge_recovery(latent_C, gt.bridges, br["top"])

    if cfg.pareto:
        from mmsae.analysis.pareto import ParetoConfig, run_pareto
        from mmsae.models.registry import ARCHITECTURES

        # the levels are L0 targets, which only k sets directly: a penalty-weight SAE stands aside for TopK
        sae_arch = main_arch if ARCHITECTURES[main_arch].sparsity_field({}) == "k" else "topk"
        steps(f"Pareto: {sae_arch} SAEs against PCA, NMF and k-means at L0 2 to 16")
        par = run_pareto(
            store,
            analysis / "pareto",
            ParetoConfig(
                levels=(2, 4, 8, 16),
                saes=(sae_arch,),
                baselines=("pca", "nmf", "kmeans"),
                dict_size=cfg.dict_size,
                epochs=5,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                fit_rows=10000,
                eval_rows=5000,
            ),
            progress=progress,
        )
        scores["pareto"] = {"at_l0": 8, "r2": best_r2_at(par["points"], 8.5)}

    stab = None
    if cfg.stability_seeds > 1:
        steps(f"stability: {cfg.stability_seeds - 1} more {main_arch} SAEs with other seeds, matched by cosine")
        stab = stability_runs(store, sae, out / f"sae-{main_arch}", analysis / "stability", cfg, progress)
        scores["stability"] = {
            "mean": stab["stability"],
            "live": stab["stability_live"],
            "recovered_concepts": _stability_of_recovered(stab, latent_C),
        }

    comparison = None
    if cfg.multimodal:
        from mmsae.pipelines.compare import CompareConfig, compare_models

        steps("multimodal: pooled SAE vs MultiModalSAE (alignment, retrieval, hallucination detection)")
        comparison = compare_models(
            store,
            out / "compare",
            CompareConfig(
                dict_size=cfg.dict_size,
                k=cfg.k,
                epochs=min(cfg.epochs, 20),
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                models=("pooled", "multimodal"),
            ),
            progress=progress,
        )
        scores["multimodal"] = {
            r["model"]: {
                k: r.get(k)
                for k in (
                    "shared_recovery",
                    "hallucination_f1",
                    "hallucination_auroc",
                    "clip_score_f1",
                    "alignment_score",
                    "i2t_recall@1",
                )
            }
            for r in comparison["rows"]
        }

    index_run(out, f"sae-{main_arch}", steps, progress)

    summary = {
        "store": str(store_dir),
        "rows": len(store),
        "dim": store.dim,
        "planted_concepts": len(gt.kinds),
        "planted_bridges": len(gt.bridges),
        "dict_size": cfg.dict_size,
        "k": cfg.k,
        "results": rows,
        "main_sae": str(out / f"sae-{main_arch}"),
        "ground_truth_scores": scores,
        "synth": dataclasses.asdict(cfg.synth),
        "out": str(out),
    }
    return finish_run(out, summary, steps, t_start, format_report)


def best_r2_at(points: list[dict[str, Any]], max_l0: float) -> dict[str, float]:
    """Per method, the best held-out R² among its points with L0 ≤ max_l0."""
    best: dict[str, float] = {}
    for p in points:
        if p["l0"] <= max_l0:
            best[p["method"]] = max(best.get(p["method"], -np.inf), p["r2"])
    return best


def _stability_of_recovered(stab: dict[str, Any], latent_C: np.ndarray) -> float:
    """Mean matched cosine of the latents that are planted concepts (they should survive a retrain)."""
    per = np.array([c["stability"] for c in stab["per_concept"]])
    lat = latent_C[latent_C >= 0]
    return float(per[lat].mean()) if len(lat) else float("nan")


def format_report(s: dict[str, Any]) -> str:
    sc = s["ground_truth_scores"]
    lines = [
        f"mmsae demo: {s['rows']:,} synthetic rows (dim {s['dim']}, {s['planted_concepts']} planted concepts, "
        f"{s['planted_bridges']} planted bridges), SAEs with F={s['dict_size']}",
        "held-out (validation split) metrics; recovery = share of planted directions matched by a decoder row "
        "with cosine >= 0.9",
        "",
        f"{'arch':<12}{'recovery':>10}{'FVU':>9}{'FVU img':>9}{'FVU txt':>9}{'L0':>7}{'dead':>7}{'cos':>7}{'time s':>8}",
    ]
    for r in s["results"]:
        lines.append(
            f"{r['arch']:<12}{r['recovery']:>10.3f}{r['fvu']:>9.4f}{r['fvu_image']:>9.4f}{r['fvu_text']:>9.4f}"
            f"{r['l0']:>7.1f}{r['dead_fraction']:>7.3f}{r['cosine']:>7.3f}{r['train_seconds']:>8.1f}"
        )
    main = Path(s["main_sae"]).name
    lines += ["", f"analyses of {main}, scored against the planted truth:"]
    n = sc["naming"]
    lines.append(
        f"  names:            {n['correct']}/{n['recovered']} recovered concepts got their planted name "
        f"({n['accuracy']:.1%})"
    )
    b = sc["modality_buckets"]
    lines.append(
        f"  modality buckets: {b['accuracy']:.1%} of recovered concepts in the right bucket "
        f"(shared→bimodal {b['shared']['accuracy']:.1%}, image {b['image']['accuracy']:.1%}, "
        f"text {b['text']['accuracy']:.1%})"
    )
    br = sc["bridges"]
    lines.append(
        f"  bridges:          {br['found']}/{br['planted']} planted bridges among the significant top "
        f"bridges (precision {br['precision']:.1%} of {br['reported']})"
    )
    if "pareto" in sc:
        r2 = sc["pareto"]["r2"]
        lines.append(
            f"  Pareto:           held-out R² at L0 ≤ {sc['pareto']['at_l0']}: "
            + ", ".join(f"{m} {v:.3f}" for m, v in sorted(r2.items(), key=lambda t: -t[1]))
        )
    if "stability" in sc:
        st = sc["stability"]
        lines.append(
            f"  stability:        {st['mean']:.3f} mean matched cosine across seeds; "
            f"{st['recovered_concepts']:.3f} for the planted concepts"
        )
    if "multimodal" in sc:
        lines += [
            "",
            "multimodal (held-out pairs; hallucination on planted concept swaps):",
            f"  {'model':<12}{'align':>8}{'i→t R@1':>9}{'shared rec':>12}{'halluc F1':>11}{'AUROC':>8}",
        ]
        for name, r in sc["multimodal"].items():
            lines.append(
                f"  {name:<12}{r['alignment_score']:>8.2f}{r['i2t_recall@1']:>9.3f}{r['shared_recovery']:>12.3f}"
                f"{r['hallucination_f1']:>11.3f}{r['hallucination_auroc']:>8.3f}"
            )
        first = next(iter(sc["multimodal"].values()))
        lines.append(f"  raw cosine (CLIP score) baseline: F1 {first['clip_score_f1']:.3f}")
    lines += [
        "",
        f"total {s['seconds']:.0f} s. Run folder: {s['out']}",
        f"  report:   {Path(s['out']) / 'report.html'} (open in a browser; works offline)",
        f"  explore:  mmsae explore {s['out']}",
        "  SAEs:     sae-*/ (inspect with `mmsae info`, re-evaluate with `mmsae eval SAE STORE`)",
    ]
    return "\n".join(lines)
