import numpy as np
import pytest

from mmsae.data.store import EmbeddingStore, StoreWriter
from mmsae.data.stream import StreamConfig, iter_batches, iter_pairs, iter_rows, split_mask
from mmsae.errors import MmsaeError


@pytest.fixture
def store(tmp_path):
    n, dim = 3000, 4
    x = np.zeros((n, dim), np.float32)
    x[:, 0] = np.arange(n)  # row id in column 0 to trace rows
    x[:, 1] = np.arange(n) // 2  # pair id
    with StoreWriter(tmp_path / "s", dim=dim, shard_rows=500) as w:
        w.append(x, ["image" if i % 2 == 0 else "text" for i in range(n)], pair_id=np.arange(n) // 2)
    return EmbeddingStore(tmp_path / "s")


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_deterministic_for_seed(store):
    cfg = StreamConfig(batch_size=64, seed=5, buffer_rows=256, chunk_rows=100)
    a = _take(iter_batches(store, cfg), 30)
    b = _take(iter_batches(store, cfg), 30)
    c = _take(iter_batches(store, StreamConfig(batch_size=64, seed=6, buffer_rows=256, chunk_rows=100)), 30)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_epoch_covers_every_row_once_and_is_shuffled(store):
    cfg = StreamConfig(batch_size=100, seed=0, buffer_rows=400, chunk_rows=100)
    rows = np.concatenate([b[:, 0] for b in iter_batches(store, cfg, epochs=1)]).astype(int)
    assert len(rows) == 3000 and len(np.unique(rows)) == 3000
    assert not np.array_equal(rows, np.sort(rows))
    # the buffer mixes shards: the first batch draws from more than one shard
    first = next(iter(iter_batches(store, cfg)))[:, 0] // 500
    assert len(np.unique(first)) > 1


def test_memory_bounded_by_buffer(store):
    """The pool never exceeds buffer + one chunk, whatever the store size."""
    import tracemalloc

    cfg = StreamConfig(batch_size=50, seed=0, buffer_rows=200, chunk_rows=50)
    tracemalloc.start()
    for _ in iter_batches(store, cfg, epochs=2):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200_000  # ~ (200 + 50) rows × 4 dims × 4 bytes × a few copies, far below the 48 kB × N store


def test_split_keeps_pairs_together(store):
    pid = store.pair_ids()
    rows = np.arange(len(pid))
    val = split_mask(pid, rows, "val", 0.2)
    train = split_mask(pid, rows, "train", 0.2)
    assert not (val & train).any() and (val | train).all()
    assert 0.1 < val.mean() < 0.3
    for p in np.unique(pid):
        assert len(set(val[pid == p])) == 1  # both sides of every pair on one side


def test_split_and_modality_filters_in_stream(store):
    cfg = StreamConfig(batch_size=10, split="val", val_fraction=0.2, modality="text", buffer_rows=40, chunk_rows=100)
    got = np.concatenate([b for b in iter_batches(store, cfg, epochs=1)])
    pid = store.pair_ids()
    expected = split_mask(pid, np.arange(len(pid)), "val", 0.2) & (store.modalities() == "text")
    assert set(got[:, 0].astype(int)) <= set(np.nonzero(expected)[0])
    assert (got[:, 0] % 2 == 1).all()


def test_iter_rows_in_order(store):
    got = np.concatenate([x for _, _, x in iter_rows(store, StreamConfig(chunk_rows=333))])
    np.testing.assert_array_equal(got[:, 0], np.arange(3000))


def test_paired_iterator(store):
    img, txt = next(iter_pairs(store, StreamConfig(batch_size=32, seed=1)))
    np.testing.assert_array_equal(img[:, 1], txt[:, 1])  # same pair id
    assert (img[:, 0] % 2 == 0).all() and (txt[:, 0] % 2 == 1).all()


def test_too_small_for_batch(store):
    with pytest.raises(MmsaeError, match="fewer than one batch"):
        next(iter_batches(store, StreamConfig(batch_size=100000)))


def test_rank_parts_tile_the_global_batch(store):
    """W ranks read disjoint slices that, put together, are the single-process batch."""
    full = StreamConfig(batch_size=60, seed=2, buffer_rows=240, chunk_rows=100)
    parts = [StreamConfig(batch_size=60, seed=2, buffer_rows=240, chunk_rows=100, part=(r, 3)) for r in range(3)]
    whole = _take(iter_batches(store, full), 20)
    sliced = [_take(iter_batches(store, p), 20) for p in parts]
    for t in range(20):
        np.testing.assert_array_equal(np.concatenate([s[t] for s in sliced]), whole[t])
    pw = _take(iter_pairs(store, StreamConfig(batch_size=32, seed=1)), 5)
    pp = [_take(iter_pairs(store, StreamConfig(batch_size=32, seed=1, part=(r, 2))), 5) for r in range(2)]
    for t in range(5):
        np.testing.assert_array_equal(np.concatenate([p[t][0] for p in pp]), pw[t][0])
        np.testing.assert_array_equal(np.concatenate([p[t][1] for p in pp]), pw[t][1])
    with pytest.raises(MmsaeError, match="does not split evenly"):
        next(iter_batches(store, StreamConfig(batch_size=61, part=(0, 2))))


def _mapped_kb(root) -> int:
    """Resident KB of this process's mappings of files under `root` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:
            inside = len(head) > 5 and head[5].startswith(str(root))
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def test_streaming_maps_no_store_pages(tmp_path):
    """A pass over a 64 MB store reads rows with positioned reads: none of the store's pages
    enter this process's mappings. The control, a gather through the memory map, maps most of it
    (fault-around), which is what the reads avoid."""
    dim, n = 512, 65536  # float16: 64 MB
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "big", dim=dim, dtype="float16", shard_rows=16384) as w:
        for _i in range(0, n, 16384):
            w.append(rng.standard_normal((16384, dim)).astype(np.float16), "image")
    store = EmbeddingStore(tmp_path / "big")
    cfg = StreamConfig(batch_size=128, buffer_rows=8192, chunk_rows=2048)
    peak, rows, seen = 0, 0, []
    for batch in iter_batches(store, cfg, epochs=1):
        rows += len(batch)
        seen.append(batch[:2])
        peak = max(peak, _mapped_kb(tmp_path / "big"))
    assert rows >= n - 128
    assert peak < 1024, peak  # KB
    scattered = np.sort(rng.choice(16384, 1024, replace=False))
    control = np.asarray(store.shard_embeddings(0)[scattered])
    assert _mapped_kb(tmp_path / "big") > 8 * 1024
    np.testing.assert_array_equal(store.get(scattered), control.astype(np.float32))


def test_every_chunk_is_read_ahead_before_its_rows(store, monkeypatch):
    """Each chunk that enters the shuffle buffer is hinted to the kernel (posix_fadvise WILLNEED,
    its exact byte range) before any of its rows is gathered."""
    import os

    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    hinted: list[tuple[int, int]] = []  # (fd, first row) of each hint
    fd_shard = {}
    real_file = store._file

    def file(shard):
        out = real_file(shard)
        fd_shard[out[0]] = (shard, out[1])
        return out

    def fadvise(fd, offset, length, advice):
        assert advice == os.POSIX_FADV_WILLNEED
        shard, base = fd_shard[fd]
        row_bytes = store.dim * 4
        assert (offset - base) % row_bytes == 0 and length % row_bytes == 0
        lo = (offset - base) // row_bytes
        hinted.extend(store.shards[shard].row_start + r for r in range(lo, lo + length // row_bytes))

    monkeypatch.setattr(store, "_file", file)
    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    cfg = StreamConfig(batch_size=100, seed=0, buffer_rows=400, chunk_rows=100)
    seen = set()
    for batch in iter_batches(store, cfg, epochs=1):
        rows = batch[:, 0].astype(int)
        assert set(rows.tolist()) <= set(hinted)  # read ahead before being gathered
        seen.update(rows.tolist())
    assert len(seen) == 3000 and sorted(hinted) == list(range(3000))  # each chunk hinted once
