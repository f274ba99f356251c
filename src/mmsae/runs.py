"""The run-folder contract, and loading what a run names: the one low module that the commands,
the explorer, the report and the pipelines all read runs through.

A run folder holds an SAE (or names one in `run.json`), points at its store (in `run.json`, or
through the SAE's provenance), and holds whatever analyses were written into it (`names.json`,
`top_examples.parquet`, `modality.json`, `bridges.json`, `stability.json`, `pareto.json` and their
plots), found at any depth up to three.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsae.errors import MmsaeError
from mmsae.models.io import CONFIG_NAME, WEIGHTS_NAME, read_config

RUN_FILE = "run.json"
EXPLORER_CACHE = "explorer"
"""The explorer's cache folder inside a run (never searched for analyses)."""
ANALYSES = ("names", "modality", "bridges", "stability", "pareto")


@dataclass(frozen=True)
class RunLayout:
    """Where a run's pieces are."""

    root: Path
    """The run folder."""
    sae: Path
    """The SAE folder (config.json + model.safetensors)."""
    store: Path
    """The store the SAE was trained on or is explored with."""
    files: dict[str, Path] = field(default_factory=dict)
    """Analysis outputs found in the run folder: `names`, `top_examples`, `modality`, `bridges`, ..."""
    plots: dict[str, Path] = field(default_factory=dict)
    """PNG plots of those analyses, by analysis name."""


def is_sae_folder(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def find_analysis(root: Path, name: str, depth: int = 3) -> Path | None:
    """The shallowest `name` under root (sorted order among equals), skipping the explorer cache."""
    for level in range(depth + 1):
        hits = sorted(
            p
            for p in root.glob("/".join(["*"] * level + [name]))
            if EXPLORER_CACHE not in p.relative_to(root).parts[:-1]
        )
        if hits:
            return hits[0]
    return None


def find_run(run_dir: str | os.PathLike, sae: str | None = None, store: str | None = None) -> RunLayout:
    """Locate the SAE (argument, RUN/run.json, or RUN itself), its store (argument, run.json or the
    SAE's provenance) and the analyses in the run folder."""
    root = Path(run_dir)
    if not root.is_dir():
        raise MmsaeError(
            f"{root} is not a folder; pass a run folder (e.g. the one `mmsae demo` writes) or an SAE folder"
        )
    spec: dict[str, Any] = {}
    if (root / RUN_FILE).is_file():
        try:
            spec = json.loads((root / RUN_FILE).read_text())
        except ValueError as exc:
            raise MmsaeError(f"{root / RUN_FILE} is damaged: {exc}") from None
        if not isinstance(spec, dict) or not all(isinstance(spec.get(k, ""), str) for k in ("sae", "store")):
            raise MmsaeError(f'{root / RUN_FILE} is damaged: expected {{"sae": PATH, "store": PATH}}')
    sae_dir = Path(sae) if sae else (root / spec["sae"] if "sae" in spec else root)
    if not is_sae_folder(sae_dir):
        raise MmsaeError(
            f"no SAE in {sae_dir} (config.json + model.safetensors); pass --sae, or a folder with {RUN_FILE} naming one"
        )
    if store:
        store_dir = Path(store)
    elif "store" in spec:
        store_dir = root / spec["store"]
    else:
        prov = read_config(sae_dir).get("provenance", {})
        if not isinstance(prov, dict) or not isinstance(prov.get("store"), str):
            raise MmsaeError(f"the SAE in {sae_dir} does not record its store; pass --store")
        store_dir = Path(prov["store"])
    files, plots = {}, {}
    top = find_analysis(root, "top_examples.parquet")
    if top:
        files["top_examples"] = top
    for name in ANALYSES:
        hit = find_analysis(root, f"{name}.json")
        if hit:
            files[name] = hit
            if hit.with_suffix(".png").is_file():
                plots[name] = hit.with_suffix(".png")
    return RunLayout(root, sae_dir, store_dir, files, plots)


def load_model(path: str, device: str = "cpu"):
    """An SAE folder (mmsae or SAELens), or a one-line error saying why not."""
    from mmsae.models.io import load_sae

    return load_sae(path, device=device)


def open_store_for(model, path: str):
    """The store at `path`, checked against the model's input dimension(s)."""
    from mmsae.data.store import EmbeddingStore

    store = EmbeddingStore(path)
    dims = (
        {m: model.input_dim(m) for m in ("image", "text")} if getattr(model, "paired", False) else {"*": model.cfg.d_in}
    )
    bad = {m: d for m, d in dims.items() if d != store.dim}
    if bad:
        raise MmsaeError(
            f"dimension mismatch: the SAE takes {sorted(set(dims.values()))}-d input, the store holds {store.dim}-d"
        )
    return store


def find_names(sae_dir: str | os.PathLike) -> Path | None:
    """The names.json of `mmsae name` that belongs to this SAE: in its folder, or in the run folder
    whose run.json names it (found as `mmsae explore` finds it). A names file elsewhere in a run
    folder is not taken: the demo names one of several SAEs of the same size."""
    sae_dir = Path(sae_dir)
    if (sae_dir / "names.json").is_file():
        return sae_dir / "names.json"
    run = sae_dir.parent / RUN_FILE
    if run.is_file():
        try:
            spec = json.loads(run.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(spec, dict) and isinstance(spec.get("sae"), str):
            if (sae_dir.parent / spec["sae"]).resolve() == sae_dir.resolve():
                return find_analysis(sae_dir.parent, "names.json")
    return None
