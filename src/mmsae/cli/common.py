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
