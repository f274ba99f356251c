"""Loading helpers shared by the commands: one error message per user mistake."""

from __future__ import annotations

from mmsae.errors import MmsaeError


def load_model(path: str, device: str = "cpu"):
    from mmsae.models.io import SAELoadError, load_sae

    try:
        return load_sae(path, device=device)
    except SAELoadError as exc:
        raise MmsaeError(str(exc)) from None


def open_store_for(model, path: str):
    """The store at `path`, checked against the model's input dimension(s)."""
    from mmsae.data.store import EmbeddingStore

    store = EmbeddingStore(path)
    dims = {m: model.input_dim(m) for m in ("image", "text")} if getattr(model, "paired", False) else {"*": model.cfg.d_in}
    bad = {m: d for m, d in dims.items() if d != store.dim}
    if bad:
        raise MmsaeError(f"dimension mismatch: the SAE takes {sorted(set(dims.values()))}-d input, "
                         f"the store holds {store.dim}-d")
    return store


def val_fraction_of(model, given: float | None) -> float:
    """The held-out share the model was trained with, unless one is given."""
    if given is not None:
        return given
    return float(getattr(model, "provenance", {}).get("train_config", {}).get("val_fraction", 0.1))


def require_pairs(store, what: str) -> None:
    img_rows, _ = store.pairs()
    if len(img_rows) == 0:
        raise MmsaeError(f"{what} needs (image, text) pairs; {store.root} has none "
                         f"(rows by modality: {dict(store.manifest.counts)})")
