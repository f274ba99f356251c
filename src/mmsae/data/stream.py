"""Streaming batches out of a store: shuffled single rows, and (image, text) pairs.

The shuffled iterator draws row ids from shards in a seeded random order, chunk by chunk, through
a bounded shuffle buffer, then reads each batch's rows; its memory is set by `buffer_rows`, not by
the store's size, and the same seed gives the same batches. Under data-parallel training every
rank draws the same ids and reads only its slice of each batch. The train/validation split is a hash of the pair id, so both sides of a
pair always land on the same side of the split, and it needs no state on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mmsae.data.store import NO_PAIR, EmbeddingStore, column_array
from mmsae.errors import MmsaeError

Split = Literal["train", "val", "all"]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_mask(pair_id_N: np.ndarray, row_id_N: np.ndarray, split: Split, val_fraction: float) -> np.ndarray:
    """Which rows belong to `split`. Rows without a pair are split by their own row id. A
    `val_fraction` of 0 (an SAE trained on every row) holds nothing out: "val" is empty."""
    if split == "all":
        return np.ones(len(pair_id_N), dtype=bool)
    if not 0.0 <= val_fraction < 1.0:
        raise MmsaeError(f"val_fraction must be in [0, 1), got {val_fraction}")
    key = np.where(pair_id_N != NO_PAIR, pair_id_N, -2 - row_id_N)
    with np.errstate(over="ignore"):
        u = (_splitmix64(key.astype(np.int64).view(np.uint64)) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    is_val = u < val_fraction
    return is_val if split == "val" else ~is_val


def shard_mask(
    store: EmbeddingStore,
    shard: int,
    split: Split,
    val_fraction: float,
    modality: str | None,
    table=None,
    subsample: tuple[tuple[str, float], ...] = (),
) -> np.ndarray:
    """Which rows of one shard pass the split and modality filters (`table`: its metadata, if already read).

    `subsample`: (modality, p) pairs; a row of that modality stays with probability p, decided by a
    hash of its row id, so the same rows are kept on every pass and every machine.
    """
    t = table if table is not None else store.shard_metadata(shard, ["row_id", "pair_id", "modality"])
    row_ids = column_array(t, "row_id")
    keep = split_mask(column_array(t, "pair_id"), row_ids, split, val_fraction)
    if modality is not None or subsample:
        mods = column_array(t, "modality")
        if modality is not None:
            keep &= mods == modality
        for m, p in subsample:
            if p < 1.0:
                with np.errstate(over="ignore"):
                    u = (
                        _splitmix64(row_ids.astype(np.int64).view(np.uint64) ^ np.uint64(0x5EED)) >> np.uint64(11)
                    ).astype(np.float64) / float(1 << 53)
                keep &= (mods != m) | (u < p)
    return keep


@dataclass(frozen=True)
class StreamConfig:
    """How rows are drawn from a store for training or evaluation."""

    batch_size: int = 4096
    """Rows per batch."""
    seed: int = 0
    """Seeds the shard order, chunk order and buffer shuffles."""
    split: Split = "all"
    """Which side of the pair-id split to read."""
    val_fraction: float = 0.1
    """Share of pair ids held out for validation."""
    modality: str | None = None
    """Read only rows of this modality (None: all)."""
    buffer_rows: int = 65536
    """Shuffle buffer size; bounds memory at about buffer_rows × D × 4 bytes."""
    chunk_rows: int = 8192
    """Contiguous rows read from a shard at a time."""
    subsample: tuple[tuple[str, float], ...] = ()
    """(modality, keep probability) pairs, e.g. to set an image:text mix (see `shard_mask`)."""
    part: tuple[int, int] = (0, 1)
    """(rank, world size): read only this rank's contiguous slice of every batch. Every rank draws
    the same global batch of row ids, so W ranks together see exactly what one process sees."""


def _chunk_ids(store: EmbeddingStore, shard: int, lo: int, hi: int, cfg: StreamConfig, meta_cache: dict) -> np.ndarray:
    """Global row ids of rows [lo, hi) of a shard that pass the split and modality filters."""
    if shard not in meta_cache:
        if len(meta_cache) >= 64:  # bounded: masks of at most 64 shards (1 byte a row)
            meta_cache.pop(next(iter(meta_cache)))
        meta_cache[shard] = shard_mask(store, shard, cfg.split, cfg.val_fraction, cfg.modality, subsample=cfg.subsample)
    start = store.shards[shard].row_start
    return start + lo + np.nonzero(meta_cache[shard][lo:hi])[0]


def _part_slice(cfg: StreamConfig) -> slice:
    rank, world = cfg.part
    if world < 1 or not 0 <= rank < world:
        raise MmsaeError(f"part must be (rank, world) with 0 <= rank < world, got {cfg.part}")
    if cfg.batch_size % world:
        raise MmsaeError(f"batch size {cfg.batch_size} does not split evenly over {world} processes")
    per = cfg.batch_size // world
    return slice(rank * per, (rank + 1) * per)


def iter_batch_rows(store: EmbeddingStore, cfg: StreamConfig, epochs: int | None = None) -> Iterator[np.ndarray]:
    """Global row ids of each shuffled batch; forever when `epochs` is None.

    Shards are read chunk by chunk in a seeded random order through a bounded shuffle buffer (of
    row ids), so consecutive batches draw from a limited set of chunks: reads stay local on disk.
    Rows left over at the end of an epoch stay in the buffer and open the next one, so over many
    epochs every row is used equally and no partial batch is ever yielded.
    """
    if cfg.batch_size <= 0:
        raise MmsaeError(f"batch size must be positive, got {cfg.batch_size}")
    buffer_rows = max(cfg.buffer_rows, 2 * cfg.batch_size)
    buf: list[np.ndarray] = []
    n_buf = 0
    epoch = 0
    meta_cache: dict = {}
    while epochs is None or epoch < epochs:
        rng = np.random.default_rng([cfg.seed, epoch])
        n_epoch_rows = 0
        # every (shard, chunk) of the store in one random order, so the buffer mixes shards
        chunks = [(s, lo) for s in range(len(store.shards)) for lo in range(0, store.shards[s].n_rows, cfg.chunk_rows)]
        for ci in rng.permutation(len(chunks)):
            shard, lo = chunks[ci]
            hi = min(lo + cfg.chunk_rows, store.shards[shard].n_rows)
            ids = _chunk_ids(store, shard, lo, hi, cfg, meta_cache)
            if len(ids) == 0:
                continue
            store.will_need(shard, lo, hi)  # its rows are read over the next batches
            buf.append(ids)
            n_buf += len(ids)
            n_epoch_rows += len(ids)
            if n_buf >= buffer_rows:
                pool = np.concatenate(buf)
                pool = pool[rng.permutation(len(pool))]
                n_out = ((len(pool) - buffer_rows // 2) // cfg.batch_size) * cfg.batch_size
                for i in range(0, n_out, cfg.batch_size):
                    yield pool[i : i + cfg.batch_size]
                buf, n_buf = [pool[n_out:]], len(pool) - n_out
        if n_epoch_rows < cfg.batch_size:
            raise MmsaeError(
                f"only {n_epoch_rows} rows match the requested split/modality; fewer than one batch of {cfg.batch_size}"
            )
        if buf:
            pool = np.concatenate(buf)
            pool = pool[rng.permutation(len(pool))]
            n_out = (len(pool) // cfg.batch_size) * cfg.batch_size
            for i in range(0, n_out, cfg.batch_size):
                yield pool[i : i + cfg.batch_size]
            buf, n_buf = [pool[n_out:]], len(pool) - n_out
        epoch += 1


def iter_batches(store: EmbeddingStore, cfg: StreamConfig, epochs: int | None = None) -> Iterator[np.ndarray]:
    """Shuffled float32 batches: [B, D], or this rank's [B / world, D] slice of them (`cfg.part`)."""
    part = _part_slice(cfg)
    for rows in iter_batch_rows(store, cfg, epochs):
        yield store.get(rows[part])


def iter_rows(store: EmbeddingStore, cfg: StreamConfig) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """In-order pass: (row_ids, modality names, [n, D] float32) per chunk, for evaluation."""
    for shard in range(len(store.shards)):
        t = store.shard_metadata(shard, ["row_id", "pair_id", "modality"])
        keep = shard_mask(store, shard, cfg.split, cfg.val_fraction, cfg.modality, table=t, subsample=cfg.subsample)
        mods, rows = column_array(t, "modality"), column_array(t, "row_id")
        n = len(rows)
        for lo in range(0, n, cfg.chunk_rows):
            hi = min(lo + cfg.chunk_rows, n)
            k = keep[lo:hi]
            if not k.any():
                continue
            block = store.shard_rows(shard, lo + np.flatnonzero(k)).astype(np.float32, copy=False)
            yield rows[lo:hi][k], mods[lo:hi][k], block


def iter_pairs(
    store: EmbeddingStore, cfg: StreamConfig, epochs: int | None = None, image: str = "image", text: str = "text"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled (image [B, D], text [B, D]) batches where row i of each is a matched pair.

    Holds the pair index in memory (two int64 per pair); embeddings are gathered per batch.
    """
    img_rows, txt_rows = store.pairs(image, text)
    pids = store.pair_ids()[txt_rows]
    keep = split_mask(pids, txt_rows, cfg.split, cfg.val_fraction)
    img_rows, txt_rows = img_rows[keep], txt_rows[keep]
    if len(img_rows) < cfg.batch_size:
        raise MmsaeError(f"{len(img_rows)} pairs in split {cfg.split!r}; fewer than one batch of {cfg.batch_size}")
    part = _part_slice(cfg)
    epoch = 0
    while epochs is None or epoch < epochs:
        perm = np.random.default_rng([cfg.seed, epoch, 1]).permutation(len(img_rows))
        for i in range(0, len(perm) - cfg.batch_size + 1, cfg.batch_size):
            sel = perm[i : i + cfg.batch_size][part]
            yield store.get(img_rows[sel]), store.get(txt_rows[sel])
        epoch += 1
