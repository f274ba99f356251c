import numpy as np
import pytest
import torch

from mmsae.data.importers import import_embeddings, load_embeddings
from mmsae.data.store import NO_PAIR, EmbeddingStore
from mmsae.errors import MmsaeError


@pytest.fixture
def arr(rng):
    return rng.standard_normal((50, 6)).astype(np.float32)


def _save_all(tmp_path, arr):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from safetensors.numpy import save_file

    paths = {}
    paths["npy"] = tmp_path / "e.npy"
    np.save(paths["npy"], arr)
    paths["npz"] = tmp_path / "e.npz"
    np.savez(paths["npz"], embeddings=arr, other=np.zeros(3))
    paths["safetensors"] = tmp_path / "e.safetensors"
    save_file({"emb": arr}, str(paths["safetensors"]))
    paths["pt"] = tmp_path / "e.pt"
    torch.save({"emb": torch.from_numpy(arr)}, paths["pt"])
    paths["parquet"] = tmp_path / "e.parquet"
    pq.write_table(pa.table({"id": np.arange(len(arr)), "embedding": list(arr)}), paths["parquet"])
    return paths


def test_every_format_reads_the_same(tmp_path, arr):
    for fmt, path in _save_all(tmp_path, arr).items():
        got = load_embeddings(path)
        np.testing.assert_allclose(np.asarray(got, np.float32), arr, err_msg=fmt)


class Evil:
    """A non-tensor object: loading it would need arbitrary unpickling."""


def test_pt_with_pickled_object_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(MmsaeError, match="cannot read"):
        load_embeddings(p)


def test_single_modality_import(tmp_path, arr):
    np.save(tmp_path / "e.npy", arr)
    rep = import_embeddings(tmp_path / "s", embeddings=tmp_path / "e.npy", modality="image")
    st = EmbeddingStore(tmp_path / "s")
    np.testing.assert_array_equal(st.all_embeddings(), arr)
    assert rep.rows_written == 50 and st.manifest.counts == {"image": 50}
    assert (st.pair_ids() == NO_PAIR).all()


def test_paired_import_with_captions(tmp_path, arr):
    np.save(tmp_path / "i.npy", arr)
    np.save(tmp_path / "t.npy", arr[::-1].copy())
    (tmp_path / "c.txt").write_text("\n".join(f"caption {i}" for i in range(50)) + "\n")
    import_embeddings(tmp_path / "s", images=tmp_path / "i.npy", texts=tmp_path / "t.npy", captions=tmp_path / "c.txt")
    st = EmbeddingStore(tmp_path / "s")
    img, txt = st.pairs()
    assert len(img) == 50
    np.testing.assert_array_equal(st.get(img), arr)
    assert st.metadata().column("text").to_pylist()[50 + 3] == "caption 3"


def test_pairs_csv_many_captions(tmp_path, rng):
    np.save(tmp_path / "i.npy", rng.standard_normal((3, 4)))
    np.save(tmp_path / "t.npy", rng.standard_normal((5, 4)))
    (tmp_path / "p.csv").write_text("image_row,text_row\n0,0\n0,1\n1,2\n2,3\n")
    import_embeddings(tmp_path / "s", images=tmp_path / "i.npy", texts=tmp_path / "t.npy", pairs=tmp_path / "p.csv")
    st = EmbeddingStore(tmp_path / "s")
    np.testing.assert_array_equal(st.pair_ids(), [0, 1, 2, 0, 0, 1, 2, NO_PAIR])
    img, txt = st.pairs()
    np.testing.assert_array_equal(img, [0, 0, 1, 2])


def test_resume_does_not_duplicate(tmp_path, rng):
    x = rng.standard_normal((1000, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    first = import_embeddings(tmp_path / "s", embeddings=tmp_path / "e.npy", modality="text", shard_rows=300)
    again = import_embeddings(tmp_path / "s", embeddings=tmp_path / "e.npy", modality="text", shard_rows=300)
    assert first.rows_written == 1000 and again.rows_written == 0 and again.rows_skipped_resume == 1000
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").all_embeddings(), x)


def test_nan_rows_reported_and_dropped(tmp_path, arr):
    arr = arr.copy()
    arr[[3, 7], 0] = np.nan
    arr[9, 1] = np.inf
    np.save(tmp_path / "e.npy", arr)
    with pytest.raises(MmsaeError, match="3 of 50 rows contain NaN or inf"):
        import_embeddings(tmp_path / "s", embeddings=tmp_path / "e.npy", modality="image")
    rep = import_embeddings(tmp_path / "s", embeddings=tmp_path / "e.npy", modality="image", drop_invalid=True)
    assert rep.rows_written == 47 and rep.rows_dropped_invalid == 3


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: np.save(p, np.zeros((3, 4, 5))), "2-D"),
        (lambda p: np.save(p, np.zeros(7)), "2-D"),
        (lambda p: np.save(p, np.zeros((0, 4))), "empty"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(np.lib.format.magic(1, 0) + b"garbage"), "cannot read"),
    ],
)
def test_bad_inputs(tmp_path, make, match):
    p = tmp_path / "bad.npy"
    make(p)
    with pytest.raises(MmsaeError, match=match):
        load_embeddings(p)


def test_truncated_npy(tmp_path, arr):
    p = tmp_path / "t.npy"
    np.save(p, arr)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(MmsaeError, match="cannot read|truncated"):
        load_embeddings(p)


def test_missing_file(tmp_path):
    with pytest.raises(MmsaeError, match="no such file"):
        load_embeddings(tmp_path / "nope.npy")


def test_dim_mismatch_with_store(tmp_path, rng):
    np.save(tmp_path / "a.npy", rng.standard_normal((4, 4)))
    np.save(tmp_path / "b.npy", rng.standard_normal((4, 5)))
    import_embeddings(tmp_path / "s", embeddings=tmp_path / "a.npy", modality="image")
    with pytest.raises(MmsaeError, match="dimension mismatch"):
        import_embeddings(tmp_path / "s", embeddings=tmp_path / "b.npy", modality="image")


def test_a_parquet_without_an_embedding_column_is_one_line_and_writes_nothing(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmsae.cli.main import main

    pq.write_table(pa.table({"caption": ["a dog", "a cat"], "row": [0, 1]}), tmp_path / "meta_only.parquet")
    out = tmp_path / "store"
    assert main(["import", str(tmp_path / "meta_only.parquet"), "--modality", "image", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "meta_only.parquet" in err and "Traceback" not in err
    assert not out.exists()
