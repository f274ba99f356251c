"""What the demo pipelines share: their configuration, numbered steps, training the single-SAE
architectures, the stability retrains, and finishing a run folder (report, summary, explorer
index). `demo.py` (planted data), `demo_world.py` (the scene world) and `demo_text.py` (real
captions) build on it; none imports another.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsae.data.manifest import MANIFEST_NAME
from mmsae.data.synthetic import SynthConfig
from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write, write_json_atomic
from mmsae.models.io import load_sae
from mmsae.models.registry import DEFAULT_SWEEP_ARCHITECTURES, SINGLE_ARCHITECTURES
from mmsae.train.config import TrainConfig
from mmsae.train.trainer import Trainer

SINGLE_ARCHS = SINGLE_ARCHITECTURES


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
    archs: tuple[str, ...] = DEFAULT_SWEEP_ARCHITECTURES
    """Single-dictionary architectures to train; the first is the one analysed and explored."""
    stability_seeds: int = 3
    """SAEs of the first arch (seeds 0..N-1, same settings) matched one-to-one by cosine to measure
    the stability of its concepts; 0 or 1 skips the stability retrains."""
    multimodal: bool = True
    """Also train the MultiModalSAE and compare it with the pooled SAE (alignment, retrieval, hallucination)."""
    pareto: bool = True
    """Fit PCA, NMF and k-means and train TopK SAEs at L0 2–16, and compare them on one Pareto plot."""
    images: bool = True
    """Draw a picture for every synthetic image row (see `synthetic_images`) for the explorer and report."""

    @classmethod
    def preset(cls, size: str, **kw) -> DemoConfig:
        """The sizes of `mmsae demo --size SIZE` ("default" or "small"); `kw` sets the other fields."""
        if size == "small":
            return cls(
                SynthConfig(dim=64, n_pairs=4000, n_shared=48, n_image=24, n_text=24, n_bridges=6),
                dict_size=256,
                k=8,
                l1_coef=1.0,
                epochs=30,
                batch_size=256,
                lr=3e-3,
                **kw,
            )
        return cls(
            SynthConfig(n_bridges=24),
            dict_size=1024,
            k=8,
            l1_coef=1.0,
            epochs=30,
            batch_size=1024,
            lr=3e-3,
            **kw,
        )


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


def finish_run(
    out: Path, summary: dict[str, Any], steps: Steps, t_start: float, fmt: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """Last step of a demo: the HTML report (which reads demo_summary.json), then the final
    summary with step times in demo_summary.json and, as text, report.md."""
    from mmsae.pipelines.report import write_report

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


DEMO_MARK = ".mmsae-demo"
"""Written first into a demo's run folder, so a run that failed half-way is still recognised as a
demo's (and replaced by the next run) rather than refused as someone else's folder."""


def prepare_out(out: Path) -> None:
    """An empty run folder; a previous demo's is replaced, anything else is refused (never lose data)."""
    if out.exists() and not out.is_dir():
        raise MmsaeError(f"{out} is a file; choose another --out")
    if out.exists() and any(out.iterdir()):
        ours = (out / DEMO_MARK, out / "demo_summary.json", out / "store" / MANIFEST_NAME)
        if not any(p.exists() for p in ours):
            raise MmsaeError(f"{out} exists and is not an mmsae demo folder; choose another --out")
        shutil.rmtree(out)  # a previous demo run: start over
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARK).write_text("written by mmsae demo; the next demo run may replace this folder\n")


def index_run(out: Path, sae_name: str, steps: Steps, progress: bool) -> None:
    """RUN/run.json naming the explored SAE and the store, and the explorer's cached index."""
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import RUN_FILE, find_run

    write_json_atomic(out / RUN_FILE, {"sae": sae_name, "store": "store"})
    steps("building the explorer index (concept statistics, histograms)")
    load_explorer(find_run(out), progress=progress)


def train_config(cfg: DemoConfig, arch: str, seed: int = 0) -> TrainConfig:
    return TrainConfig(
        arch=arch,
        dict_size=cfg.dict_size,
        k=cfg.k,
        l1_coef=cfg.l1_coef,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        device="cpu",
        checkpoint_every=0,
        seed=seed,
    )


def train_archs(store, out: Path, cfg: DemoConfig, progress: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train each of `cfg.archs` into OUT/sae-ARCH; held-out metrics per arch, and the models."""
    rows, models = [], {}
    for arch in cfg.archs:
        t0 = time.perf_counter()
        res = Trainer(store, out / f"sae-{arch}", train_config(cfg, arch), overwrite=True, progress=progress).run()
        models[arch] = load_sae(res.out_dir)
        val = res.val_metrics
        by = val.get("by_modality", {})
        rows.append(
            {
                "arch": arch,
                "fvu": val["fvu"],
                "l0": val["l0"],
                "dead_fraction": val["dead_fraction"],
                "cosine": val["cosine"],
                "fvu_image": by.get("image", {}).get("fvu"),
                "fvu_text": by.get("text", {}).get("fvu"),
                "train_seconds": time.perf_counter() - t0,
                "sae": res.out_dir,
            }
        )
    return rows, models


def stability_runs(store, sae, sae_dir: Path, out: Path, cfg: DemoConfig, progress: bool) -> dict[str, Any]:
    """Retrain the first arch with seeds 1..N-1 into OUT/saes/ and match each against `sae`."""
    from mmsae.analysis.stability import retrain_for_stability, stability_of_saes

    configs = [(f"seed{seed}", train_config(cfg, cfg.archs[0], seed)) for seed in range(1, cfg.stability_seeds)]
    folders = retrain_for_stability(store, out, configs, progress=progress)
    return stability_of_saes(store, [sae_dir, *folders], out=out)


def name_concepts_into(
    sae, store, terms: list[str], vocab: Path | str, out: Path, encoder=None, progress: bool = False
) -> list:
    """Name every concept of `sae` from `terms` (decoder cosine, "a photo of a {}." prompts) and write
    OUT/names.{json,parquet} as `mmsae name` would; returns the names."""
    from mmsae.analysis.naming import embed_vocabulary, name_concepts, write_names

    template = "a photo of a {}."
    E = embed_vocabulary(store, terms, encoder=encoder, templates=(template,), progress=progress)
    names = name_concepts(sae, E, terms, method="decoder")
    meta = {
        "vocab": str(vocab),
        "n_terms": len(terms),
        "method": "decoder",
        "templates": [template],
        "modality": "text",
    }
    write_names(names, out, meta)
    return names


def best_r2_at(points: list[dict[str, Any]], max_l0: float) -> dict[str, float]:
    """Per method, the best held-out R² among its points with L0 ≤ max_l0."""
    best: dict[str, float] = {}
    for p in points:
        if p["l0"] <= max_l0:
            best[p["method"]] = max(best.get(p["method"], float("-inf")), p["r2"])
    return best


def pareto_step(
    store, out: Path, cfg: DemoConfig, main_arch: str, steps: Steps, progress: bool, epochs: int = 5
) -> dict[str, Any]:
    """The demos' Pareto step: SAEs of the main arch (TopK when its sparsity is a penalty weight:
    the levels are L0 targets, which only k sets directly) against PCA, NMF and k-means at L0 2-16,
    into OUT; the best held-out R² per method at L0 ≤ 8, and which SAE arch stood for the main one."""
    from mmsae.analysis.pareto import ParetoConfig, run_pareto
    from mmsae.models.registry import ARCHITECTURES

    sae_arch = main_arch if ARCHITECTURES[main_arch].sparsity_field({}) == "k" else "topk"
    steps(f"Pareto: {sae_arch} SAEs against PCA, NMF and k-means at L0 2 to 16")
    par = run_pareto(
        store,
        out,
        ParetoConfig(
            levels=(2, 4, 8, 16),
            saes=(sae_arch,),
            baselines=("pca", "nmf", "kmeans"),
            dict_size=cfg.dict_size,
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            fit_rows=10000,
            eval_rows=5000,
        ),
        progress=progress,
    )
    return {"at_l0": 8, "r2": best_r2_at(par["points"], 8.5), "arch": sae_arch}


def compare_step(store, out: Path, cfg: DemoConfig, steps: Steps, progress: bool, what: str) -> dict[str, Any]:
    """The demos' multimodal step: the pooled SAE against the MultiModalSAE, into OUT."""
    from mmsae.pipelines.compare import CompareConfig, compare_models

    steps(f"multimodal: pooled SAE vs MultiModalSAE ({what})")
    return compare_models(
        store,
        out,
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


def run_footer(s: dict[str, Any]) -> list[str]:
    """The last lines of a demo's summary: the time and where to look next."""
    return [
        f"total {s['seconds']:.0f} s. Run folder: {s['out']}",
        f"  report:   {Path(s['out']) / 'report.html'} (open in a browser; works offline)",
        f"  explore:  mmsae explore {s['out']}",
        "  SAEs:     sae-*/ (inspect with `mmsae info`, re-evaluate with `mmsae eval SAE STORE`)",
    ]
