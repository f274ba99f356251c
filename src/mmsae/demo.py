"""The demo pipeline: synthetic pairs with ground truth (and pictures) → SAEs → metrics → every
analysis → scores against the planted truth → HTML report → explorer cache.

Kept out of the CLI so that tests and notebooks can run it too. Each step writes into the run
folder what the stand-alone command would write, so `mmsae explore` and `mmsae report` read a demo
run exactly as they read a user's own.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmsae.data.synthetic import SynthConfig, load_ground_truth, recovery, write_synthetic
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.models.io import load_sae
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

SINGLE_ARCHS = ("topk", "batchtopk", "matryoshka", "relu")


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
    archs: tuple[str, ...] = SINGLE_ARCHS
    """Single-dictionary architectures to train; the first is the one analysed and explored."""
    stability_seeds: int = 3
    """SAEs (seeds 0..N-1, same settings as the first arch) matched for stability; 0 or 1 skips it."""
    multimodal: bool = True
    """Also train the MultiModalSAE and compare it with the pooled SAE (alignment, retrieval, hallucination)."""
    pareto: bool = True
    """Fit PCA, NMF and k-means and train TopK SAEs at L0 2–16, and compare them on one Pareto plot."""
    images: bool = True
    """Draw a picture for every synthetic image row (see `synthetic_images`) for the explorer and report."""

    @classmethod
    def preset(cls, size: str, archs: tuple[str, ...] = SINGLE_ARCHS, **kw) -> "DemoConfig":
        if size == "small":
            return cls(SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24, n_bridges=6),
                       dict_size=256, k=8, l1_coef=1.0, epochs=30, batch_size=256, lr=3e-3, archs=archs, **kw)
        return cls(SynthConfig(n_bridges=24), dict_size=1024, k=8, l1_coef=1.0, epochs=30, batch_size=1024, lr=3e-3,
                   archs=archs, **kw)


class Steps:
    """Numbered progress lines ("[3/9] naming concepts ...") with the time each step took."""

    def __init__(self, total: int, log: Callable[[str], None] | None):
        self.total, self.n, self.log, self.t0 = total, 0, log, None
        self.times: dict[str, float] = {}
        self.name = ""

    def __call__(self, name: str) -> None:
        self.done()
        self.n += 1
        self.name, self.t0 = name, time.perf_counter()
        if self.log:
            self.log(f"[{self.n}/{self.total}] {name} ...")

    def done(self) -> None:
        if self.t0 is not None:
            self.times[self.name] = time.perf_counter() - self.t0
            self.t0 = None


def run_demo(cfg: DemoConfig, out: str | Path, progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from mmsae.analysis import truth
    from mmsae.analysis.bridges import analyze_bridges
    from mmsae.analysis.modality import analyze_modality
    from mmsae.analysis.naming import embed_vocabulary, name_concepts, read_vocabulary, write_names
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
    E = embed_vocabulary(store, terms, templates=("a photo of a {}.",), progress=progress)
    names = name_concepts(sae, E, terms, method="decoder")
    write_names(names, analysis / "names", {"vocab": str(vocab), "n_terms": len(terms), "method": "decoder",
                                            "templates": ["a photo of a {}."], "modality": "text"})
    write_top_examples(sae, store, analysis / "top", k=12, progress=progress)
    scores["naming"] = truth.naming_accuracy(latent_C, [n.name for n in names], gt.names)

    steps("modality scores and Bridge Scores")
    mod = analyze_modality(sae, store, out=analysis / "modality")
    scores["modality_buckets"] = truth.bucket_accuracy(latent_C, [c["bucket"] for c in mod["per_concept"]], gt.kinds)
    br = analyze_bridges(sae, store, out=analysis / "bridges", top=max(50, 2 * cfg.synth.n_bridges),
                         names=[n.name for n in names])
    scores["bridges"] = truth.bridge_recovery(latent_C, gt.bridges, br["top"])

    if cfg.pareto:
        from mmsae.analysis.pareto import ParetoConfig, run_pareto

        sae_arch = main_arch if main_arch != "relu" else "topk"
        steps(f"Pareto: {sae_arch} SAEs against PCA, NMF and k-means at L0 2 to 16")
        par = run_pareto(store, analysis / "pareto",
                         ParetoConfig(levels=(2, 4, 8, 16), saes=(sae_arch,), baselines=("pca", "nmf", "kmeans"),
                                      dict_size=cfg.dict_size, epochs=5, batch_size=cfg.batch_size, lr=cfg.lr,
                                      fit_rows=10000, eval_rows=5000), progress=progress)
        scores["pareto"] = {"at_l0": 8, "r2": best_r2_at(par["points"], 8.5)}

    stab = None
    if cfg.stability_seeds > 1:
        steps(f"stability: {cfg.stability_seeds - 1} more {main_arch} SAEs with other seeds, matched by cosine")
        stab = stability_runs(store, sae, out / f"sae-{main_arch}", analysis / "stability", cfg, progress)
        scores["stability"] = {"mean": stab["stability"], "live": stab["stability_live"],
                               "recovered_concepts": _stability_of_recovered(stab, latent_C)}

    comparison = None
    if cfg.multimodal:
        from mmsae.compare import CompareConfig, compare_models

        steps("multimodal: pooled SAE vs MultiModalSAE (alignment, retrieval, hallucination detection)")
        comparison = compare_models(store, out / "compare",
                                    CompareConfig(dict_size=cfg.dict_size, k=cfg.k, epochs=min(cfg.epochs, 20),
                                                  batch_size=cfg.batch_size, lr=cfg.lr,
                                                  models=("pooled", "multimodal")), progress=progress)
        scores["multimodal"] = {r["model"]: {k: r.get(k) for k in ("shared_recovery", "hallucination_f1",
                                                                 "hallucination_auroc", "clip_score_f1",
                                                                 "alignment_score", "i2t_recall@1")}
                                for r in comparison["rows"]}

    index_run(out, f"sae-{main_arch}", steps, progress)

    summary = {"store": str(store_dir), "rows": len(store), "dim": store.dim, "planted_concepts": len(gt.kinds),
               "planted_bridges": len(gt.bridges), "dict_size": cfg.dict_size, "k": cfg.k, "results": rows,
               "main_sae": str(out / f"sae-{main_arch}"), "ground_truth_scores": scores,
               "synth": dataclasses.asdict(cfg.synth), "out": str(out)}
    return finish_run(out, summary, steps, t_start, format_report)


def finish_run(out: Path, summary: dict[str, Any], steps: Steps, t_start: float,
               fmt: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Last step of a demo: the HTML report (which reads demo_summary.json), then the final
    summary with step times in demo_summary.json and, as text, report.md."""
    from mmsae.report import write_report

    steps("writing the HTML report")
    summary["seconds"] = time.perf_counter() - t_start
    write_json_atomic(out / "demo_summary.json", summary)
    summary["report_html"] = str(write_report(out))
    steps.done()
    summary["step_seconds"] = steps.times
    summary["seconds"] = time.perf_counter() - t_start
    summary["report"] = fmt(summary)
    write_json_atomic(out / "demo_summary.json", summary)
    atomic_write(out / "report.md", summary["report"] + "\n")
    return summary


def prepare_out(out: Path) -> None:
    """An empty run folder; a previous demo's is replaced, anything else is refused (never lose data)."""
    if out.exists() and not out.is_dir():
        raise MmsaeError(f"{out} is a file; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not (out / "demo_summary.json").exists() and not (out / "store" / "manifest.json").exists():
            raise MmsaeError(f"{out} exists and is not an mmsae demo folder; choose another --out")
        shutil.rmtree(out)  # a previous demo run: start over
    out.mkdir(parents=True, exist_ok=True)


def index_run(out: Path, sae_name: str, steps: Steps, progress: bool) -> None:
    """RUN/run.json naming the explored SAE and the store, and the explorer's cached index."""
    from mmsae.explorer.index import RUN_FILE, find_run, load_explorer

    write_json_atomic(out / RUN_FILE, {"sae": sae_name, "store": "store"})
    steps("building the explorer index (concept statistics, histograms)")
    load_explorer(find_run(out), progress=progress)


def _train_config(cfg: DemoConfig, arch: str, seed: int = 0) -> TrainConfig:
    return TrainConfig(arch=arch, dict_size=cfg.dict_size, k=cfg.k, l1_coef=cfg.l1_coef, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, device="cpu", checkpoint_every=0, seed=seed)


def train_archs(store, out: Path, cfg: DemoConfig, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train each of `cfg.archs` into OUT/sae-ARCH; held-out metrics per arch, and the models."""
    rows, models = [], {}
    for arch in cfg.archs:
        t0 = time.perf_counter()
        res = Trainer(store, out / f"sae-{arch}", _train_config(cfg, arch), overwrite=True, progress=progress).run()
        models[arch] = load_sae(res.out_dir)
        val = res.val_metrics
        by = val.get("by_modality", {})
        rows.append({"arch": arch, "fvu": val["fvu"], "l0": val["l0"], "dead_fraction": val["dead_fraction"],
                     "cosine": val["cosine"], "fvu_image": by.get("image", {}).get("fvu"),
                     "fvu_text": by.get("text", {}).get("fvu"), "train_seconds": time.perf_counter() - t0,
                     "sae": res.out_dir})
    return rows, models


def stability_runs(store, sae, sae_dir: Path, out: Path, cfg: DemoConfig, progress: bool) -> dict[str, Any]:
    """Retrain the first arch with seeds 1..N-1 into OUT/saes/ and match each against `sae`."""
    from mmsae.analysis.stability import stability_report
    from mmsae.metrics.evaluate import evaluate_store

    dicts, labels = [sae.W_dec.detach().numpy()], [str(sae_dir)]
    for seed in range(1, cfg.stability_seeds):
        folder = out / "saes" / f"seed{seed}"
        Trainer(store, folder, _train_config(cfg, cfg.archs[0], seed), overwrite=True, progress=progress).run()
        dicts.append(load_sae(folder).W_dec.detach().numpy())
        labels.append(str(folder))
    ev = evaluate_store(sae, store)
    return stability_report(dicts, ev["_frequency"].numpy(), ev["_energy"].numpy(), labels, out=out)


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
        lines.append(f"{r['arch']:<12}{r['recovery']:>10.3f}{r['fvu']:>9.4f}{r['fvu_image']:>9.4f}{r['fvu_text']:>9.4f}"
                     f"{r['l0']:>7.1f}{r['dead_fraction']:>7.3f}{r['cosine']:>7.3f}{r['train_seconds']:>8.1f}")
    main = Path(s["main_sae"]).name
    lines += ["", f"analyses of {main}, scored against the planted truth:"]
    n = sc["naming"]
    lines.append(f"  names:            {n['correct']}/{n['recovered']} recovered concepts got their planted name "
                 f"({n['accuracy']:.1%})")
    b = sc["modality_buckets"]
    lines.append(f"  modality buckets: {b['accuracy']:.1%} of recovered concepts in the right bucket "
                 f"(shared→bimodal {b['shared']['accuracy']:.1%}, image {b['image']['accuracy']:.1%}, "
                 f"text {b['text']['accuracy']:.1%})")
    br = sc["bridges"]
    lines.append(f"  bridges:          {br['found']}/{br['planted']} planted bridges among the significant top "
                 f"bridges (precision {br['precision']:.1%} of {br['reported']})")
    if "pareto" in sc:
        r2 = sc["pareto"]["r2"]
        lines.append(f"  Pareto:           held-out R² at L0 ≤ {sc['pareto']['at_l0']}: "
                     + ", ".join(f"{m} {v:.3f}" for m, v in sorted(r2.items(), key=lambda t: -t[1])))
    if "stability" in sc:
        st = sc["stability"]
        lines.append(f"  stability:        {st['mean']:.3f} mean matched cosine across seeds; "
                     f"{st['recovered_concepts']:.3f} for the planted concepts")
    if "multimodal" in sc:
        lines += ["", "multimodal (held-out pairs; hallucination on planted concept swaps):",
                  f"  {'model':<12}{'align':>8}{'i→t R@1':>9}{'shared rec':>12}{'halluc F1':>11}{'AUROC':>8}"]
        for name, r in sc["multimodal"].items():
            lines.append(f"  {name:<12}{r['alignment_score']:>8.2f}{r['i2t_recall@1']:>9.3f}{r['shared_recovery']:>12.3f}"
                         f"{r['hallucination_f1']:>11.3f}{r['hallucination_auroc']:>8.3f}")
        first = next(iter(sc["multimodal"].values()))
        lines.append(f"  raw cosine (CLIP score) baseline: F1 {first['clip_score_f1']:.3f}")
    lines += ["", f"total {s['seconds']:.0f} s. Run folder: {s['out']}",
              f"  report:   {Path(s['out']) / 'report.html'} (open in a browser; works offline)",
              f"  explore:  mmsae explore {s['out']}",
              "  SAEs:     sae-*/ (inspect with `mmsae info`, re-evaluate with `mmsae eval SAE STORE`)"]
    return "\n".join(lines)
