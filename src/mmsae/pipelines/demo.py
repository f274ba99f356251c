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
    compare_step,
    finish_run,
    index_run,
    name_concepts_into,
    pareto_step,
    prepare_out,
    run_footer,
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
        scores["pareto"] = pareto_step(store, analysis / "pareto", cfg, main_arch, steps, progress)

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
        comparison = compare_step(
            store, out / "compare", cfg, steps, progress, "alignment, retrieval, hallucination detection"
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
        *run_footer(s),
    ]
    return "\n".join(lines)
