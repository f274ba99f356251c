"""What a store promises users' data: imports never pair with each other, writers never lose each
other's rows, and damaged files are refused in one line instead of read short or wrong."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmsae.cli.main import main
from mmsae.data.importers import import_embeddings
from mmsae.data.store import LOCK_NAME, EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError


def _paired_files(tmp_path, name, n, d, seed):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n, d)).astype(np.float32)
    txt = (img + 1e-3 * rng.standard_normal((n, d))).astype(np.float32)  # row i of each is a pair
    np.save(tmp_path / f"{name}_img.npy", img)
    np.save(tmp_path / f"{name}_txt.npy", txt)
    return tmp_path / f"{name}_img.npy", tmp_path / f"{name}_txt.npy"


def _assert_pairs_match(store: EmbeddingStore):
    """Every pair joins an image with its own caption (they differ by 0.1% noise, others by far more)."""
    img_rows, txt_rows = store.pairs()
    emb = store.all_embeddings()
    gap = np.linalg.norm(emb[img_rows] - emb[txt_rows], axis=1) / np.linalg.norm(emb[img_rows], axis=1)
    assert gap.max() < 0.05, f"{(gap >= 0.05).sum()} of {len(gap)} pairs join rows of different imports"
    return img_rows, txt_rows


def test_second_paired_import_never_pairs_with_the_first(tmp_path):
    a, b = _paired_files(tmp_path, "A", 1000, 8, 0), _paired_files(tmp_path, "B", 1000, 8, 1)
    out = tmp_path / "S"
    for img, txt in (a, b):
        assert main(["import", "--images", str(img), "--texts", str(txt), "--out", str(out), "--json"]) == 0
    store = EmbeddingStore(out)
    img_rows, txt_rows = _assert_pairs_match(store)
    assert len(txt_rows) == 2000 and len(np.unique(img_rows)) == 2000  # B's images are paired too
    pids = store.pair_ids()
    assert len(np.unique(pids)) == 2000 and store.manifest.next_pair_id == 2000


def test_resumed_import_keeps_its_pair_ids(tmp_path, monkeypatch):
    """An import interrupted after its first shard, then re-run, numbers its pairs as it began."""
    a, b = _paired_files(tmp_path, "A", 300, 4, 0), _paired_files(tmp_path, "B", 300, 4, 1)
    out = tmp_path / "S"
    import_embeddings(out, images=a[0], texts=a[1], shard_rows=100)
    calls = {"n": 0}
    real = StoreWriter.append

    def dies_on_third(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kw)

    monkeypatch.setattr(StoreWriter, "append", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        import_embeddings(out, images=b[0], texts=b[1], shard_rows=100)
    monkeypatch.setattr(StoreWriter, "append", real)
    assert 600 < len(EmbeddingStore(out)) < 1200
    rep = import_embeddings(out, images=b[0], texts=b[1], shard_rows=100)
    assert rep.rows_skipped_resume == 200
    store = EmbeddingStore(out)
    assert len(store) == 1200
    assert len(_assert_pairs_match(store)[1]) == 600


def test_store_from_before_pair_namespacing_gets_a_next_pair_id(tmp_path):
    out = tmp_path / "S"
    with StoreWriter(out, dim=2) as w:
        w.append(np.ones((3, 2)), "image", pair_id=[5, 9, 7])
    m = json.loads((out / "manifest.json").read_text())
    del m["next_pair_id"]
    (out / "manifest.json").write_text(json.dumps(m))
    with StoreWriter(out, dim=2, local_pair_ids=True) as w:
        assert w.pair_base == 10
        w.append(np.ones((1, 2)), "text", pair_id=[0])
    assert EmbeddingStore(out).pair_ids().tolist() == [5, 9, 7, 10]


def test_given_pair_ids_join_across_writers(tmp_path):
    """Ids the user chose (COCO image ids) are kept: images and captions written apart still pair."""
    out = tmp_path / "S"
    with StoreWriter(out, dim=2) as w:
        w.append(np.ones((2, 2)), "image", pair_id=[139, 285])
    with StoreWriter(out, dim=2) as w:
        w.append(np.ones((2, 2)), "text", pair_id=[285, 139])
    img, txt = EmbeddingStore(out).pairs()
    assert sorted(zip(img.tolist(), txt.tolist())) == [(0, 3), (1, 2)]


_WRITER = """
import sys, numpy as np
from mmsae.data.importers import import_embeddings
import_embeddings(sys.argv[1], images=sys.argv[2], texts=sys.argv[3], shard_rows=2000)
"""


def test_concurrent_imports_keep_every_row(tmp_path):
    """Two imports started together into one store: the second waits for the first, then appends."""
    out = tmp_path / "S"
    files = [_paired_files(tmp_path, f"P{i}", 25_000, 16, i) for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(out), str(img), str(txt)], stderr=subprocess.PIPE, text=True
        )
        for img, txt in files
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    store = EmbeddingStore(out)
    assert len(store) == 100_000 and store.manifest.counts == {"image": 50_000, "text": 50_000}
    assert store.check() == []
    assert len(_assert_pairs_match(store)[1]) == 50_000
    rows = store.all_embeddings()
    for img, _txt in files:  # each file's rows are all there, exactly once
        want = np.load(img)
        found = {r.tobytes() for r in rows}
        assert all(r.tobytes() in found for r in want)
    assert len({r.tobytes() for r in rows}) == 100_000


_HOLDER = """
import sys, time, numpy as np
from mmsae.data.store import StoreWriter
w = StoreWriter(sys.argv[1], dim=2)
w.append(np.ones((3, 2)), "image")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
w.close()
"""


def test_second_writer_waits_with_a_message(tmp_path):
    out = tmp_path / "S"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), "2.0"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, "-c", _HOLDER, str(out), "0"], capture_output=True, text=True, timeout=60)
    waited = time.monotonic() - t0
    holder.wait(timeout=60)
    assert second.returncode == 0, second.stderr
    assert f"being written by another process (pid {holder.pid})" in second.stderr
    assert waited > 1.0  # it waited for the holder (which slept 2 s) instead of writing beside it
    assert len(EmbeddingStore(out)) == 6


def test_killed_writer_leaves_the_store_unlocked(tmp_path):
    out = tmp_path / "S"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with StoreWriter(out, dim=2) as w:  # does not wait: the kernel dropped the dead writer's lock
        w.append(np.ones((1, 2)), "image")
    assert len(EmbeddingStore(out)) == 1 and (out / LOCK_NAME).exists()


def test_second_writer_in_one_process_is_refused(tmp_path):
    w = StoreWriter(tmp_path / "S", dim=2)
    with pytest.raises(MmsaeError, match="already open for writing in this process"):
        StoreWriter(tmp_path / "S", dim=2)
    w.close()
    StoreWriter(tmp_path / "S", dim=2).close()


def _one_line(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


@pytest.fixture
def small_store(tmp_path, rng):
    np.save(tmp_path / "e.npy", rng.standard_normal((4000, 8)).astype(np.float32))
    out = tmp_path / "S"
    import_embeddings(out, embeddings=tmp_path / "e.npy", modality="image", shard_rows=1000)
    return out


def test_parquet_shorter_than_its_shard_is_refused(small_store, capsys):
    meta = small_store / "shards" / "shard-000001.parquet"
    pq.write_table(pq.read_table(meta).slice(0, 100), meta)
    store = EmbeddingStore(small_store)
    with pytest.raises(MmsaeError, match="has 100 rows, its shard 1000"):
        store.modalities()
    _one_line(capsys, main(["info", str(small_store), "--check"]), "has 100 rows, its shard 1000")


def test_info_check_passes_a_sound_store_and_finds_nan_rows(small_store, capsys):
    assert main(["info", str(small_store), "--check"]) == 0
    assert json.loads(capsys.readouterr().out)["check"] == {"ok": True, "problems": []}
    arr = np.load(small_store / "shards" / "shard-000002.npy")
    arr[[3, 7]] = np.nan
    np.save(small_store / "shards" / "shard-000002.npy", arr)
    (small_store / "shards" / "shard-000003.npy").unlink()
    rc = main(["info", str(small_store), "--check"])
    out, err = capsys.readouterr()
    problems = json.loads(out)["check"]["problems"]
    assert rc == 2 and len(problems) == 2, problems
    assert "2 row(s) hold NaN/inf (rows 2003, 2007)" in problems[0] and "shard-000003" in problems[1]


@pytest.mark.parametrize(
    "manifest",
    [
        "[]",
        "null",
        '{"dim": "8", "dtype": "float32"}',
        '{"dim": 8, "dtype": "int8"}',
        '{"dim": 8, "dtype": "float32", "shards": [{"name": "../../etc/passwd", "n_rows": 1, "row_start": 0}]}',
        '{"dim": 8, "dtype": "float32", "counts": {"image": "many"}}',
        '{"dim": 8, "dtype": "float32", "shards": [{"name": "s", "n_rows": 5, "row_start": 3}]}',
        "\xff\xfe",
        "{" * 5000,
    ],
)
def test_damaged_manifest_is_one_line(small_store, capsys, manifest):
    (small_store / "manifest.json").write_text(manifest, encoding="latin-1")
    _one_line(capsys, main(["info", str(small_store)]), "manifest.json is damaged")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda t: t.drop_columns(["modality"]), "lacks column(s) modality"),
        (
            lambda t: t.set_column(1, "modality", pa.array([None] * t.num_rows, pa.string())),
            "'modality' has 1000 empty",
        ),
        (lambda t: t.set_column(2, "pair_id", pa.array(["x"] * t.num_rows)), "'pair_id' is string, expected int64"),
        (lambda t: t.set_column(2, "pair_id", pa.array(np.zeros(t.num_rows, np.int32))), None),  # a safe cast: fine
    ],
)
def test_mistyped_metadata(small_store, capsys, mutate, needle):
    meta = small_store / "shards" / "shard-000000.parquet"
    pq.write_table(mutate(pq.read_table(meta)), meta)
    rc = main(
        [
            "train",
            str(small_store),
            "--out",
            str(small_store.parent / "sae"),
            "--steps",
            "2",
            "--batch-size",
            "256",
            "--dict-size",
            "16",
            "--k",
            "4",
            "--json",
        ]
    )
    if needle is None:
        assert rc == 0
    else:
        _one_line(capsys, rc, needle)


def test_appending_keeps_the_store_dtype(tmp_path, rng, capsys):
    np.save(tmp_path / "e.npy", rng.standard_normal((10, 4)))
    out = tmp_path / "S"
    assert (
        main(["import", str(tmp_path / "e.npy"), "--modality", "image", "--out", str(out), "--dtype", "float16"]) == 0
    )
    before = (out / "manifest.json").read_bytes()
    np.save(tmp_path / "f.npy", rng.standard_normal((10, 4)))
    capsys.readouterr()
    _one_line(
        capsys,
        main(["import", str(tmp_path / "f.npy"), "--modality", "text", "--out", str(out), "--dtype", "float32"]),
        "holds float16 embeddings",
    )
    assert (out / "manifest.json").read_bytes() == before
    assert main(["import", str(tmp_path / "f.npy"), "--modality", "text", "--out", str(out)]) == 0
    store = EmbeddingStore(out)
    assert store.manifest.dtype == "float16" and len(store) == 20 and store.check() == []


def test_reimport_after_touch_is_skipped_and_rewrite_is_not(tmp_path, rng, capsys):
    path = tmp_path / "e.npy"
    np.save(path, rng.standard_normal((50, 4)).astype(np.float32))
    out = tmp_path / "S"
    assert main(["import", str(path), "--modality", "image", "--out", str(out)]) == 0
    os.utime(path, (time.time() + 100, time.time() + 100))  # touch
    capsys.readouterr()
    assert main(["import", str(path), "--modality", "image", "--out", str(out)]) == 0
    assert "skipped 50 rows an earlier run of this import" in capsys.readouterr().out
    assert len(EmbeddingStore(out)) == 50
    np.save(path, rng.standard_normal((50, 4)).astype(np.float32))  # same name and size, new rows
    assert main(["import", str(path), "--modality", "image", "--out", str(out)]) == 0
    assert len(EmbeddingStore(out)) == 100


def test_captions_split_on_newlines_only(tmp_path, rng):
    np.save(tmp_path / "t.npy", rng.standard_normal((3, 4)).astype(np.float32))
    caps = ["a page\x0cbreak", "a line\u2028separator", "plain"]
    (tmp_path / "c.txt").write_text("\r\n".join(caps) + "\r\n", encoding="utf-8")
    out = tmp_path / "S"
    import_embeddings(out, embeddings=tmp_path / "t.npy", modality="text", captions=tmp_path / "c.txt")
    assert EmbeddingStore(out).metadata(["text"]).column("text").to_pylist() == caps


def test_values_out_of_float32_range_are_named(tmp_path, capsys):
    arr = np.ones((4, 3))
    arr[2, 1] = 1e300
    np.save(tmp_path / "big.npy", arr)
    _one_line(
        capsys,
        main(["import", str(tmp_path / "big.npy"), "--modality", "image", "--out", str(tmp_path / "S")]),
        "row 2 holds values out of float32 range",
    )
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize("name", ["<img src=x onerror=alert(1)>", "a b", "", "x" * 40, "1abc", "../x"])
def test_modality_must_be_a_short_name(tmp_path, rng, capsys, name):
    np.save(tmp_path / "e.npy", rng.standard_normal((3, 4)).astype(np.float32))
    _one_line(
        capsys,
        main(["import", str(tmp_path / "e.npy"), "--modality", name, "--out", str(tmp_path / "S")]),
        "modality" if name else "--modality",
    )
    assert not (tmp_path / "S").exists()
