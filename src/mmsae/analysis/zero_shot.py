"""Zero-shot classification on a user's labelled image rows, with original and reconstructed
embeddings (docs/formulas.md §4, retention): does the SAE keep what a CLIP-style classifier reads?

Class names and prompt templates are read as CLIP_benchmark publishes them: a JSON object
{dataset: [names]} and {dataset: [templates with {c}]}, or plain text files, one a line. A class's
prompt embedding is the mean of its unit template embeddings, renormalised, as in the CLIP paper.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsae.errors import MmsaeError
from mmsae.vectors import unit_rows


def read_list(path: str | Path, dataset: str | None, what: str) -> list[str]:
    """Class names or templates: a JSON list, a JSON object keyed by dataset, or one item a line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MmsaeError(f"{path}: cannot read the {what} ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise MmsaeError(f"{path}: not JSON ({exc})") from None
        if isinstance(obj, dict):
            if not obj:
                raise MmsaeError(f"{path}: an empty JSON object; expected {what}")
            if dataset is None:
                if len(obj) != 1:
                    raise MmsaeError(
                        f"{path} holds {len(obj)} datasets; pick one with --dataset (e.g. {next(iter(obj))})"
                    )
                dataset = next(iter(obj))
            if dataset not in obj:
                raise MmsaeError(f"{path} has no dataset {dataset!r} (it has {', '.join(sorted(obj)[:8])}, ...)")
            obj = obj[dataset]
        items = obj
    else:
        items = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x.strip() for x in items):
        raise MmsaeError(f"{path}: expected a non-empty list of {what} (strings)")
    return [x.strip() for x in items]


def fill(template: str, name: str) -> str:
    """A prompt from a template holding {c} (CLIP_benchmark) or {} for the class name."""
    if "{c}" in template:
        return template.replace("{c}", name)
    if "{}" in template:
        return template.replace("{}", name)
    raise MmsaeError(f"template {template!r} has no {{c}} or {{}} for the class name")


def class_prompts(encoder, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """[C, D] unit prompt embeddings: each class's template embeddings averaged, renormalised."""
    prompts = [fill(t, c) for c in classnames for t in templates]
    E = np.asarray(encoder.embed_texts(prompts), dtype=np.float64).reshape(len(classnames), len(templates), -1)
    P = unit_rows(E).mean(axis=1)  # the mean of each class's unit template embeddings
    return unit_rows(P).astype(np.float32)


def labels_of(values: Sequence[Any], classnames: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Class index of each label value (a class name, case-insensitive, or an index), -1 where
    the row has none or one that is not a class; with counts of what was dropped."""
    index = {c.lower(): i for i, c in enumerate(classnames)}
    out = np.full(len(values), -1, dtype=np.int64)
    missing = unknown = 0
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            missing += 1
        elif isinstance(v, bool):
            unknown += 1
        elif isinstance(v, float) and not v.is_integer():
            unknown += 1
        elif isinstance(v, int | float) or (isinstance(v, str) and v.strip().isascii() and v.strip().isdecimal()):
            j = int(v)
            if 0 <= j < len(classnames):
                out[i] = j
            else:
                unknown += 1
        elif isinstance(v, str) and v.strip().lower() in index:
            out[i] = index[v.strip().lower()]
        else:
            unknown += 1
    return out, {"no_label": missing, "not_a_class": unknown}
