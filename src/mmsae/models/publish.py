"""An SAE as a folder ready to upload to the Hugging Face hub (`export_hub`), with its model card
(README.md): front matter the hub reads (library, tags), then what someone deciding whether to use
the SAE needs: what it is, how to load it, what it was trained on, how well it reconstructs, and
what its concepts are called. (Loading by hub id is `models.hub`.)"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError

MAX_NAMED = 100
"""Concepts listed in the card's names table (the most confident first); names.json holds all of
them. A table of 16k rows would bury the rest of the card and slow the hub's page."""

_LEADING_METRICS = ("fvu", "r2", "cosine", "l0", "dead_fraction", "dense_fraction", "n_rows")
"""The metrics a reader compares SAEs by, first in the table; the rest follow in their own order."""


def _cell(value: Any) -> str:
    """A table cell: numbers to 4 significant digits, text with the table's separator escaped."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    text = value if isinstance(value, str) else ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def _yaml_str(text: str) -> str:
    """A YAML scalar that stays a string whatever it holds (JSON strings are valid YAML)."""
    import json

    return json.dumps(text)


def _front_matter(sae, provenance: dict[str, Any]) -> list[str]:
    tags = ["sparse-autoencoder", "sae", "mmsae", "interpretability", "vision-language", sae.architecture]
    if getattr(sae, "paired", False):
        tags.append("multimodal")
    lines = ["---", "library_name: mmsae", "tags:", *(f"- {_yaml_str(t)}" for t in dict.fromkeys(tags))]
    return [*lines, "---"]


def _training_rows(provenance: dict[str, Any]) -> list[list[Any]]:
    fields = [
        ("store (embeddings trained on)", provenance.get("store")),
        ("embedding model", provenance.get("store_model_id")),
        ("training rows", provenance.get("n_train_rows")),
        ("steps", provenance.get("steps")),
        ("seed", provenance.get("seed")),
        ("held-out split", provenance.get("held_out")),
    ]
    norm = provenance.get("normalization")
    if isinstance(norm, dict) and norm.get("mode"):
        fields.append(("input normalisation (folded into the weights)", norm["mode"]))
    if provenance.get("format") == "saelens":
        fields.append(("imported from SAELens", provenance.get("source")))
    return [[k, v] for k, v in fields if v is not None and v != ""]


def _metric_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """One row per metric: its value over all rows, then per modality when measured per modality."""
    by_mod = metrics.get("by_modality") if isinstance(metrics.get("by_modality"), dict) else {}
    mods = [m for m, r in by_mod.items() if isinstance(r, dict)]
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for section, values in metrics.items():  # e.g. the cross-modal section of a paired SAE
        if section != "by_modality" and isinstance(values, dict):
            scalars |= {
                f"{section}.{k}": v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
    order = [k for k in _LEADING_METRICS if k in scalars] + [k for k in scalars if k not in _LEADING_METRICS]
    rows = [[k, scalars[k], *(by_mod[m].get(k) for m in mods)] for k in order]
    return ["metric", "all rows", *mods], rows


def model_card(
    sae,
    provenance: dict[str, Any],
    metrics: dict[str, Any],
    names: list | None = None,
    repo_id: str | None = None,
    max_named: int = MAX_NAMED,
) -> str:
    """README.md for a hub folder; `names` are `ConceptName`s of `mmsae name` (or None)."""
    from mmsae.version import __version__

    cfg = sae.cfg.to_dict()
    F_, D = cfg.get("dict_size"), cfg.get("d_in")
    title = f"{sae.architecture} sparse autoencoder ({F_} latents on {D}-d embeddings)"
    where = "hf://" + (repo_id or "USER/REPO/SUBFOLDER")
    lines = [
        *_front_matter(sae, provenance),
        "",
        f"# {title}",
        "",
        f"A sparse autoencoder trained with mmsae {__version__} on "
        "vision-language embeddings"
        + (" (one encoder shared by image and text rows, a decoder per modality)" if sae.paired else "")
        + ". Its weights act on raw embeddings: any normalisation used in training is folded in.",
        "",
        "## Use",
        "",
        "```python",
        "from mmsae import load_sae",
        "",
        f'sae = load_sae("{where}")  # a hub id (cached after the first download) or a local folder',
        "codes = sae.encode(x)" + (', "image")  # or "text"' if sae.paired else "  # x: [N, D] embeddings"),
        "x_hat = sae.decode(codes)" + (', "image")' if sae.paired else ""),
        "```",
        "",
        f"mmsae's commands take the same id as their SAE argument (`mmsae eval {where} STORE`, `mmsae name`, ...).",
        "",
        "## Configuration",
        "",
        *_table(["field", "value"], [[k, v] for k, v in cfg.items()]),
        "",
    ]
    training = _training_rows(provenance)
    if training:
        lines += ["## Training data", "", *_table(["", "value"], training), ""]
    if metrics:
        split = metrics.get("split")
        header, rows = _metric_rows(metrics)
        lines += [
            "## Metrics",
            "",
            f"Measured by mmsae on the {'held-out' if split == 'val' else split or 'evaluated'} rows "
            "(definitions: mmsae's docs/formulas.md).",
            "",
            *_table(header, rows),
            "",
        ]
    if names:
        named = [n for n in names if getattr(n, "name", None)]
        shown = sorted(named, key=lambda n: -float(n.confidence))[:max_named]
        lines += [
            "## Concept names",
            "",
            f"{len(named)} of {len(names)} concepts are named by the vocabulary term nearest their direction "
            f"(`mmsae name`); the {len(shown)} most confident, with their runner-up terms. All of them are in names.json.",
            "",
            *_table(
                ["concept", "name", "confidence", "other terms"],
                [[n.concept, n.name, float(n.confidence), list(n.terms[1:4])] for n in shown],
            ),
            "",
        ]
    return "\n".join(lines)


def read_metrics(sae_dir: Path | None, provenance: dict[str, Any]) -> dict[str, Any]:
    """The SAE's measured metrics: its folder's metrics.json, else the provenance's val_metrics."""
    import json

    if sae_dir is not None and (sae_dir / "metrics.json").is_file():
        try:
            metrics = json.loads((sae_dir / "metrics.json").read_text())
        except (OSError, ValueError) as exc:
            raise MmsaeError(f"{sae_dir / 'metrics.json'} is damaged: {exc}") from None
        if isinstance(metrics, dict):
            return metrics
    val = provenance.get("val_metrics")
    return val if isinstance(val, dict) else {}


def export_hub(
    sae,
    out_dir: str | os.PathLike,
    source: str | os.PathLike | None = None,
    names: list | None = None,
    names_file: str | os.PathLike | None = None,
    repo_id: str | None = None,
) -> list[Path]:
    """Write a folder ready to upload to the hub: the mmsae weights and config (`save_sae`, with the
    SAE's provenance), metrics.json and names.json when known, and a model card README.md. `source`
    is the SAE's folder (where metrics.json is looked for); `names` the `ConceptName`s of
    `mmsae name` (read them with `mmsae.cli.common.read_names`), and `names_file` the names.json
    they came from, copied as it is (with its vocabulary and method); `repo_id` the id the card's
    usage example loads. Returns the files written, the card last."""
    import dataclasses

    from mmsae.fileio import atomic_write, write_json_atomic
    from mmsae.models.io import CONFIG_NAME, WEIGHTS_NAME, save_sae

    out = Path(out_dir)
    provenance = dict(getattr(sae, "provenance", None) or {})
    metrics = read_metrics(Path(source) if source is not None else None, provenance)
    save_sae(sae, out, provenance)
    written = [out / WEIGHTS_NAME, out / CONFIG_NAME]
    if metrics:
        written.append(write_json_atomic(out / "metrics.json", metrics))
    else:
        (out / "metrics.json").unlink(missing_ok=True)  # a stale file of an earlier export would contradict the card
    if names and names_file is not None:
        written.append(atomic_write(out / "names.json", Path(names_file).read_bytes()))
    elif names:
        written.append(write_json_atomic(out / "names.json", {"concepts": [dataclasses.asdict(n) for n in names]}))
    else:
        (out / "names.json").unlink(missing_ok=True)
    card = model_card(sae, provenance, metrics, names, repo_id=repo_id)
    written.append(atomic_write(out / "README.md", card))
    return written
