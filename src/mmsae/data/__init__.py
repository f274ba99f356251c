"""Embedding store, importers, streaming and synthetic data with ground truth."""

from mmsae.data.importers import import_embeddings, load_embeddings
from mmsae.data.store import NO_PAIR, EmbeddingStore, StoreWriter
from mmsae.data.stream import StreamConfig, iter_batches, iter_pairs, iter_rows, split_mask
from mmsae.data.synthetic import SynthConfig, load_ground_truth, recovery, write_synthetic

__all__ = [
    "NO_PAIR",
    "EmbeddingStore",
    "StoreWriter",
    "import_embeddings",
    "load_embeddings",
    "StreamConfig",
    "iter_batches",
    "iter_pairs",
    "iter_rows",
    "split_mask",
    "SynthConfig",
    "write_synthetic",
    "load_ground_truth",
    "recovery",
]
