"""Stability of a dictionary across retrains (Papadimitriou et al. 2025, docs/formulas.md §5):

    Stability(D, D') = max over permutations P of (1/F) tr(D Pᵀ D'ᵀ)  (unit rows),

the mean cosine of the best one-to-one matching of concepts. The assignment is solved exactly
by scipy's Hungarian-type solver on the full cosine matrix when F is small; for large F it is
solved exactly on a pruned sparse graph (each concept's `candidates` most similar partners, both
ways) with scipy's sparse full bipartite matching, which needs no dense F × F matrix. Pruning
can only miss a pair outside both top lists, whose cosine is below every candidate's; its
measured effect on the stability is reported by `benchmarks/stability_matching.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from mmsae.analysis.results import new_figure, save_figure, write_json, write_markdown

DENSE_LIMIT = 4096
"""Up to this F the assignment runs on the dense cosine matrix."""


def _unit(W: np.ndarray) -> np.ndarray:
    W = np.asarray(W, dtype=np.float32)
    return W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)


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
    A, B = _unit(A_FD), _unit(B_FD)
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


def stability_report(
    dictionaries: list[np.ndarray],
    frequency_F: np.ndarray,
    energy_F: np.ndarray,
    labels: list[str],
    out: str | Path | None = None,
    absolute: bool = False,
) -> dict[str, Any]:
    """Match dictionary 0 against each other one; per concept of dictionary 0, its mean matched cosine.

    Writes stability.{json,png,svg,md} into `out` when given.
    """
    from scipy.stats import spearmanr

    if len(dictionaries) < 2:
        raise ValueError("stability needs at least two dictionaries")
    per_run = []
    matched = []
    for D, lab in zip(dictionaries[1:], labels[1:]):
        perm, cos = match_dictionaries(dictionaries[0], D, absolute)
        matched.append(cos)
        per_run.append({"against": lab, "stability": float(cos.mean())})
    per_concept = np.mean(matched, axis=0)
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
        lines = [
            "# Stability across retrains",
            "",
            f"Reference `{labels[0]}` matched one-to-one (Hungarian assignment on {'|cosine|' if absolute else 'cosine'}) "
            f"against {len(per_run)} other run(s). Overall stability **{res['stability']:.4f}** "
            f"({res['stability_live']:.4f} over the {res['n_live']} concepts live in the reference); Spearman "
            f"correlation of a concept's stability with its frequency {rho_f:.3f}, with its energy {rho_e:.3f}.",
            "",
            "| run | stability |",
            "|---|---|",
            *[f"| {r['against']} | {r['stability']:.4f} |" for r in per_run],
            "",
            "Most frequent concepts:",
            "",
            "| concept | frequency | stability |",
            "|---|---|---|",
            *[f"| {c['concept']} | {c['frequency']:.4f} | {c['stability']:.3f} |" for c in top],
        ]
        write_markdown(out, "stability", "\n".join(lines))
    return res


def stability_of_saes(
    store, folders: list[str | Path], out: str | Path | None = None, modality: str | None = None, absolute: bool = False
) -> dict[str, Any]:
    """Match the dictionaries of SAE folders against the first (frequency and energy measured with
    the first SAE on `store`): the analysis behind `mmsae analyze stability` and the demo's."""
    from mmsae.errors import MmsaeError
    from mmsae.metrics.evaluate import evaluate_store
    from mmsae.runs import load_model

    if len(folders) < 2:
        raise MmsaeError("stability needs at least two SAEs")
    models = [load_model(str(f)) for f in folders]
    if getattr(models[0], "paired", False):
        raise MmsaeError("stability compares single-dictionary SAEs; pass SAEs trained with --arch topk/batchtopk/...")
    shapes = {tuple(m.W_dec.shape) for m in models}
    if len(shapes) != 1:
        raise MmsaeError(f"the SAEs must have the same shape, got {sorted(shapes)}")
    ev = evaluate_store(models[0], store, modality=modality)
    return stability_report(
        [m.W_dec.detach().numpy() for m in models],
        ev["_frequency"].numpy(),
        ev["_energy"].numpy(),
        [str(f) for f in folders],
        out=out,
        absolute=absolute,
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
