"""Loading helpers shared by the commands: one error message per user mistake."""

from __future__ import annotations

from mmsae.errors import MmsaeError
from mmsae.runs import load_model, open_store_for  # noqa: F401 (what the commands load with)


def val_fraction_of(model, given: float | None) -> float:
    """The held-out share the model was trained with, unless one is given."""
    if given is not None:
        return given
    return float(getattr(model, "provenance", {}).get("train_config", {}).get("val_fraction", 0.1))


def require_pairs(store, what: str) -> None:
    img_rows, _ = store.pairs()
    if len(img_rows) == 0:
        raise MmsaeError(
            f"{what} needs (image, text) pairs; {store.root} has none (rows by modality: {dict(store.manifest.counts)})"
        )


def read_names(path: str | None, dict_size: int | None = None):
    """The concept names of a names.json from `mmsae name`, or None when no path is given. With
    `dict_size`, the file must name concepts 0..F-1 in order: names of another SAE would be
    silently wrong (or out of range)."""
    import json
    from pathlib import Path

    from mmsae.analysis.naming import ConceptName

    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())["concepts"]
        names = [ConceptName(**c) for c in data]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MmsaeError(f"{path}: not a names.json from `mmsae name` ({exc})") from None
    if dict_size is not None and [n.concept for n in names] != list(range(dict_size)):
        raise MmsaeError(
            f"{path} names {len(names)} concepts, not the SAE's {dict_size} in order; name this SAE with `mmsae name`"
        )
    return names


def concept_of(spec: str, names) -> int:
    """A concept given as its index or, with --names, as its name (refused when several share it)."""
    s = spec.strip()
    if s.isascii() and s.isdecimal():
        return int(s)  # its range is checked where it is used
    if names is None:
        raise MmsaeError(f"--concept {spec!r} is not an index; pass --names names.json to give a concept by name")
    hits = [n.concept for n in names if n.name is not None and n.name.lower() == s.lower()]
    if not hits:
        raise MmsaeError(f"no concept is named {spec!r} in the names file")
    if len(hits) > 1:
        shown = ", ".join(map(str, hits[:10]))
        raise MmsaeError(f"{len(hits)} concepts are named {spec!r} ({shown}); give one by its index")
    return hits[0]


def name_of(names, j: int | None) -> str:
    """' (name)' for concept j when names are known, else ''."""
    if names is None or j is None or not 0 <= j < len(names) or not names[j].name:
        return ""
    return f" ({names[j].name})"


def pooling_choice(store, choice: str | None, name: str) -> str | None:
    """How a store's patch rows are pooled per picture (`--per-image`): max by default on a store of
    patch tokens, None for `row` or a store of one row per input (where max and mean are refused)."""
    from mmsae.analysis.heatmaps import has_patches
    from mmsae.errors import MmsaeError

    patches = has_patches(store)
    if choice in ("max", "mean") and not patches:
        tokens = store.manifest.preprocessing.get("tokens") or {}
        holds = (
            "one row per input"
            if not tokens
            else "a text tower's token rows"
            if tokens.get("tower") == "text"
            else f"--tokens {tokens.get('tokens')} rows, not every patch of each picture"
        )
        raise MmsaeError(f"--per-image {choice} needs a store of patch tokens; {name} holds {holds}")
    return None if choice == "row" or not patches else choice or "max"
