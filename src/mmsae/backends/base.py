"""The text-encoder interface, and finding the encoder that made a store.

A store records the `model_id` its embeddings came from; naming and search must embed words in
that same space, so the encoder is picked from it. Heavy libraries load only when used.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from mmsae.errors import MmsaeError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoder(Protocol):
    model_id: str
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim] float32, L2-normalised (as the store's text rows are)."""
        ...


def text_encoder_for(store) -> TextEncoder:
    """The text encoder matching `store.manifest.model_id`, or a one-line error saying what to do."""
    model_id = store.manifest.model_id
    if model_id == "synthetic":
        from mmsae.backends.synthetic import SyntheticTextEncoder

        return SyntheticTextEncoder.from_store(store)
    if model_id == MINILM_ID:
        from mmsae.backends.minilm import MiniLMTextEncoder

        return MiniLMTextEncoder()
    raise MmsaeError(f"no text encoder available for the store's model {model_id!r}; embed the vocabulary "
                     "yourself and pass it with --vocab-embeddings (an .npy with one row per vocabulary line)")
