"""Stability of a dictionary across retrains (Papadimitriou et al. 2025, docs/formulas.md §5):

    Stability(D, D') = max over permutations P of (1/F) tr(D Pᵀ D'ᵀ)  (unit rows),

the mean cosine of the best one-to-one matching of concepts. The assignment is solved exactly
by scipy's Hungarian-type solver on the full cosine matrix when F is small; for large F it is
solved exactly on a pruned sparse graph (each concept's `candidates` most similar partners, both
ways) with scipy's sparse full bipartite matching, which needs no dense F × F matrix. Pruning
can only miss a pair outside both top lists, whose cosine is below every candidate's; its
measured effect on the stability is reported by `benchmarks/stability_matching.py`.

Every retrain of a comparison gets its own seed. Runs that differ by data mix therefore differ by
seed too, so `mmsae analyze stability --mixes` also trains a seed-only baseline (other seeds at the
reference's mix) and reports both: stability across mixes is only meaningful beside stability across
seeds under the same conditions (Papadimitriou et al. 2025).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from mmsae.analysis.results import new_figure, save_figure, write_json, write_markdown
from mmsae.vectors import unit_rows

DENSE_LIMIT = 4096
"""Up to this F the assignment runs on the dense cosine matrix."""


def match_dictionaries(
    A_FD: np.ndarray,
    B_FD: np.ndarray,
    absolute: bool = False,
    candidates: int = 32,
    dense_limit: int = DENSE_LIMIT,
    block: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """(perm, cos): concept i of A is matched to concept perm[i] of B, with cosine cos[i].

    `absolute` matches on |cos| (a sign flip counts as the same concept).
    """
    A, B = unit_rows(np.asarray(A_FD, np.float32)), unit_rows(np.asarray(B_FD, np.float32))
    if A.shape != B.shape:
        raise ValueError(f"dictionaries must have the same shape, got {A.shape} and {B.shape}")
    F = len(A)
    if F <= dense_limit:
        S = A @ B.T
        S = np.abs(S) if absolute else S
        rows, cols = linear_sum_assignment(S, maximize=True)
        perm = cols[np.argsort(rows)]
        return perm, S[np.arange(F), perm].astype(np.float64)
    m = min(candidates, F)
    while True:
        graph = _pruned_graph(A, B, absolute, m, block)
        try:
            rows, cols = min_weight_full_bipartite_matching(graph)
            break
        except ValueError:  # no perfect matching among the candidates: widen them
            if m >= F:
                raise
            m = min(F, 4 * m)
    perm = np.empty(F, dtype=np.int64)
    perm[rows] = cols
    cos = np.einsum("fd,fd->f", A, B[perm]).astype(np.float64)
    return perm, (np.abs(cos) if absolute else cos)


def _pruned_graph(A, B, absolute: bool, m: int, block: int) -> sp.csr_matrix:
    """Sparse [F, F] weights 2 − sim on each row's and each column's top-m similarities (all > 0)."""
    F = len(A)
    rows, cols, vals = [], [], []
    for X, Y, flip in ((A, B, False), (B, A, True)):
        for lo in range(0, F, block):
            S = X[lo : lo + block] @ Y.T
            S = np.abs(S) if absolute else S
            idx = np.argpartition(-S, m - 1, axis=1)[:, :m] if m < F else np.tile(np.arange(F), (len(S), 1))
            r = np.repeat(np.arange(lo, lo + len(S)), idx.shape[1])
            c = idx.ravel()
            v = np.take_along_axis(S, idx, axis=1).ravel()
            rows.append(c if flip else r)
            cols.append(r if flip else c)
            vals.append(v)
    r, c, v = np.concatenate(rows), np.concatenate(cols), 2.0 - np.concatenate(vals).astype(np.float64)
    key = r.astype(np.int64) * F + c  # an edge found from both sides appears twice: keep one
    _, first = np.unique(key, return_index=True)
    return sp.csr_matrix((v[first], (r[first], c[first])), shape=(F, F))


def stability(A_FD, B_FD, absolute: bool = False, **kw) -> float:
    """The mean matched cosine (1 = the same dictionary up to order)."""
    return float(match_dictionaries(A_FD, B_FD, absolute, **kw)[1].mean())


def _match_runs(reference, dictionaries, labels, absolute: bool) -> tuple[list[dict], np.ndarray]:
    """Per run {"against", "stability"}, and the [runs, F] matched cosines of the reference's concepts."""
    per_run, matched = [], []
    for D, lab in zip(dictionaries, labels):
        _, cos = match_dictionaries(reference, D, absolute)
        matched.append(cos)
        per_run.append({"against": lab, "stability": float(cos.mean())})
    return per_run, np.array(matched)


def stability_report(
    dictionaries: list[np.ndarray],
    frequency_F: np.ndarray,
    energy_F: np.ndarray,
    labels: list[str],
    out: str | Path | None = None,
    absolute: bool = False,
    baseline: tuple[list[np.ndarray], list[str]] | None = None,
    trained: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Match dictionary 0 against each other one; per concept of dictionary 0, its mean matched cosine.

    `baseline`: (dictionaries, labels) of runs that differ from dictionary 0 only by seed, matched
    against it the same way into `seed_baseline`, the yardstick for the other runs. `trained`: per SAE
    (reference, runs, then baseline runs), what it was trained with ({"sae", "seed", "mix",
    "batch_size", "epochs", "steps"}), written into the outputs. Writes stability.{json,png,svg,md}
    into `out` when given.
    """
    from scipy.stats import spearmanr

    if len(dictionaries) < 2:
        raise ValueError("stability needs at least two dictionaries")
    per_run, matched = _match_runs(dictionaries[0], dictionaries[1:], labels[1:], absolute)
    by_label = {t["sae"]: t for t in trained or []}
    for r in per_run:
        if r["against"] in by_label:
            r["seed"] = by_label[r["against"]].get("seed")
    per_concept = matched.mean(axis=0)
    live = frequency_F > 0
    rho_f = spearmanr(frequency_F[live], per_concept[live]).statistic if live.sum() > 2 else float("nan")
    rho_e = spearmanr(energy_F[live], per_concept[live]).statistic if live.sum() > 2 else float("nan")
    res = {
        "reference": labels[0],
        "runs": per_run,
        "stability": float(np.mean([r["stability"] for r in per_run])),
        "stability_live": float(per_concept[live].mean()) if live.any() else float("nan"),
        "n_live": int(live.sum()),
        "spearman_stability_vs_frequency": float(rho_f),
        "spearman_stability_vs_energy": float(rho_e),
        "per_concept": [
            {
                "concept": int(i),
                "stability": float(per_concept[i]),
                "frequency": float(frequency_F[i]),
                "energy": float(energy_F[i]),
            }
            for i in range(len(per_concept))
        ],
        "absolute": absolute,
    }
    if trained is not None:
        res["trained"] = trained
    if baseline is not None and len(baseline[0]):
        b_runs, b_matched = _match_runs(dictionaries[0], baseline[0], baseline[1], absolute)
        for r in b_runs:
            if r["against"] in by_label:
                r["seed"] = by_label[r["against"]].get("seed")
        b_concept = b_matched.mean(axis=0)
        res["seed_baseline"] = {
            "runs": b_runs,
            "stability": float(np.mean([r["stability"] for r in b_runs])),
            "stability_live": float(b_concept[live].mean()) if live.any() else float("nan"),
        }
    if out is not None:
        out = Path(out)
        write_json(out, "stability", res)
        fig, axes = new_figure(width=10.0, ncols=2)
        for ax, values, what, rho in ((axes[0], frequency_F, "frequency", rho_f), (axes[1], energy_F, "energy", rho_e)):
            order = np.argsort(-values, kind="stable")
            ranks = np.arange(1, len(order) + 1)
            ax.scatter(ranks, per_concept[order], s=4, alpha=0.5)
            w = max(5, len(order) // 50)
            smooth = np.convolve(per_concept[order], np.ones(w) / w, mode="valid")
            ax.plot(ranks[w - 1 :], smooth, color="C3", label=f"running mean ({w})")
            ax.set_xscale("log")
            ax.set_xlabel(f"concept {what} rank (1 = highest, reference run)")
            ax.set_ylabel("matched cosine across runs")
            ax.set_title(f"Spearman vs {what}: {rho:.2f}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Stability {res['stability']:.3f}")
        save_figure(fig, out, "stability")
        top = sorted(res["per_concept"], key=lambda c: -c["frequency"])[:10]
        base = res.get("seed_baseline")
        lines = [
            "# Stability across retrains",
            "",
            f"Reference `{labels[0]}` matched one-to-one (Hungarian assignment on {'|cosine|' if absolute else 'cosine'}) "
            f"against {len(per_run)} other run(s). Overall stability **{res['stability']:.4f}** "
            f"({res['stability_live']:.4f} over the {res['n_live']} concepts live in the reference); Spearman "
            f"correlation of a concept's stability with its frequency {rho_f:.3f}, with its energy {rho_e:.3f}.",
            "",
            *(
                [
                    f"Seed-only baseline: {len(base['runs'])} run(s) at the reference's mix with other seeds, "
                    f"stability **{base['stability']:.4f}** ({base['stability_live']:.4f} live), against "
                    f"**{res['stability']:.4f}** across the other runs, which differ by seed and mix; only a gap "
                    "between the two is the mix's doing.",
                    "",
                ]
                if base
                else []
            ),
            *([training_text(trained), ""] if trained else []),
            "| run | compared as | seed | stability |",
            "|---|---|---|---|",
            *[f"| {r['against']} | run | {_or_dash(r.get('seed'))} | {r['stability']:.4f} |" for r in per_run],
            *[
                f"| {r['against']} | seed baseline | {_or_dash(r.get('seed'))} | {r['stability']:.4f} |"
                for r in (base["runs"] if base else [])
            ],
            "",
            "Most frequent concepts:",
            "",
            "| concept | frequency | stability |",
            "|---|---|---|",
            *[f"| {c['concept']} | {c['frequency']:.4f} | {c['stability']:.3f} |" for c in top],
        ]
        write_markdown(out, "stability", "\n".join(lines))
    return res


def _or_dash(v) -> str:
    return "–" if v is None else str(v)


def trained_with(model, label: str) -> dict[str, Any]:
    """What an SAE folder's provenance says it was trained with (None where it does not say)."""
    prov = getattr(model, "provenance", None) or {}
    tc = prov.get("train_config") or {}
    return {
        "sae": label,
        "seed": prov.get("seed", tc.get("seed")),
        "mix": tc.get("mix"),
        "batch_size": tc.get("batch_size"),
        "epochs": tc.get("epochs"),
        "steps": prov.get("steps"),
    }


def training_text(trained: list[dict[str, Any]]) -> str:
    """One line: the batch size, steps and epochs each SAE got (once when all got the same), and seeds."""
    from mmsae.train.schedule import Schedule

    def sched(t):
        if None in (t["batch_size"], t["epochs"], t["steps"]):
            return "schedule not recorded"
        return Schedule(t["batch_size"], t["epochs"], t["steps"], False).describe()

    seeds = ", ".join(f"{t['sae']} {_or_dash(t['seed'])}" for t in trained)
    scheds = {t["sae"]: sched(t) for t in trained}
    if len(set(scheds.values())) == 1:
        return f"Training: {next(iter(scheds.values()))} each. Seeds: {seeds}."
    return "Training: " + "; ".join(f"{k} {v}" for k, v in scheds.items()) + f". Seeds: {seeds}."


def stability_of_saes(
    store,
    folders: list[str | Path],
    out: str | Path | None = None,
    modality: str | None = None,
    absolute: bool = False,
    baseline: list[str | Path] = (),
) -> dict[str, Any]:
    """Match the dictionaries of SAE folders against the first (frequency and energy measured with
    the first SAE on `store`): the analysis behind `mmsae analyze stability` and the demo's.
    `baseline`: SAE folders that differ from the first only by seed (`seed_baseline` in the result)."""
    from mmsae.errors import MmsaeError
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.runs import load_model

    if len(folders) < 2:
        raise MmsaeError("stability needs at least two SAEs")
    baseline = list(baseline)
    models = [load_model(str(f)) for f in [*folders, *baseline]]
    if getattr(models[0], "paired", False):
        raise MmsaeError("stability compares single-dictionary SAEs; pass SAEs trained with --arch topk/batchtopk/...")
    shapes = {tuple(m.W_dec.shape) for m in models}
    if len(shapes) != 1:
        raise MmsaeError(f"the SAEs must have the same shape, got {sorted(shapes)}")
    ev = evaluate_store(models[0], store, modality=modality)
    labels = [str(f) for f in [*folders, *baseline]]
    dicts = [m.W_dec.detach().numpy() for m in models]
    n = len(folders)
    return stability_report(
        dicts[:n],
        ev.frequency_F.numpy(),
        ev.energy_F.numpy(),
        labels[:n],
        out=out,
        absolute=absolute,
        baseline=(dicts[n:], labels[n:]) if baseline else None,
        trained=[trained_with(m, lab) for m, lab in zip(models, labels)],
    )


def retrain_for_stability(store, out: str | Path, configs: list[tuple[str, Any]], progress: bool = False) -> list[str]:
    """Train one SAE per (name, TrainConfig) into OUT/saes/NAME; returns the folders."""
    from tqdm.auto import tqdm

    from mmsae.train.trainer import Trainer

    folders = []
    for name, cfg in tqdm(configs, desc="stability: train", unit="sae", disable=not progress):
        folder = Path(out) / "saes" / name
        Trainer(store, folder, cfg, overwrite=True, progress=False).run()
        folders.append(str(folder))
    return folders
