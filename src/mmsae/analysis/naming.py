"""Naming concepts from a vocabulary (docs/formulas.md §6).

Two ways, both supported:
- `decoder` (DN-CBM, MSAE): the name of concept i is the term whose embedding has the highest
  cosine with its decoder direction d_i. Term embeddings are centred first (the mean term
  embedding is subtracted): every embedding of a model shares a large common component, which
  otherwise makes the cosine prefer generic terms.
- `encoder` (the seed report): term embeddings are pushed through the SAE encoder, and each
  concept takes the term that activates it most.
- `pictures`, for an SAE on patch tokens (a vision tower's residual stream, which no text encoder
  reads): a concept's activation per picture (the max or mean over the picture's patches) is
  compared with how close each term's embedding lies to the picture's pooled embedding in the
  model's shared space; the name is the term whose cosines best follow the activation over the
  pictures (Pearson correlation, as CLIP-Dissect matches a neuron's activations with image-text
  similarities, here in its simplest form). A concept no term correlates with positively stays
  unnamed.
Each concept gets its top-5 terms with scores and a confidence, the margin between the first
and second score. Vocabularies drop English stop words and terms under 3 letters by default
(function words are not concepts).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsae.errors import MmsaeError
from mmsae.fileio import atomic_write, atomic_write_stream, write_json_atomic
from mmsae.vectors import unit_rows

VOCAB_DIR = "vocab"


def read_vocabulary_lines(path: str | Path) -> list[str]:
    """Every line of a vocabulary file, stripped, blank ones included: line i is term i, the row
    a precomputed `--vocab-embeddings` array holds for it."""
    path = Path(path)
    if not path.is_file():
        raise MmsaeError(f"{path}: no such vocabulary file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MmsaeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")  # not splitlines(): "line i" must be what wc -l and editors count
    if lines and lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def kept_terms(lines: Sequence[str], drop_stopwords: bool = True, min_length: int = 3) -> list[int]:
    """Indices of the lines kept as terms: not blank, not a repeat, at least `min_length`
    characters and, unless `drop_stopwords` is False, not an English stop word."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    seen, keep = set(), []
    for i, t in enumerate(lines):
        if not t or t in seen or len(t) < min_length or (drop_stopwords and t.lower() in ENGLISH_STOP_WORDS):
            continue
        seen.add(t)
        keep.append(i)
    return keep


def read_vocabulary(path: str | Path, drop_stopwords: bool = True, min_length: int = 3) -> list[str]:
    """One term per line; blank lines, duplicates, stop words and short terms dropped."""
    lines = read_vocabulary_lines(path)
    terms = [lines[i] for i in kept_terms(lines, drop_stopwords, min_length)]
    if not terms:
        raise MmsaeError(f"{path}: no terms left after filtering")
    return terms


def vocabulary_with_embeddings(
    path: str | Path, embeddings: str | Path, dim: int, drop_stopwords: bool = True, min_length: int = 3
) -> tuple[list[str], np.ndarray]:
    """(kept terms, their rows of a precomputed [lines, dim] embedding file). Row i of the file
    belongs to line i of the vocabulary as given, so the file does not depend on the filters."""
    from mmsae.data.importers import load_embeddings

    lines = read_vocabulary_lines(path)
    E = np.asarray(load_embeddings(embeddings), dtype=np.float32)
    if E.shape != (len(lines), dim):
        raise MmsaeError(
            f"{embeddings}: shape {tuple(E.shape)}; expected ({len(lines)}, {dim}), one row per line of {path}"
        )
    keep = kept_terms(lines, drop_stopwords, min_length)
    if not keep:
        raise MmsaeError(f"{path}: no terms left after filtering")
    E = E[keep]
    if not np.isfinite(E).all():
        raise MmsaeError(f"{embeddings}: holds NaN or inf")
    return [lines[i] for i in keep], unit_rows(E)


def encoder_identity(encoder) -> str:
    """What the term-embedding cache is keyed on: the encoder's model id and, when its weights are
    local files, their resolved path, size and modification time, so two checkpoints that share a
    file name (runA/epoch_32.pt, runB/epoch_32.pt) or a retrained folder never share a cache entry."""
    parts = [encoder.model_id]
    spec = getattr(encoder, "spec", None)
    for name in (getattr(spec, "weights", None), getattr(spec, "name", None)):
        if name and Path(name).exists():
            path = Path(name).resolve()
            files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
            parts += [str(path)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return "|".join(parts)


def embed_vocabulary(
    store,
    terms: Sequence[str],
    encoder=None,
    templates: Sequence[str] = ("{}",),
    cache: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """[T, D] unit term embeddings in the store's space (template prompts averaged, then
    renormalised), cached in STORE/vocab/ under a hash of terms, templates and model."""
    from mmsae.backends.registry import text_encoder_for

    for tpl in templates:
        try:
            ok = tpl.count("{}") == 1 and tpl.format("x").count("x") >= 1
        except (IndexError, KeyError, ValueError):
            ok = False
        if "{}" not in tpl:
            raise MmsaeError(f"template {tpl!r} has no {{}} for the term")
        if not ok:
            raise MmsaeError(
                f"template {tpl!r} must hold exactly one {{}} for the term (write other braces as {{{{ }}}})"
            )
    model_id = encoder_identity(encoder) if encoder is not None else store.manifest.model_id
    key = hashlib.sha256(json.dumps([list(terms), list(templates), model_id]).encode()).hexdigest()[:16]
    path = Path(store.root) / VOCAB_DIR / f"{key}.npy"
    if cache and path.exists():
        E = np.load(path)
        if E.shape == (len(terms), store.dim):
            return E
    encoder = encoder or text_encoder_for(store)
    if encoder.dim != store.dim:
        raise MmsaeError(f"the text encoder gives {encoder.dim}-d embeddings, the store holds {store.dim}-d")
    E = np.zeros((len(terms), store.dim), dtype=np.float64)
    for tpl in templates:
        E += encoder.embed_texts([tpl.format(t) for t in terms], progress=progress)
    E = unit_rows(E).astype(np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_stream(path, lambda f: np.save(f, E))
    return E


@dataclass(frozen=True)
class ConceptName:
    concept: int
    name: str | None
    terms: list[str]
    scores: list[float]
    confidence: float
    """Score of the first term minus that of the second."""


def alternatives(name: ConceptName, within: float) -> list[str]:
    """The runner-up terms scoring within `within` of the concept's name: close calls worth
    showing beside it. Terms further down are the ranking's noise, not other readings."""
    return [t for t, sc in zip(name.terms[1:], name.scores[1:]) if name.scores[0] - sc <= within]


def write_names(names: list[ConceptName], out: str | Path, meta: dict[str, Any]) -> list[Path]:
    """OUT/names.json (what the explorer and report read) and OUT/names.parquet (for dataframes)."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "names.json", {**meta, "concepts": [dataclasses.asdict(n) for n in names]})
    table = pa.table(
        {
            "concept": [n.concept for n in names],
            "name": [n.name for n in names],
            "terms": [n.terms for n in names],
            "scores": [n.scores for n in names],
            "confidence": [n.confidence for n in names],
        }
    )
    atomic_write(out / "names.parquet", lambda tmp: pq.write_table(table, tmp))
    return [out / "names.json", out / "names.parquet"]


def _records(S_FT: np.ndarray, terms: Sequence[str], top: int, min_score: float | None = None) -> list[ConceptName]:
    k = min(top, S_FT.shape[1])
    idx = np.argpartition(-S_FT, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(S_FT, idx, axis=1)
    order = np.argsort(-vals, axis=1)
    idx, vals = np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)
    out = []
    for i in range(len(S_FT)):
        ok = min_score is None or vals[i, 0] > min_score
        out.append(
            ConceptName(
                i,
                terms[idx[i, 0]] if ok else None,
                [terms[j] for j in idx[i]],
                [float(v) for v in vals[i]],
                float(vals[i, 0] - vals[i, 1]) if k > 1 else float("nan"),
            )
        )
    return out


@torch.no_grad()
def name_concepts(
    model,
    E_TD: np.ndarray,
    terms: Sequence[str],
    method: str = "decoder",
    modality: str = "text",
    center: bool = True,
    top: int = 5,
) -> list[ConceptName]:
    """Names of every concept of `model` from the term embeddings `E_TD` (see the module docstring)."""
    from mmsae.models.paired import as_paired

    m = as_paired(model)
    E = np.asarray(E_TD, dtype=np.float32)
    if method == "decoder":
        if center:
            E = E - E.mean(axis=0)
        E = unit_rows(E)
        D = unit_rows(m.decoder_directions(modality).detach().cpu().numpy())
        return _records(D @ E.T, terms, top)
    if method == "encoder":
        Z = m.encode(torch.as_tensor(E), modality).cpu().numpy()  # [T, F]
        return _records(Z.T, terms, top, min_score=0.0)
    raise MmsaeError(f"naming method must be decoder or encoder, got {method!r}")


def name_by_pictures(
    acts_PF, img_PD: np.ndarray, E_TD: np.ndarray, terms: Sequence[str], top: int = 5, block: int = 1024
) -> list[ConceptName]:
    """Names from pictures (the module docstring's `pictures`): `acts_PF` each picture's activation
    of every concept (a scipy sparse matrix or an array), `img_PD` the same pictures' pooled
    embeddings, `E_TD` the terms' embeddings in that space. Scores are Pearson correlations over
    the P pictures. The cosines s_pt = v̂_p·ê_t are never formed: their sums over pictures are
    those of v̂_p (Σ_p a_pf s_pt = (Aᵀ V̂)_f·ê_t, Σ_p s_pt² = ê_tᵀ (V̂ᵀ V̂) ê_t), so memory is
    O(F·D + D² + block·T), not O(P·T), and concepts go `block` at a time."""
    import scipy.sparse as sp

    A = sp.csc_matrix(acts_PF, dtype=np.float64)
    P, F_ = A.shape
    if P != len(img_PD):
        raise MmsaeError(f"{P} pictures' activations but {len(img_PD)} picture embeddings")
    if P < 3:
        raise MmsaeError(f"naming from pictures needs at least 3 pictures, got {P}")
    V = unit_rows(np.asarray(img_PD, np.float64))
    E = unit_rows(np.asarray(E_TD, np.float64))
    s_mean_T = E @ V.mean(axis=0)
    s_sq_T = np.einsum("td,de,te->t", E, V.T @ V, E)
    s_norm_T = np.sqrt(np.maximum(s_sq_T - P * s_mean_T**2, 0.0))
    a_sum_F = np.asarray(A.sum(axis=0)).ravel()
    a_sq_F = np.asarray(A.multiply(A).sum(axis=0)).ravel()
    a_norm_F = np.sqrt(np.maximum(a_sq_F - a_sum_F**2 / P, 0.0))
    AV_FD = np.asarray(A.T @ V)  # Σ_p a_pf v̂_p
    out: list[ConceptName] = []
    for lo in range(0, F_, block):
        hi = min(F_, lo + block)
        cov = AV_FD[lo:hi] @ E.T - np.outer(a_sum_F[lo:hi], s_mean_T)  # Σ_p a_pf (s_pt − s̄_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = cov / (a_norm_F[lo:hi, None] * s_norm_T[None, :])
        corr = np.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)  # a concept constant over the pictures
        out += [
            ConceptName(n.concept + lo, n.name, n.terms, n.scores, n.confidence)
            for n in _records(corr, terms, top, min_score=0.0)
        ]
    return out


@functools.lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """English Snowball stem of a lower-cased word (dogs, dog → dog; running, runs → run)."""
    return _stemmer().stemWord(word.lower())


def name_in_text(name: str, text: str) -> bool:
    """Whether `name` (or a word sharing its stem) occurs in `text`; multi-word names need every word."""
    import re

    words = {stem(w) for w in re.findall(r"[a-zA-Z]+", text)}
    return all(stem(w) in words for w in re.findall(r"[a-zA-Z]+", name))


def naming_agreement(
    names: list[ConceptName], top_texts: dict[int, list[str]], concepts: Sequence[int], need: int = 5
) -> dict[str, Any]:
    """For each concept, in how many of its top texts its name occurs; the share of concepts with ≥ `need`."""
    hits = {}
    for c in concepts:
        n = names[c].name
        hits[c] = sum(name_in_text(n, t) for t in top_texts.get(c, [])) if n else 0
    ok = [c for c in concepts if hits[c] >= need]
    return {
        "share": len(ok) / max(len(concepts), 1),
        "n_concepts": len(concepts),
        "need": need,
        "hits": {int(c): int(h) for c, h in hits.items()},
    }
