import json
import os

import numpy as np
import pytest

import mmsae.data.store as store_mod
from mmsae.data.store import NO_PAIR, EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError


def _write(root, n=1000, dim=8, shard_rows=128, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    mods = np.where(np.arange(n) % 2 == 0, "image", "text")
    with StoreWriter(root, dim=dim, dtype=dtype, shard_rows=shard_rows, model_id="m") as w:
        w.append(x, list(mods), pair_id=np.arange(n) // 2, text=[f"t{i}" for i in range(n)])
    return x, mods


def test_roundtrip_shards_and_metadata(tmp_path):
    x, mods = _write(tmp_path / "s")
    st = EmbeddingStore(tmp_path / "s")
    assert len(st) == 1000 and st.dim == 8
    assert len(st.shards) == 8  # ceil(1000 / 128)
    np.testing.assert_array_equal(st.all_embeddings(), x)
    assert st.manifest.counts == {"image": 500, "text": 500}
    meta = st.metadata()
    assert meta.column("row_id").to_pylist() == list(range(1000))
    assert meta.column("text").to_pylist()[7] == "t7"
    rows = np.array([999, 3, 500, 129, 128])
    np.testing.assert_array_equal(st.get(rows), x[rows])


def test_float16_store(tmp_path):
    x, _ = _write(tmp_path / "s", dtype="float16")
    st = EmbeddingStore(tmp_path / "s")
    assert st.shard_embeddings(0).dtype == np.float16
    np.testing.assert_allclose(st.all_embeddings(), x, atol=2e-3, rtol=2e-3)


def test_filters_and_pairs(tmp_path):
    _write(tmp_path / "s")
    st = EmbeddingStore(tmp_path / "s")
    assert len(st.rows(modality="image")) == 500
    np.testing.assert_array_equal(st.rows(pair_ids=[3]), [6, 7])
    img, txt = st.pairs()
    assert len(img) == 500
    np.testing.assert_array_equal(st.pair_ids()[img], st.pair_ids()[txt])
    assert (st.modalities()[img] == "image").all() and (st.modalities()[txt] == "text").all()
    with pytest.raises(MmsaeError, match="modality 'audio' not in store"):
        st.rows(modality="audio")


def test_many_captions_per_image_pairs(tmp_path):
    with StoreWriter(tmp_path / "s", dim=4) as w:
        w.append(np.eye(4)[:2], "image", pair_id=[10, 11])
        w.append(np.ones((5, 4)), "text", pair_id=[10, 10, 11, 11, NO_PAIR])
    img, txt = EmbeddingStore(tmp_path / "s").pairs()
    np.testing.assert_array_equal(txt, [2, 3, 4, 5])
    np.testing.assert_array_equal(img, [0, 0, 1, 1])


def test_dim_mismatch_refused(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(MmsaeError, match="dimension mismatch"):
        StoreWriter(tmp_path / "s", dim=9)


def test_non_finite_refused(tmp_path):
    w = StoreWriter(tmp_path / "s", dim=2)
    with pytest.raises(MmsaeError, match="non-finite"):
        w.append(np.array([[0.0, np.nan]]), "image")


def test_interrupted_write_leaves_no_half_shard(tmp_path):
    """An uncommitted shard file (crash between write and manifest) is invisible and cleaned up."""
    root = tmp_path / "s"
    _write(root, n=256, shard_rows=128)
    # simulate a crash: a shard file written, manifest not updated
    np.save(root / "shards" / "shard-000002.npy", np.zeros((5, 8), np.float32))
    (root / "shards" / "shard-000003.tmp.npy").write_bytes(b"partial")
    st = EmbeddingStore(root)
    assert len(st) == 256 and len(st.shards) == 2
    w = StoreWriter(root, dim=8)
    assert not (root / "shards" / "shard-000002.npy").exists()
    assert not (root / "shards" / "shard-000003.tmp.npy").exists()
    w.append(np.ones((3, 8)), "image")
    w.close()
    assert len(EmbeddingStore(root)) == 259


def test_job_resume_counts(tmp_path):
    root = tmp_path / "s"
    w = StoreWriter(root, dim=2, shard_rows=4, job="j1")
    w.append(np.ones((10, 2)), "image")  # 8 committed in 2 shards, 2 pending
    del w  # crash: pending rows lost
    w2 = StoreWriter(root, dim=2, shard_rows=4, job="j1")
    assert w2.rows_done == 8
    assert json.loads((root / "manifest.json").read_text())["n_rows"] == 8


def test_newer_schema_refused(tmp_path):
    _write(tmp_path / "s", n=10)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["schema_version"] = 99
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(MmsaeError, match="newer"):
        EmbeddingStore(tmp_path / "s")


def test_missing_store(tmp_path):
    with pytest.raises(MmsaeError, match="does not exist"):
        EmbeddingStore(tmp_path / "nope")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(MmsaeError, match="not an mmsae store"):
        EmbeddingStore(tmp_path / "empty")


def test_consumed_units_commit_with_their_rows(tmp_path):
    """A batch whose rows stand for more input items (some skipped) is never split across
    commits, so a resume never redoes a committed row nor skips an uncommitted one."""
    root = tmp_path / "s"
    w = StoreWriter(root, dim=2, shard_rows=4, job="j")
    w.append(np.ones((3, 2)), "image", consumed=4)  # 4 items, 1 unreadable
    w.append(np.ones((3, 2)), "image", consumed=3)  # would straddle the shard: starts a new one
    assert w.rows_done == 4 and json.loads((root / "manifest.json").read_text())["n_rows"] == 3
    w.append(np.empty((0, 2)), "image", consumed=2)  # a batch of unreadable items only
    w.close()
    assert StoreWriter(root, dim=2, shard_rows=4, job="j").rows_done == 9
    assert json.loads((root / "manifest.json").read_text())["n_rows"] == 6


@pytest.mark.parametrize("reads", ["compiled", "python"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_get_reads_any_rows_in_the_order_given(tmp_path, monkeypatch, dtype, reads):
    """Rows across shards, repeated, in runs and scattered, equal the same rows of the whole array,
    through the compiled gather and through the Python reads alike."""
    assert store_mod._row_reader() is not None  # numba is a dependency: the compiled gather runs here
    if reads == "python":
        monkeypatch.setattr(store_mod, "_row_reader", lambda: None)
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2500, 24)).astype(dtype)
    with StoreWriter(tmp_path / "s", dim=24, dtype=dtype, shard_rows=1000) as w:
        w.append(data, "image")
    store = EmbeddingStore(tmp_path / "s")
    rows = np.concatenate(
        [rng.integers(0, 2500, 300), np.arange(990, 1020), [5, 5, 2499, 0], np.arange(1999, 2003)[::-1]]
    )
    got = store.get(rows)
    assert got.dtype == np.float32 and got.shape == (len(rows), 24)
    np.testing.assert_array_equal(got, data[rows].astype(np.float32))
    np.testing.assert_array_equal(store.get(rows, dtype=np.float16), data[rows].astype(np.float16))
    assert store.get([]).shape == (0, 24)
    with pytest.raises(MmsaeError):
        store.get([2500])
    shard = sorted((tmp_path / "s" / "shards").glob("*.npy"))[1]
    os.truncate(shard, shard.stat().st_size - 24 * np.dtype(dtype).itemsize)  # cut while open: its last row lost
    np.testing.assert_array_equal(store.get([1000, 1998]), data[[1000, 1998]].astype(np.float32))
    with pytest.raises(MmsaeError, match="shorter than its manifest"):
        store.get([1000, 1999])
    with pytest.raises(MmsaeError, match="missing or damaged"):  # and a store opened now sees it at once
        EmbeddingStore(tmp_path / "s").get([1000])


def test_column_array_equals_pyarrow_conversion():
    """Buffers read directly (chunked, sliced, with nulls or not) give what to_numpy gives."""
    import pyarrow as pa

    from mmsae.data.store import column_array

    ints = pa.chunked_array([pa.array([5, -1, 7], pa.int64()), pa.array([1, 2, 3, 4], pa.int64()).slice(1, 2)])
    floats = pa.chunked_array([pa.array([0.5, 1.5], pa.float32()), pa.array([2.5, None, 3.5, 4.5, 5.5], pa.float32())])
    mods = pa.chunked_array(
        [pa.array(["image", "text", "image"]), pa.array(["text", "audio", "image", None, "x"]).slice(1, 2)]
    )
    t = pa.table({"i": ints, "m": mods.combine_chunks(), "f": floats.slice(0, 5)})
    for name in ("i", "m", "f"):
        got, want = column_array(t, name), t.column(name).to_numpy()
        assert got.dtype == want.dtype and len(got) == len(want)
        np.testing.assert_array_equal(got, want)
    assert column_array(pa.table({"m": mods}), "m").tolist() == ["image", "text", "image", "audio", "image"]
    empty = pa.table({"i": pa.chunked_array([], pa.int64()), "m": pa.chunked_array([], pa.string())})
    assert column_array(empty, "i").dtype == np.int64 and len(column_array(empty, "m")) == 0
