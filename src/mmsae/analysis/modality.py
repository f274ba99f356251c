"""Which concepts are image-only, text-only or bimodal, and how concepts sit relative to the
modality direction (Papadimitriou et al. 2025, docs/formulas.md §5).

- Modality score μ_i = E_img[z_i] / (E_img[z_i] + E_txt[z_i]) (activation-mass ratio; 1 = image
  only; undefined for dead concepts); buckets image (μ > 0.9), text (μ < 0.1), bimodal otherwise.
- A linear probe (logistic regression) separating image from text embeddings, with unit weight w.
- |cos(d_i, w)| per concept and its energy-weighted mean; the share of concepts nearly orthogonal
  to w (|cos| < `orthogonal_below`, 0.1 by default: our threshold, not the paper's).
- Each concept direction alone as an image-vs-text classifier, score ⟨x, d_i⟩: AUROC (image =
  positive class; below 0.5 means the direction points toward text) and the accuracy of its best
  threshold on either side, next to the probe's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsae.analysis.results import new_figure, save_figure, write_json, write_markdown
from mmsae.data.store import EmbeddingStore
from mmsae.data.stream import StreamConfig, iter_rows
from mmsae.errors import MmsaeError
from mmsae.metrics.evaluate import routed_encode
from mmsae.vectors import unit_rows

IMAGE_ABOVE, TEXT_BELOW = 0.9, 0.1


def modality_scores(energy_image_F: np.ndarray, energy_text_F: np.ndarray) -> np.ndarray:
    """μ per concept; NaN where a concept never fires on either modality."""
    total = energy_image_F + energy_text_F
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, energy_image_F / np.where(total > 0, total, 1), np.nan)


def buckets(mu_F: np.ndarray) -> np.ndarray:
    """'image', 'text', 'bimodal' or 'dead' per concept."""
    out = np.full(len(mu_F), "bimodal", dtype=object)
    out[mu_F > IMAGE_ABOVE] = "image"
    out[mu_F < TEXT_BELOW] = "text"
    out[np.isnan(mu_F)] = "dead"
    return out


@torch.no_grad()
def modality_energy(
    model, store: EmbeddingStore, split: str = "all", val_fraction: float = 0.1, device="cpu"
) -> dict[str, np.ndarray]:
    """E_m[z_i] per modality m (zeros included) and firing frequency, in one pass over the store."""
    sums: dict[str, np.ndarray] = {}
    fires: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    F = model.cfg.dict_size
    for _, mods, x in iter_rows(store, StreamConfig(split=split, val_fraction=val_fraction)):
        keep = np.isin(mods, ("image", "text"))
        if not keep.any():
            continue
        mods, x = mods[keep], x[keep]
        z = routed_encode(model, torch.as_tensor(x, device=device), mods).double().cpu().numpy()
        for m in ("image", "text"):
            sel = mods == m
            if sel.any():
                sums[m] = sums.get(m, np.zeros(F)) + z[sel].sum(0)
                fires[m] = fires.get(m, np.zeros(F)) + (z[sel] > 0).sum(0)
                counts[m] = counts.get(m, 0) + int(sel.sum())
    if set(counts) != {"image", "text"}:
        raise MmsaeError(f"the modality analysis needs image and text rows; found {sorted(counts) or 'none'}")
    return {
        **{f"energy_{m}": sums[m] / counts[m] for m in counts},
        **{f"frequency_{m}": fires[m] / counts[m] for m in counts},
        "n_image": counts["image"],
        "n_text": counts["text"],
    }


def _auroc_columns(scores_NF: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    """AUROC of every column as a score for y = 1 (Mann-Whitney U from ranks, ties averaged)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores_NF, axis=0)
    n1 = int(y_N.sum())
    n0 = len(y_N) - n1
    return (ranks[y_N == 1].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _best_accuracy_columns(scores_NF: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    """Per column, the accuracy of the best threshold, either side up."""
    order = np.argsort(scores_NF, axis=0, kind="stable")
    ys = y_N[order]  # [N, F] labels sorted by score, per column
    n = len(y_N)
    n1 = y_N.sum()
    # threshold after position t: predict 1 above it → correct = (ones above) + (zeros at or below)
    ones_below = np.vstack([np.zeros((1, ys.shape[1])), np.cumsum(ys, axis=0)])
    zeros_below = np.arange(n + 1)[:, None] - ones_below
    correct = (n1 - ones_below) + zeros_below
    vals = np.take_along_axis(scores_NF, order, axis=0)
    ones_row = np.ones((1, vals.shape[1]), bool)
    valid = np.vstack([ones_row, vals[1:] != vals[:-1], ones_row])  # a threshold cannot split tied scores
    acc = np.where(valid, correct, -np.inf).max(axis=0) / n
    return np.maximum(acc, 1 - np.where(valid, correct, np.inf).min(axis=0) / n)


@dataclass(frozen=True)
class ProbeResult:
    weight_D: np.ndarray
    accuracy: float
    auroc: float


def modality_probe(X_img: np.ndarray, X_txt: np.ndarray, seed: int = 0) -> tuple[ProbeResult, dict[str, np.ndarray]]:
    """Logistic regression image (1) vs text (0), fitted on half and scored on the other half."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    X = np.concatenate([X_img, X_txt]).astype(np.float64)
    y = np.r_[np.ones(len(X_img)), np.zeros(len(X_txt))].astype(int)
    test = np.random.default_rng(seed).random(len(y)) < 0.5
    clf = LogisticRegression(max_iter=2000).fit(X[~test], y[~test])
    w = clf.coef_[0] / np.linalg.norm(clf.coef_[0])
    p = clf.decision_function(X[test])
    return ProbeResult(w, float(clf.score(X[test], y[test])), float(roc_auc_score(y[test], p))), {
        "X": X[test],
        "y": y[test],
    }


def concept_directions(model) -> np.ndarray:
    """[F, D] unit direction of each concept: its decoder row (for paired SAEs, the normalised sum
    of its two unit decoder directions)."""
    from mmsae.models.paired import as_paired

    paired = as_paired(model)
    dirs = [paired.decoder_directions(m).detach().cpu().double().numpy() for m in ("image", "text")]
    dirs = [unit_rows(d) for d in dirs]
    return unit_rows(dirs[0] + dirs[1])


def analyze_modality(
    model,
    store: EmbeddingStore | str,
    out: str | Path | None = None,
    max_rows: int = 20000,
    orthogonal_below: float = 0.1,
    seed: int = 0,
    device="cpu",
) -> dict[str, Any]:
    """Every modality analysis of `model` on `store`; writes modality.{json,png,svg,md} into `out`."""

    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    en = modality_energy(model, store, device=device)
    mu = modality_scores(en["energy_image"], en["energy_text"])
    bk = buckets(mu)
    energy = en["energy_image"] * en["n_image"] / (en["n_image"] + en["n_text"]) + en["energy_text"] * en["n_text"] / (
        en["n_image"] + en["n_text"]
    )

    rng = np.random.default_rng(seed)
    rows = {}
    for m in ("image", "text"):
        r = store.rows(m)
        rows[m] = np.sort(rng.choice(r, min(len(r), max_rows // 2), replace=False))
    if min(len(r) for r in rows.values()) < 20:
        raise MmsaeError(
            f"the modality probe needs at least 20 rows of each modality (it fits on half, scores on the "
            f"other); it has {len(rows['image'])} image and {len(rows['text'])} text rows "
            f"(--max-rows {max_rows})"
        )
    probe, held = modality_probe(store.get(rows["image"]), store.get(rows["text"]), seed)
    D_FD = concept_directions(model)
    cos_w = np.abs(D_FD @ probe.weight_D)
    scores = held["X"] @ D_FD.T
    auroc = _auroc_columns(scores, held["y"])
    acc = _best_accuracy_columns(scores, held["y"])
    live = ~np.isnan(mu)
    counts = {b: int((bk == b).sum()) for b in ("image", "text", "bimodal", "dead")}
    res = {
        "store": str(store.root),
        "n_image_rows": en["n_image"],
        "n_text_rows": en["n_text"],
        "buckets": counts,
        "thresholds": {"image_above": IMAGE_ABOVE, "text_below": TEXT_BELOW, "orthogonal_below": orthogonal_below},
        "probe": {"accuracy": probe.accuracy, "auroc": probe.auroc},
        "cos_with_modality_direction": {
            "mean": float(cos_w[live].mean()) if live.any() else float("nan"),
            "energy_weighted_mean": float((cos_w * energy)[live].sum() / max(energy[live].sum(), 1e-12)),
            "fraction_nearly_orthogonal": float((cos_w[live] < orthogonal_below).mean())
            if live.any()
            else float("nan"),
        },
        "single_concept_classifiers": {
            "median_accuracy": float(np.median(acc[live])) if live.any() else float("nan"),
            "max_accuracy": float(acc[live].max()) if live.any() else float("nan"),
            "fraction_below_probe": float((acc[live] < probe.accuracy).mean()) if live.any() else float("nan"),
        },
        "per_concept": [
            {
                "concept": i,
                "modality_score": None if np.isnan(mu[i]) else float(mu[i]),
                "bucket": str(bk[i]),
                "energy_image": float(en["energy_image"][i]),
                "energy_text": float(en["energy_text"][i]),
                "frequency_image": float(en["frequency_image"][i]),
                "frequency_text": float(en["frequency_text"][i]),
                "abs_cos_modality": float(cos_w[i]),
                "auroc": float(auroc[i]),
                "accuracy": float(acc[i]),
            }
            for i in range(len(mu))
        ],
    }
    if out is not None:
        _write(res, mu, Path(out))
    return res


def _write(res: dict[str, Any], mu: np.ndarray, out: Path) -> None:
    write_json(out, "modality", res)
    fig, ax = new_figure()
    ax.hist(mu[~np.isnan(mu)], bins=40, range=(0, 1), color="C0")
    for t in (TEXT_BELOW, IMAGE_ABOVE):
        ax.axvline(t, color="C3", ls="--", lw=1)
    b = res["buckets"]
    ax.set_xlabel("modality score μ (0 = text only, 1 = image only)")
    ax.set_ylabel("concepts")
    ax.set_title(f"text {b['text']} · bimodal {b['bimodal']} · image {b['image']} · dead {b['dead']}")
    save_figure(fig, out, "modality")
    c, s = res["cos_with_modality_direction"], res["single_concept_classifiers"]
    lines = [
        "# Modality",
        "",
        f"Buckets (μ > {IMAGE_ABOVE} image, μ < {TEXT_BELOW} text): image {b['image']}, text {b['text']}, "
        f"bimodal {b['bimodal']}, dead {b['dead']}.",
        "",
        f"Linear probe image vs text: accuracy {res['probe']['accuracy']:.4f}, AUROC {res['probe']['auroc']:.4f}.",
        f"|cos(concept, probe direction)|: mean {c['mean']:.3f}, energy-weighted {c['energy_weighted_mean']:.3f}; "
        f"{c['fraction_nearly_orthogonal']:.1%} of live concepts below {res['thresholds']['orthogonal_below']}.",
        f"Each concept direction alone as a classifier: median accuracy {s['median_accuracy']:.3f}, best "
        f"{s['max_accuracy']:.3f}; {s['fraction_below_probe']:.1%} below the probe.",
    ]
    write_markdown(out, "modality", "\n".join(lines))
