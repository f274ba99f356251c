"""Scoring an SAE of a learned embedding space against the scene world's known attributes.

`mmsae.analysis.truth` scores against planted directions (`mmsae synth`), where a concept either
is a planted direction or is not. The world's CLIP (`mmsae.world.model`) is a learned encoder:
nothing says which direction of its space means "red", only which pictures show red and which
captions say it. So every score here starts from labels, not directions:

- **sparse probing** (the idea of SAEBench's sparse probing, on known labels): for each attribute
  value, the AUROC of the best single SAE latent as a detector of the rows that hold it, against
  the best single PCA direction and the best single raw dimension, per modality, each chosen on
  one half of the rows and scored on the other; beside them a logistic regression on the whole
  embedding, fit on the half the columns are chosen on: a reference for what the space carries
  linearly at all (not a strict ceiling: an SAE latent is a non-linear read-out);
- **naming**: of the latents that detect a value at AUROC ≥ 0.9, the share named by that value's word;
- **modality**: the buckets of those latents against what the value's kind predicts (an
  image-only attribute should give image-only concepts, a text-only one text-only concepts);
- **steering**: whether adding a value's concept to pictures moves their nearest captions to ones
  saying the value;
- the **findings** of Papadimitriou et al. 2025 (docs/formulas.md §5), each as a number with a
  yes or no.

Pure functions of arrays: the pipeline (`mmsae.pipelines.demo_world`) embeds, encodes and calls them.
A PCA direction and a raw dimension have no preferred sign, so they score max(AUROC, 1 − AUROC); an
SAE latent is non-negative and scores its AUROC as it is (firing on a value's absence does not count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DETECTS = 0.9
"""AUROC at which a latent counts as detecting a value (the issue's threshold)."""
MIN_POSITIVES = 20
"""A value is probed on a modality only where it has this many rows with it and without it."""


def auroc_matrix(scores_NF: np.ndarray, y_NC: np.ndarray) -> np.ndarray:
    """[C, F] AUROC of every score column as a detector of every label column (Mann-Whitney U from
    ranks, ties averaged, so the many zeros of sparse codes tie rather than order at random); NaN
    for a label with no positive or no negative row. Ranks are computed once for all labels."""
    from scipy.stats import rankdata

    y = np.asarray(y_NC, dtype=bool)
    n = len(y)
    ranks_NF = rankdata(np.asarray(scores_NF, dtype=np.float64), axis=0)
    n1_C = y.sum(0).astype(np.float64)
    n0_C = n - n1_C
    rank_sum_CF = y.T.astype(np.float64) @ ranks_NF
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum_CF - (n1_C * (n1_C + 1) / 2)[:, None]) / (n1_C * n0_C)[:, None]
    auc[(n1_C == 0) | (n0_C == 0)] = np.nan
    return auc


def best_columns(auc_CF: np.ndarray, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(best AUROC, its column) per label; unsigned: a column may be read either way up."""
    a = auc_CF if signed else np.maximum(auc_CF, 1 - auc_CF)
    a = np.where(np.isnan(a), -np.inf, a)
    col_C = a.argmax(1)
    best_C = a[np.arange(len(a)), col_C]
    return np.where(np.isfinite(best_C), best_C, np.nan), col_C


@dataclass(frozen=True)
class ProbeTable:
    """Sparse probing on one modality's rows: one entry per probed attribute value."""

    modality: str
    keys: list[str]
    """The values probed (`colour=red`): those with at least MIN_POSITIVES rows with and without them."""
    n_positive: list[int]
    sae_auroc: list[float]
    """Best single SAE latent's AUROC (chosen on one half of the rows, read on the other)."""
    sae_latent: list[int]
    pca_auroc: list[float]
    """Best single PCA direction's AUROC (either sign)."""
    raw_auroc: list[float]
    """Best single embedding dimension's AUROC (either sign)."""
    linear_auroc: list[float]
    """AUROC of a logistic regression on the whole embedding (fit on the choosing half): a reference
    for what the space carries linearly, beside which the single columns are read."""
    auc_CF: np.ndarray
    """Every latent's AUROC for every probed value on the held-out half (for naming and the
    modality check)."""

    def summary(self) -> dict[str, float]:
        s, p, r, lin = (
            np.array(v, dtype=np.float64) for v in (self.sae_auroc, self.pca_auroc, self.raw_auroc, self.linear_auroc)
        )
        return {
            "values": len(self.keys),
            "sae_mean": float(s.mean()) if len(s) else float("nan"),
            "pca_mean": float(p.mean()) if len(p) else float("nan"),
            "raw_mean": float(r.mean()) if len(r) else float("nan"),
            "linear_mean": float(lin.mean()) if len(lin) else float("nan"),
            "share_detected": float((s >= DETECTS).mean()) if len(s) else float("nan"),
            "carried": int((lin >= DETECTS).sum()),
            "sae_beats_pca": int((s > p).sum()),
        }

    def by_attribute(self) -> dict[str, dict[str, float]]:
        """The same means per attribute (`colour`, `shape`, ...): where the embedding holds an
        attribute and where it does not, the two read differently."""
        out: dict[str, dict[str, float]] = {}
        for attr in dict.fromkeys(k.split("=", 1)[0] for k in self.keys):
            idx = [i for i, k in enumerate(self.keys) if k.split("=", 1)[0] == attr]
            s = np.array([self.sae_auroc[i] for i in idx])
            out[attr] = {
                "values": len(idx),
                "sae_mean": float(s.mean()),
                "pca_mean": float(np.mean([self.pca_auroc[i] for i in idx])),
                "raw_mean": float(np.mean([self.raw_auroc[i] for i in idx])),
                "linear_mean": float(np.mean([self.linear_auroc[i] for i in idx])),
                "detected": int((s >= DETECTS).sum()),
                "carried": int(sum(self.linear_auroc[i] >= DETECTS for i in idx)),
            }
        return out

    def to_json(self) -> dict:
        rows = [
            {"key": k, "n_positive": n, "sae": s, "latent": f, "pca": p, "raw": r, "linear": lin}
            for k, n, s, f, p, r, lin in zip(
                self.keys,
                self.n_positive,
                self.sae_auroc,
                self.sae_latent,
                self.pca_auroc,
                self.raw_auroc,
                self.linear_auroc,
            )
        ]
        return {
            "modality": self.modality,
            "summary": self.summary(),
            "by_attribute": self.by_attribute(),
            "values": rows,
        }


def sparse_probing(
    modality: str,
    codes_NF: np.ndarray,
    pca_NK: np.ndarray,
    x_ND: np.ndarray,
    y_NC: np.ndarray,
    keys: Sequence[str],
    min_positives: int = MIN_POSITIVES,
    seed: int = 0,
) -> ProbeTable:
    """Probe each value of `keys` (the columns of `y_NC`) with the best single column of the SAE's
    codes, of the PCA projections `pca_NK` and of the raw embeddings `x_ND`, all of the same rows.

    The best column is chosen on a random half of the rows (drawn from `seed`) and its AUROC read
    on the other half, read the way up chosen with it: the best of many columns scored where it was
    chosen is biased upwards, the more so for many dense columns read either way up (in the tests,
    the best of 128 noise columns scores about 0.6 where it was chosen, 0.5 on the other half)."""
    y = np.asarray(y_NC, dtype=bool)
    n1 = y.sum(0)
    keep = np.flatnonzero((n1 >= min_positives) & (len(y) - n1 >= min_positives))
    y = y[:, keep]
    choose = np.random.default_rng(seed).random(len(y)) < 0.5

    def held_out(scores_NK: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        chosen_CK = auroc_matrix(scores_NK[choose], y[choose])
        _, col_C = best_columns(chosen_CK, signed)
        rows_C = np.arange(len(col_C))
        flip_C = ~signed & (chosen_CK[rows_C, col_C] < 0.5)  # the way up is chosen with the column
        auc_CK = auroc_matrix(scores_NK[~choose], y[~choose])
        return np.where(flip_C, 1 - auc_CK[rows_C, col_C], auc_CK[rows_C, col_C]), col_C, auc_CK

    sae, latent, sae_CF = held_out(np.asarray(codes_NF), True)
    pca, _, _ = held_out(np.asarray(pca_NK), False)
    raw, _, _ = held_out(np.asarray(x_ND), False)
    linear = linear_probe_auroc(np.asarray(x_ND), y, choose)
    return ProbeTable(
        modality,
        [keys[c] for c in keep],
        [int(v) for v in n1[keep]],
        [float(v) for v in sae],
        [int(v) for v in latent],
        [float(v) for v in pca],
        [float(v) for v in raw],
        [float(v) for v in linear],
        sae_CF,
    )


def linear_probe_auroc(x_ND: np.ndarray, y_NC: np.ndarray, fit_N: np.ndarray) -> np.ndarray:
    """[C] held-out AUROC of a logistic regression per label column, fit on the rows `fit_N` and
    scored on the others; NaN where either part lacks a positive or a negative row."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x_ND, dtype=np.float64)
    y = np.asarray(y_NC, dtype=bool)
    fit = np.asarray(fit_N, dtype=bool)
    # standardised on the fitting rows: unit-norm embeddings have tiny coordinates, which the
    # default L2 penalty would otherwise hold back
    x = (x - x[fit].mean(0)) / np.maximum(x[fit].std(0), 1e-12)
    out = np.full(y.shape[1], np.nan)
    for c in range(y.shape[1]):
        a, b = y[fit, c], y[~fit, c]
        if a.all() or not a.any() or b.all() or not b.any():
            continue
        clf = LogisticRegression(max_iter=2000).fit(x[fit], a)
        out[c] = auroc_matrix(clf.decision_function(x[~fit])[:, None], b[:, None])[0, 0]
    return out


def detecting_latents(tables: Sequence[ProbeTable], threshold: float = DETECTS) -> dict[int, tuple[str, str, float]]:
    """Latent → (the value it detects best, on which modality, AUROC) over every table, for the
    latents whose best AUROC is at least `threshold` (on a tie, the earlier table's)."""
    best: dict[int, tuple[str, str, float]] = {}
    for t in tables:
        for f, (key, auc) in _best_by_latent(t, threshold).items():
            if f not in best or auc > best[f][2]:
                best[f] = (key, t.modality, auc)
    return best


def naming_accuracy(detects: dict[int, tuple[str, str, float]], names_F: Sequence[str | None], word_of: dict[str, str]):
    """Of the detecting latents, the share whose vocabulary name is their value's word; per attribute too."""
    per: dict[str, list[bool]] = {}
    for f, (key, _, _) in detects.items():
        per.setdefault(key.split("=", 1)[0], []).append(names_F[f] == word_of[key])
    hits = [h for v in per.values() for h in v]
    return {
        "latents": len(hits),
        "correct": int(sum(hits)),
        "accuracy": float(np.mean(hits)) if hits else float("nan"),
        "by_attribute": {a: {"latents": len(v), "accuracy": float(np.mean(v))} for a, v in sorted(per.items())},
    }


EXPECTED_BUCKET = {"image": "image", "text": "text"}
"""What a value's kind predicts for the bucket of a concept detecting it: image-only information
gives image-only concepts, text-only information text-only ones. A shared value predicts nothing
(the findings count how many of its concepts come out unimodal anyway)."""


def modality_buckets(
    detects: dict[int, tuple[str, str, float]], buckets_F: Sequence[str], kind_of: dict[str, str]
) -> dict[str, dict]:
    """Per value kind (shared / image / text): how the detecting latents fall into buckets, and for
    image and text kinds the share in the expected bucket."""
    out: dict[str, dict] = {}
    for kind in ("shared", "image", "text"):
        got = [str(buckets_F[f]) for f, (key, _, _) in detects.items() if kind_of[key] == kind]
        row: dict = {"latents": len(got), **{b: got.count(b) for b in ("image", "text", "bimodal")}}
        if kind in EXPECTED_BUCKET:
            row["expected"] = EXPECTED_BUCKET[kind]
            row["accuracy"] = got.count(EXPECTED_BUCKET[kind]) / len(got) if got else float("nan")
        out[kind] = row
    return out


def steering_shift(
    img_ND: np.ndarray, direction_D: np.ndarray, strength: float, gallery_MD: np.ndarray, says_M: np.ndarray, k: int = 5
) -> tuple[float, float]:
    """(before, after): the share of the `k` nearest captions (cosine, in `gallery_MD`) of each
    picture that say the value (`says_M`), before and after adding `strength` × the value's
    concept direction to the pictures (renormalised, as `mmsae steer` does)."""
    from mmsae.analysis.steering import nearest, steer

    says = np.asarray(says_M, dtype=bool)
    before, _ = nearest(img_ND, gallery_MD, k=k)
    after, _ = nearest(steer(img_ND, direction_D, strength), gallery_MD, k=k)
    return float(says[before].mean()), float(says[after].mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (NaN where either side is constant or fewer than 3 points)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def bridge_agreement(
    bridges: Sequence[dict], detects_image: dict[int, str], detects_text: dict[int, str]
) -> dict[str, float]:
    """Of the significant top bridges whose image-side latent detects a value on pictures and whose
    text-side latent detects one on captions, the share where it is the same attribute (and the
    same value)."""
    both = [
        (detects_image[b["image_concept"]], detects_text[b["text_concept"]])
        for b in bridges
        if b.get("significant", True) and b["image_concept"] in detects_image and b["text_concept"] in detects_text
    ]
    same_attr = [i.split("=", 1)[0] == t.split("=", 1)[0] for i, t in both]
    same_value = [i == t for i, t in both]
    return {
        "bridges": len(bridges),
        "significant": sum(bool(b.get("significant", True)) for b in bridges),
        "labelled": len(both),
        "same_attribute": float(np.mean(same_attr)) if both else float("nan"),
        "same_value": float(np.mean(same_value)) if both else float("nan"),
    }


def best_value_by_latent(table: ProbeTable, threshold: float = DETECTS) -> dict[int, str]:
    """Latent → the value it detects best on this table's modality, where that AUROC ≥ threshold."""
    return {f: key for f, (key, _) in _best_by_latent(table, threshold).items()}


def _best_by_latent(table: ProbeTable, threshold: float) -> dict[int, tuple[str, float]]:
    """Latent → (its best value on this table, that AUROC), where the AUROC ≥ threshold."""
    if not table.keys:
        return {}
    a = np.nan_to_num(table.auc_CF, nan=-1.0)
    c_F = a.argmax(0)
    a_F = a[c_F, np.arange(a.shape[1])]
    return {int(f): (table.keys[int(c_F[f])], float(a_F[f])) for f in np.flatnonzero(a_F >= threshold)}
