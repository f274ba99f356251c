"""`mmsae import --clip-retrieval DIR`: the folders clip-retrieval's inference writes
(`img_emb/img_emb_N.npy`, `text_emb/text_emb_N.npy`, `metadata/metadata_N.parquet`, as its
`clip_inference/writer.py` names them) imported partition by partition, resumably; every damaged
folder is one line, exit 2, and writes nothing."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmsae.cli.main import main
from mmsae.data.clip_retrieval import import_clip_retrieval
from mmsae.data.store import NO_PAIR, EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError
from tests.helpers import one_line_error, snapshot

D = 8


def write_export(root, sizes, *, image=True, text=True, pad=1, seed=0, webdataset=False, dim=D):
    """A clip-retrieval output folder: per partition the embeddings and the metadata its writer
    makes (image_path, caption, then the sample's JSON fields). Returns the arrays and rows written."""
    rng = np.random.default_rng(seed)
    img, txt, meta = [], [], []
    for sub in ["metadata"] + (["img_emb"] if image else []) + (["text_emb"] if text else []):
        (root / sub).mkdir(parents=True, exist_ok=True)
    start = 0
    for n, size in enumerate(sizes):
        num = str(n).zfill(pad)
        cols = {}
        if image:
            a = rng.standard_normal((size, dim)).astype(np.float32)
            np.save(root / "img_emb" / f"img_emb_{num}.npy", a)
            img.append(a)
            cols["image_path"] = [
                f"{start + i:09d}" if webdataset else str(root / "pics" / f"{start + i}.jpg") for i in range(size)
            ]
        if text:
            a = rng.standard_normal((size, dim)).astype(np.float32)
            np.save(root / "text_emb" / f"text_emb_{num}.npy", a)
            txt.append(a)
            cols["caption"] = [f"caption {start + i}" for i in range(size)]
        cols["url"] = [f"https://example.org/{start + i}.jpg" for i in range(size)]
        cols["width"] = [100 + start + i for i in range(size)]
        t = pa.table(cols)
        pq.write_table(t, root / "metadata" / f"metadata_{num}.parquet")
        meta += t.to_pylist()
        start += size
    return img, txt, meta


def _expected_order(img, txt):
    """Rows as the store holds them: partition 0's images, its captions, partition 1's ..."""
    out = []
    for n in range(max(len(img), len(txt))):
        out += [a for a in (img[n] if img else None, txt[n] if txt else None) if a is not None]
    return np.concatenate(out)


def test_three_partitions_row_by_row(tmp_path):
    img, txt, meta = write_export(tmp_path / "cr", [5, 3, 4])
    (tmp_path / "cr" / "pics").mkdir()
    rc = main(
        ["import", "--clip-retrieval", str(tmp_path / "cr"), "--out", str(tmp_path / "s")]
        + ["--image-root", str(tmp_path / "cr" / "pics"), "--model-id", "open_clip:ViT-B-32/openai", "--json"]
    )
    assert rc == 0
    st = EmbeddingStore(tmp_path / "s")
    assert len(st) == 24 and st.manifest.counts == {"image": 12, "text": 12}
    np.testing.assert_array_equal(st.all_embeddings(), _expected_order(img, txt))
    assert st.manifest.preprocessing["image_root"] == str((tmp_path / "cr" / "pics").resolve())
    m = st.metadata()
    mods, src, text = (m.column(c).to_pylist() for c in ("modality", "source", "text"))
    # image row i and text row i of a partition are a pair, and metadata row i describes both
    im, tx = st.pairs()
    assert len(im) == 12
    np.testing.assert_array_equal(st.get(im), np.concatenate(img))
    np.testing.assert_array_equal(st.get(tx), np.concatenate(txt))
    assert [src[r] for r in im] == [r["image_path"] for r in meta]
    assert [text[r] for r in tx] == [r["caption"] for r in meta] == [text[r] for r in im]
    assert st.extras(im) == [{"url": r["url"], "width": r["width"]} for r in meta]
    assert st.extras(tx) == st.extras(im)
    assert mods[:5] == ["image"] * 5 and mods[5:10] == ["text"] * 5
    assert src[5] == f"{tmp_path / 'cr' / 'text_emb' / 'text_emb_0.npy'}#0"
    assert st.check() == []


def test_numeric_order_and_zero_padding(tmp_path):
    img, txt, _ = write_export(tmp_path / "cr", [1] * 11, pad=2)  # img_emb_00 … img_emb_10
    import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").all_embeddings(), _expected_order(img, txt))
    img, txt, _ = write_export(tmp_path / "cr1", [1] * 11, pad=1, seed=1)  # img_emb_0, _1, _10, _2, ... by name
    import_clip_retrieval(tmp_path / "s1", tmp_path / "cr1")
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s1").all_embeddings(), _expected_order(img, txt))


@pytest.mark.parametrize("which", ["image", "text"])
def test_one_modality_exports(tmp_path, which):
    img, txt, meta = write_export(tmp_path / "cr", [3, 2], image=which == "image", text=which == "text")
    import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    st = EmbeddingStore(tmp_path / "s")
    assert st.manifest.counts == {which: 5} and (st.pair_ids() == NO_PAIR).all()
    np.testing.assert_array_equal(st.all_embeddings(), np.concatenate(img or txt))
    m = st.metadata()
    if which == "image":
        assert m.column("source").to_pylist() == [r["image_path"] for r in meta]
        assert m.column("text").to_pylist() == [None] * 5
    else:  # no image_path: the url is the source
        assert m.column("source").to_pylist() == [r["url"] for r in meta]
        assert m.column("text").to_pylist() == [r["caption"] for r in meta]


def test_webdataset_keys_and_pairs_after_an_earlier_import(tmp_path):
    """Pair ids are this import's own, past the store's; a webdataset's keys are kept as the source."""
    write_export(tmp_path / "a", [4])
    _, _, meta = write_export(tmp_path / "b", [3, 3], webdataset=True, seed=5)
    import_clip_retrieval(tmp_path / "s", tmp_path / "a")
    import_clip_retrieval(tmp_path / "s", tmp_path / "b")
    st = EmbeddingStore(tmp_path / "s")
    pids = st.pair_ids()
    np.testing.assert_array_equal(pids[:8], np.tile(np.arange(4), 2))
    np.testing.assert_array_equal(pids[8:], [4, 5, 6, 4, 5, 6, 7, 8, 9, 7, 8, 9])
    assert st.metadata().column("source").to_pylist()[8:11] == ["000000000", "000000001", "000000002"]


def test_rerun_is_a_no_op(tmp_path):
    write_export(tmp_path / "cr", [3, 3])
    import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    before = EmbeddingStore(tmp_path / "s").all_embeddings()
    rep = import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    assert rep.rows_written == 0 and rep.rows_skipped_resume == 12
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").all_embeddings(), before)


def test_interrupted_import_resumes_after_the_last_partition(tmp_path, monkeypatch):
    img, txt, _ = write_export(tmp_path / "cr", [4, 3, 5])
    commit = StoreWriter._commit
    calls = []

    def crash(self, consumed):
        commit(self, consumed)
        calls.append(consumed)
        raise KeyboardInterrupt  # killed right after partition 0 was committed

    monkeypatch.setattr(StoreWriter, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    monkeypatch.setattr(StoreWriter, "_commit", commit)
    assert calls == [8] and len(EmbeddingStore(tmp_path / "s")) == 8
    opened = []
    import mmsae.data.clip_retrieval as cr

    parts = cr._parts
    monkeypatch.setattr(cr, "_parts", lambda s, *a: opened.append(s.number) or parts(s, *a))
    rep = import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    assert rep.rows_skipped_resume == 8 and rep.rows_written == 16 and opened == [1, 2]
    import_clip_retrieval(tmp_path / "whole", tmp_path / "cr")
    a, b = EmbeddingStore(tmp_path / "s"), EmbeddingStore(tmp_path / "whole")
    np.testing.assert_array_equal(a.all_embeddings(), _expected_order(img, txt))
    assert a.metadata().equals(b.metadata()) and a.manifest.counts == b.manifest.counts


def test_drop_invalid(tmp_path, capsys):
    write_export(tmp_path / "cr", [4, 4])
    a = np.load(tmp_path / "cr/img_emb/img_emb_1.npy")
    a[2, 3] = np.nan
    np.save(tmp_path / "cr/img_emb/img_emb_1.npy", a)
    rc = main(["import", "--clip-retrieval", str(tmp_path / "cr"), "--out", str(tmp_path / "s")])
    one_line_error(capsys, rc, "img_emb_1.npy", "1 of 4 rows contain NaN", "--drop-invalid")
    assert not (tmp_path / "s").exists()
    rep = import_clip_retrieval(tmp_path / "s", tmp_path / "cr", drop_invalid=True)
    assert rep.rows_written == 15 and rep.rows_dropped_invalid == 1
    st = EmbeddingStore(tmp_path / "s")
    im, tx = st.pairs()
    assert len(im) == 7 and np.isfinite(st.all_embeddings()).all()
    m = st.metadata()
    texts, mods = m.column("text").to_pylist(), m.column("modality").to_pylist()
    assert [mods[i] for i, t in enumerate(texts) if t == "caption 6"] == ["text"]  # its image dropped, it stays


# ---- damaged folders: one line, exit 2, nothing written ---------------------------------------
def _damage(root, how):
    """A 3-partition export, damaged one way; returns the words the error must contain."""
    write_export(root, [3, 3, 3])
    if how == "gap":
        for sub, pre, ext in (("img_emb", "img_emb_", "npy"), ("text_emb", "text_emb_", "npy")):
            os.remove(root / sub / f"{pre}1.{ext}")
        os.remove(root / "metadata" / "metadata_1.parquet")
        return ["partition 1 is missing"]
    if how == "no_text":
        os.remove(root / "text_emb" / "text_emb_2.npy")
        return ["partition 2 has no text_emb/text_emb_2.npy"]
    if how == "no_meta":
        os.remove(root / "metadata" / "metadata_0.parquet")
        return ["partition 0 has no metadata/metadata_0.parquet"]
    if how == "no_image":
        os.remove(root / "img_emb" / "img_emb_0.npy")
        return ["partition 0 has no img_emb/img_emb_0.npy"]
    if how == "count_text":
        np.save(root / "text_emb" / "text_emb_1.npy", np.zeros((2, D), np.float32))
        return ["partition 1 disagrees on its row count", "text_emb_1.npy 2"]
    if how == "count_meta":
        pq.write_table(pa.table({"image_path": ["a", "b", "c", "d"]}), root / "metadata" / "metadata_2.parquet")
        return ["partition 2 disagrees on its row count", "metadata_2.parquet 4"]
    if how == "dim_shard":
        np.save(root / "img_emb" / "img_emb_2.npy", np.zeros((3, D + 1), np.float32))
        return ["img_emb_2.npy", "9-d embeddings, earlier files are 8-d"]
    if how == "dim_text":
        np.save(root / "text_emb" / "text_emb_0.npy", np.zeros((3, D + 2), np.float32))
        return ["text_emb_0.npy", "10-d"]
    if how == "nan":
        a = np.load(root / "text_emb" / "text_emb_2.npy")
        a[0] = np.inf
        np.save(root / "text_emb" / "text_emb_2.npy", a)
        return ["text_emb_2.npy", "contain NaN or inf"]
    if how == "int_path":
        pq.write_table(pa.table({"image_path": [1, 2, 3]}), root / "metadata" / "metadata_1.parquet")
        return ["metadata_1.parquet", "'image_path' holds int64"]
    if how == "garbage_meta":
        (root / "metadata" / "metadata_1.parquet").write_bytes(b"PAR1 not really")
        return ["metadata_1.parquet", "cannot read as parquet"]
    if how == "truncated_npy":
        p = root / "img_emb" / "img_emb_1.npy"
        p.write_bytes(p.read_bytes()[:100])
        return ["img_emb_1.npy", "cannot read"]
    if how == "twice":
        np.save(root / "img_emb" / "img_emb_01.npy", np.zeros((3, D), np.float32))
        return ["img_emb_01.npy and img_emb_1.npy are both partition 1"]
    if how == "not_export":
        for sub in ("img_emb", "text_emb"):
            for p in (root / sub).iterdir():
                p.unlink()
            (root / sub).rmdir()
        return ["not a clip-retrieval output folder"]
    if how == "no_metadata_folder":
        for p in (root / "metadata").iterdir():
            p.unlink()
        (root / "metadata").rmdir()
        return ["not a clip-retrieval output folder", "metadata/"]
    raise AssertionError(how)


DAMAGE = [
    "gap",
    "no_text",
    "no_meta",
    "no_image",
    "count_text",
    "count_meta",
    "dim_shard",
    "dim_text",
    "nan",
    "int_path",
    "garbage_meta",
    "truncated_npy",
    "twice",
    "not_export",
    "no_metadata_folder",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_export_is_one_line_and_writes_nothing(tmp_path, capsys, how):
    needles = _damage(tmp_path / "cr", how)
    out = tmp_path / "s"
    rc = main(["import", "--clip-retrieval", str(tmp_path / "cr"), "--out", str(out)])
    one_line_error(capsys, rc, *needles)
    assert not out.exists()
    write_export(tmp_path / "good", [2])  # an existing store is left byte for byte
    import_clip_retrieval(out, tmp_path / "good")
    before = snapshot(out)
    one_line_error(capsys, main(["import", "--clip-retrieval", str(tmp_path / "cr"), "--out", str(out)]), *needles)
    assert snapshot(out) == before


def test_bad_folder_and_flags(tmp_path, capsys):
    write_export(tmp_path / "cr", [2])
    (tmp_path / "file").write_text("x")
    np.save(tmp_path / "e.npy", np.zeros((2, D), np.float32))
    out = tmp_path / "s"
    base = ["import", "--out", str(out)]
    cases = [
        (base + ["--clip-retrieval", str(tmp_path / "nowhere")], "no such folder"),
        (base + ["--clip-retrieval", str(tmp_path / "file")], "no such folder"),
        (base + ["--clip-retrieval", str(tmp_path / "cr"), "--image-root", str(tmp_path / "nope")], "--image-root"),
        (base + ["--clip-retrieval", str(tmp_path / "cr"), "--metadata", str(tmp_path / "m.csv")], "--metadata"),
        (base + ["--clip-retrieval", str(tmp_path / "cr"), str(tmp_path / "e.npy")], "leave out EMB"),
        (base + ["--clip-retrieval", str(tmp_path / "cr"), "--images", str(tmp_path / "e.npy")], "--images"),
    ]
    for args, needle in cases:
        one_line_error(capsys, main(args), needle)
        assert not out.exists(), args
    (tmp_path / "empty" / "img_emb").mkdir(parents=True)
    (tmp_path / "empty" / "metadata").mkdir()
    one_line_error(capsys, main(base + ["--clip-retrieval", str(tmp_path / "empty")]), "no img_emb_N.npy")
    np.save(tmp_path / "d9.npy", np.zeros((2, D + 1), np.float32))
    assert main(["import", str(tmp_path / "d9.npy"), "--modality", "image", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    before = snapshot(out)
    one_line_error(capsys, main(base + ["--clip-retrieval", str(tmp_path / "cr")]), "dimension mismatch")
    assert snapshot(out) == before


def test_python_api_error(tmp_path):
    (tmp_path / "cr").mkdir()
    with pytest.raises(MmsaeError, match="not a clip-retrieval output folder"):
        import_clip_retrieval(tmp_path / "s", tmp_path / "cr")
    assert not (tmp_path / "s").exists()
