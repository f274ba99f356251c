"""What one SAE trains on, asked of the store once: the rows (or matched pairs) of a split, one
modality or an image:text mix, how many there are, and their batches.

The trainer, `mmsae train`'s scheduling and the comparisons size their work from a `TrainingData`
instead of working out splits, mixes and counts from the store's pieces themselves, so the data
flows one way: store → view → trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mmsae.data.store import EmbeddingStore
from mmsae.data.stream import Split, StreamConfig, iter_batches, iter_pairs, shard_mask, split_mask
from mmsae.errors import MmsaeError

Subsample = tuple[tuple[str, float], ...]


def train_split(val_fraction: float) -> Split:
    """The split training reads: "train", or "all" when nothing is held out."""
    return "train" if val_fraction > 0 else "all"


def count_rows(
    store: EmbeddingStore, split: Split, val_fraction: float, modality: str | None, subsample: Subsample = ()
) -> int:
    if split == "val" and val_fraction == 0:
        return 0
    return sum(
        int(shard_mask(store, i, split, val_fraction, modality, subsample=subsample).sum())
        for i in range(len(store.shards))
    )


def count_pairs(store: EmbeddingStore, split: Split, val_fraction: float) -> int:
    """(image, text) pairs in a split; one per text row that has an image with its pair id."""
    img_rows, txt_rows = store.pairs()
    if len(txt_rows) == 0:
        mods = dict(store.manifest.counts)
        raise MmsaeError(
            f"{store.root} holds no (image, text) pairs (rows by modality: {mods}); paired "
            "architectures need a store with both modalities sharing pair ids"
        )
    if split == "val" and val_fraction == 0:
        return 0
    return int(split_mask(store.pair_ids()[txt_rows], txt_rows, split, val_fraction).sum())


def mix_subsample(store: EmbeddingStore, ratio: tuple[float, float] | None, val_fraction: float) -> Subsample:
    """Keep probabilities that turn the training split's image:text counts into `ratio`."""
    if ratio is None:
        return ()
    split = train_split(val_fraction)
    n_img = count_rows(store, split, val_fraction, "image")
    n_txt = count_rows(store, split, val_fraction, "text")
    if n_img == 0 or n_txt == 0:
        raise MmsaeError(f"--mix needs image and text rows; the training split has {n_img} image and {n_txt} text rows")
    a, b = ratio
    p_img = min(1.0, (a / b) * n_txt / n_img)
    p_txt = min(1.0, (b / a) * n_img / n_txt)
    return (("image", p_img), ("text", p_txt))


@dataclass(frozen=True)
class TrainingData:
    """The examples of one training run: single rows, or (image, text) pairs sharing a pair id."""

    store: EmbeddingStore
    pairs: bool
    """Each example is an (image, text) pair (paired SAEs) rather than one row."""
    val_fraction: float
    """Share of pair ids held out for validation (0: every row trains)."""
    modality: str | None = None
    """Rows of this modality only (single rows; None: all)."""
    subsample: Subsample = ()
    """(modality, keep probability) pairs that set an image:text mix (see `mix_subsample`)."""

    @property
    def split(self) -> Split:
        """The split training reads."""
        return train_split(self.val_fraction)

    @property
    def unit(self) -> str:
        return "pairs" if self.pairs else "rows"

    def count(self, split: Split | None = None) -> int:
        """Examples in `split` (default: the training split)."""
        split = split or self.split
        if self.pairs:
            return count_pairs(self.store, split, self.val_fraction)
        return count_rows(self.store, split, self.val_fraction, self.modality, self.subsample)

    def holding_out_nothing(self) -> TrainingData:
        return dataclasses.replace(self, val_fraction=0.0)

    def with_mix(self, ratio: tuple[float, float] | None) -> TrainingData:
        """This view with the training split's image:text counts set to `ratio` (None: as stored)."""
        return dataclasses.replace(self, subsample=mix_subsample(self.store, ratio, self.val_fraction))

    def describe(self) -> str:
        """How the examples were chosen, for messages: "rows of modality 'image'"."""
        return self.unit + (f" of modality {self.modality!r}" if self.modality else "")

    def stream_config(
        self, batch_size: int, seed: int, buffer_rows: int, part: tuple[int, int] = (0, 1)
    ) -> StreamConfig:
        return StreamConfig(
            batch_size=batch_size,
            seed=seed,
            split=self.split,
            val_fraction=self.val_fraction,
            modality=self.modality,
            buffer_rows=buffer_rows,
            subsample=self.subsample,
            part=part,
        )

    def batches(self, cfg: StreamConfig) -> Iterator[tuple[np.ndarray, ...]]:
        """Endless shuffled batches, each a tuple with one [B, D] array per example part: (rows,)
        or (image, text) with row i of each a matched pair."""
        if self.pairs:
            return iter_pairs(self.store, cfg)
        return ((b,) for b in iter_batches(self.store, cfg))
