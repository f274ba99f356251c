"""The 'text encoder' of a synthetic store: each planted concept's name maps to its name
embedding, the text-side embedding of that concept alone (what "a photo of a {name}" would be),
and distractor terms map to directions of no planted concept. Lets naming be tested against a
known answer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmsae.errors import MmsaeError


class SyntheticTextEncoder:
    model_id = "synthetic"

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.dim = len(next(iter(table.values())))

    @classmethod
    def from_store(cls, store) -> SyntheticTextEncoder:
        from mmsae.data.synthetic import name_embeddings

        terms, emb = name_embeddings(store.root)
        return cls(dict(zip(terms, emb)))

    def _lookup(self, text: str) -> np.ndarray | None:
        """The term itself, or the one known term inside a prompt such as "a photo of a shared-0003."."""
        if text in self.table:
            return self.table[text]
        hits = [w.strip(".,;:!?\"'") for w in text.split()]
        hits = [w for w in hits if w in self.table]
        return self.table[hits[0]] if len(hits) == 1 else None

    def embed_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        rows = [self._lookup(t) for t in texts]
        missing = [t for t, r in zip(texts, rows) if r is None]
        if missing:
            raise MmsaeError(f"the synthetic encoder knows only planted names and distractors; unknown: {missing[:3]}")
        return np.stack(rows).astype(np.float32)
