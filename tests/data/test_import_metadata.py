"""`mmsae import ... --metadata FILE [--image-root DIR]`: image paths, URLs, captions, pair ids and
extra columns reach the store (and the explorer); every bad metadata file is one line, exit 2, and
leaves the store as it was."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmsae.cli.main import main
from mmsae.data.importers import import_embeddings
from mmsae.data.store import NO_PAIR, EmbeddingStore, StoreWriter
from mmsae.errors import MmsaeError
from tests.helpers import one_line_error, snapshot

N, D = 6, 8


@pytest.fixture
def emb(tmp_path, rng):
    img, txt = rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal((N, D)).astype(np.float32)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "txt.npy", txt)
    (tmp_path / "pics").mkdir()
    return img, txt


def _meta_rows():
    return [
        {
            "image_path": f"p{i}.png" if i != 4 else None,
            "url": f"https://example.org/{i}.jpg",
            "caption": f"a photo number {i}",
            "score": i / 2,
            "tags": [f"t{i}", "x"],
        }
        for i in range(N)
    ]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_single_modality_metadata_in_order(tmp_path, emb):
    img, _ = emb
    (tmp_path / "m.csv").write_text(
        "image_path,caption,license\n" + "".join(f"{i:03d},cap {i},cc-by\n" for i in range(N))
    )
    rc = main(
        ["import", str(tmp_path / "img.npy"), "--modality", "image", "--metadata", str(tmp_path / "m.csv")]
        + ["--out", str(tmp_path / "s"), "--json"]
    )
    assert rc == 0
    st = EmbeddingStore(tmp_path / "s")
    np.testing.assert_array_equal(st.all_embeddings(), img)
    meta = st.metadata()
    assert meta.column("source").to_pylist() == [f"{i:03d}" for i in range(N)]  # read as text, zeros kept
    assert meta.column("text").to_pylist() == [f"cap {i}" for i in range(N)]
    assert st.extras(range(N)) == [{"license": "cc-by"}] * N
    assert (st.pair_ids() == NO_PAIR).all()
    assert st.check() == []


def test_metadata_keyed_by_row_matches_in_order(tmp_path, emb, rng):
    rows = _meta_rows()
    _write_jsonl(tmp_path / "ordered.jsonl", rows)
    perm = rng.permutation(N)
    _write_jsonl(tmp_path / "keyed.jsonl", [{"row": int(i), **rows[i]} for i in perm])
    for name in ("ordered", "keyed"):
        import_embeddings(
            tmp_path / name, embeddings=tmp_path / "img.npy", modality="image", metadata=tmp_path / f"{name}.jsonl"
        )
    a, b = EmbeddingStore(tmp_path / "ordered").metadata(), EmbeddingStore(tmp_path / "keyed").metadata()
    assert a.drop_columns(["model_id"]).equals(b.drop_columns(["model_id"]))
    assert a.column("source").to_pylist()[:2] == ["p0.png", "p1.png"]
    assert a.column("source").to_pylist()[4] == "https://example.org/4.jpg"  # no image_path: the url
    assert "row" not in json.loads(b.column("extra")[0].as_py())


def test_paired_import_captions_and_image_paths(tmp_path, emb):
    img, txt = emb
    rows = _meta_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    rep = import_embeddings(
        tmp_path / "s",
        images=tmp_path / "img.npy",
        texts=tmp_path / "txt.npy",
        metadata=tmp_path / "m.parquet",
        image_root=tmp_path / "pics",
    )
    assert rep.rows_written == 2 * N
    st = EmbeddingStore(tmp_path / "s")
    meta = st.metadata()
    mods = meta.column("modality").to_pylist()
    assert mods == ["image"] * N + ["text"] * N
    src, text = meta.column("source").to_pylist(), meta.column("text").to_pylist()
    assert src[:N] == [r["image_path"] or r["url"] for r in rows]
    assert src[N:] == [f"{tmp_path / 'txt.npy'}#{i}" for i in range(N)]  # text rows keep their file's row
    assert text[N:] == [r["caption"] for r in rows]  # the caption is the text row's text ...
    assert text[:N] == [r["caption"] for r in rows]  # ... and shown on its image row
    im, tx = st.pairs()
    np.testing.assert_array_equal(st.get(im), img)
    np.testing.assert_array_equal(st.get(tx), txt)
    assert st.manifest.preprocessing["image_root"] == str((tmp_path / "pics").resolve())
    # extras round-trip: the other columns, on both rows of a pair; url kept since image_path was used
    want = [{"url": r["url"], "score": r["score"], "tags": r["tags"]} for r in rows]
    assert st.extras(range(N)) == want and st.extras(range(N, 2 * N)) == want
    assert st.labels([0, N + 1]) == [rows[0]["caption"], rows[1]["caption"]]


def test_pair_id_column_is_shifted_past_the_store(tmp_path, emb):
    _write_jsonl(tmp_path / "m.jsonl", [{"pair_id": i // 2} for i in range(N)])
    args = dict(images=tmp_path / "img.npy", texts=tmp_path / "txt.npy", metadata=tmp_path / "m.jsonl")
    import_embeddings(tmp_path / "s", images=tmp_path / "img.npy", texts=tmp_path / "txt.npy")  # pair ids 0 … N-1
    import_embeddings(tmp_path / "s", **args)
    pids = EmbeddingStore(tmp_path / "s").pair_ids()
    np.testing.assert_array_equal(pids[2 * N : 3 * N], N + np.arange(N) // 2)
    np.testing.assert_array_equal(pids[3 * N :], N + np.arange(N) // 2)


def test_metadata_with_pairs_describes_image_rows(tmp_path, emb):
    (tmp_path / "p.csv").write_text("image_row,text_row\n" + "".join(f"{i // 2},{i}\n" for i in range(N)))
    _write_jsonl(tmp_path / "m.jsonl", [{"image_path": f"p{i}.png", "caption": f"img {i}"} for i in range(N)])
    import_embeddings(
        tmp_path / "s",
        images=tmp_path / "img.npy",
        texts=tmp_path / "txt.npy",
        pairs=tmp_path / "p.csv",
        metadata=tmp_path / "m.jsonl",
    )
    meta = EmbeddingStore(tmp_path / "s").metadata()
    assert meta.column("source").to_pylist()[:N] == [f"p{i}.png" for i in range(N)]
    assert meta.column("text").to_pylist()[:N] == [f"img {i}" for i in range(N)]
    assert meta.column("text").to_pylist()[N:] == [None] * N


def test_old_stores_read_extra_as_null(tmp_path, emb, rng):
    """A store whose shards predate the `extra` column reads it as nulls, next to new shards."""
    import_embeddings(tmp_path / "s", embeddings=tmp_path / "img.npy", modality="image")
    assert "extra" not in pq.read_schema(tmp_path / "s/shards/shard-000000.parquet").names  # written as before
    st = EmbeddingStore(tmp_path / "s")
    assert st.metadata().column("extra").null_count == N and st.extras([0]) == [None]
    _write_jsonl(tmp_path / "m.jsonl", [{"k": i} for i in range(N)])
    import_embeddings(tmp_path / "s", embeddings=tmp_path / "txt.npy", modality="text", metadata=tmp_path / "m.jsonl")
    st = EmbeddingStore(tmp_path / "s")
    assert st.check() == []
    assert st.metadata().column("extra").to_pylist() == [None] * N + [
        json.dumps({"k": i}, separators=(",", ":")) for i in range(N)
    ]
    assert st.extras([1, N + 1]) == [None, {"k": 1}]
    assert st.metadata(["extra", "row_id"]).num_rows == 2 * N
    assert st.labels([0]) == [f"{tmp_path / 'img.npy'}#0"]


def test_labels_fall_back_to_source_then_row(tmp_path, rng):
    with StoreWriter(tmp_path / "s", dim=4) as w:
        w.append(rng.standard_normal((3, 4)), "image", source=["a.png", None, ""], text=[None, "cap", None])
    assert EmbeddingStore(tmp_path / "s").labels([2, 1, 0]) == ["row 2", "cap", "a.png"]


def test_rerun_resumes_and_a_new_root_is_recorded(tmp_path, emb):
    _write_jsonl(tmp_path / "m.jsonl", _meta_rows())
    args = ["import", "--images", str(tmp_path / "img.npy"), "--texts", str(tmp_path / "txt.npy")]
    args += ["--metadata", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "s"), "--json"]
    assert main(args) == 0
    assert main(args + ["--image-root", str(tmp_path / "pics")]) == 0  # same rows: skipped, the root recorded
    st = EmbeddingStore(tmp_path / "s")
    assert len(st) == 2 * N and st.manifest.preprocessing["image_root"] == str((tmp_path / "pics").resolve())
    _write_jsonl(tmp_path / "m.jsonl", _meta_rows()[::-1])  # other metadata: another import
    assert main(args) == 0
    assert len(EmbeddingStore(tmp_path / "s")) == 4 * N


def test_interrupted_import_resumes_without_duplicates(tmp_path, emb, monkeypatch):
    img, txt = emb
    _write_jsonl(tmp_path / "m.jsonl", _meta_rows())
    kw = dict(images=tmp_path / "img.npy", texts=tmp_path / "txt.npy", metadata=tmp_path / "m.jsonl", shard_rows=4)
    commit = StoreWriter._commit

    def crash(self, consumed):
        commit(self, consumed)
        raise RuntimeError("killed")

    monkeypatch.setattr(StoreWriter, "_commit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        import_embeddings(tmp_path / "s", **kw)
    monkeypatch.setattr(StoreWriter, "_commit", commit)
    assert len(EmbeddingStore(tmp_path / "s")) == 4
    rep = import_embeddings(tmp_path / "s", **kw)
    assert rep.rows_skipped_resume == 4 and rep.rows_written == 2 * N - 4
    import_embeddings(tmp_path / "whole", **kw)
    a, b = EmbeddingStore(tmp_path / "s"), EmbeddingStore(tmp_path / "whole")
    np.testing.assert_array_equal(a.all_embeddings(), np.concatenate([img, txt]))
    assert a.metadata().equals(b.metadata())


EVIL_URL = "https://example.org/'\"><img/src=x/onerror=window.__xss=1>"  # no spaces: a link, shown as text


@pytest.fixture(scope="module")
def url_run(tmp_path_factory):
    """A store imported with --metadata (a picture under the image root, web addresses, a hostile
    one, a javascript: one) and a small SAE trained on it."""
    pytest.importorskip("fastapi", reason="install the [explorer] extra")
    from mmsae.train.trainer import train

    tmp = tmp_path_factory.mktemp("urls")
    rng = np.random.default_rng(1)
    np.save(tmp / "img.npy", rng.standard_normal((N, D)).astype(np.float32))
    np.save(tmp / "txt.npy", rng.standard_normal((N, D)).astype(np.float32))
    (tmp / "pics" / "sub").mkdir(parents=True)
    (tmp / "pics" / "sub" / "p0.png").write_bytes(b"\x89PNG zero")
    rows = [{"image_path": "sub/p0.png", "caption": "zero", "photographer": "<b>ann</b>"}]
    rows += [{"url": f"https://example.org/{i}.jpg?a=1&b=2", "caption": f"web {i}"} for i in range(1, N)]
    rows[2]["url"] = "javascript:window.__xss=2"
    rows[3]["url"] = EVIL_URL
    rows[4]["url"] = "https://example.org/ <img src=x onerror=window.__xss=3>"
    _write_jsonl(tmp / "m.jsonl", rows)
    rc = main(
        ["import", "--images", str(tmp / "img.npy"), "--texts", str(tmp / "txt.npy")]
        + ["--metadata", str(tmp / "m.jsonl"), "--image-root", str(tmp / "pics")]
        + ["--out", str(tmp / "store"), "--json"]
    )
    assert rc == 0
    train(
        tmp / "store",
        tmp / "sae",
        arch="topk",
        dict_size=16,
        k=2,
        steps=3,
        batch_size=4,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    from mmsae.explorer.index import load_explorer
    from mmsae.runs import find_run

    return load_explorer(find_run(tmp / "sae"))


def test_explorer_shows_images_and_links(url_run):
    from fastapi.testclient import TestClient

    from mmsae.explorer.app import create_app

    client = TestClient(create_app(url_run), base_url="http://localhost")
    r0 = client.get("/api/rows/0").json()
    assert r0["image_url"] == "/images/sub/p0.png" and r0["link"] is None
    assert r0["extra"] == {"photographer": "<b>ann</b>"} and r0["text"] == "zero"
    assert client.get(r0["image_url"]).content == b"\x89PNG zero"
    r1 = client.get("/api/rows/1").json()
    assert r1["image_url"] is None and r1["link"] == "https://example.org/1.jpg?a=1&b=2"
    assert client.get("/api/rows/2").json()["link"] is None  # only http(s) is a link
    t1 = client.get(f"/api/rows/{N + 1}").json()  # the caption of pair 1: its extras carry the picture's url
    assert t1["image_url"] is None and t1["link"] == r1["link"] and t1["text"] == "web 1"
    assert client.get(f"/api/rows/{N}").json()["link"] is None  # pair 0's caption: no url anywhere


@pytest.mark.slow
def test_links_in_a_real_browser(url_run):
    """The row page shows a web address as a link that opens apart from the explorer, a hostile one
    as text inside the link, and a javascript: one not as a link at all."""
    pw = pytest.importorskip("playwright.sync_api")
    from mmsae.explorer.app import create_app
    from tests.explorer.conftest import chromium, serving, wait_ready

    exe = chromium()
    with serving(create_app(url_run)) as url, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        spaced = "https://example.org/ <img src=x onerror=window.__xss=3>"  # not a link: shown as source text
        for r, want in ((1, "https://example.org/1.jpg?a=1&b=2"), (3, EVIL_URL), (4, None), (2, None), (0, None)):
            pg.goto(f"{url}/#/row/{r}")
            wait_ready(pg, f"#/row/{r}")
            links = pg.locator("[data-testid=row-link]")
            if want is None:
                assert links.count() == 0, r
                continue
            assert links.count() == 1
            assert links.get_attribute("href") == want and links.inner_text() == want
            assert links.get_attribute("rel") == "noopener noreferrer" and links.get_attribute("target") == "_blank"
        pg.goto(f"{url}/#/row/4")
        wait_ready(pg, "#/row/4")
        assert spaced in pg.inner_text("main")
        pg.goto(f"{url}/#/row/0")
        wait_ready(pg, "#/row/0")
        assert pg.locator("[data-testid=row-image]").get_attribute("src") == "/images/sub/p0.png"
        assert "<b>ann</b>" in pg.inner_text("[data-testid=row-extra]")
        assert pg.evaluate("document.querySelectorAll('img[src=x], b').length") == 0
        assert pg.evaluate("window.__xss") is None and not errors
        browser.close()


# ---- bad input: one line, exit 2, nothing written ----------------------------------------------
def _bad_cases(tmp_path):
    rows = _meta_rows()
    cases = {
        "short": (_write_jsonl(tmp_path / "short.jsonl", rows[:-1]), "5 metadata rows for 6 embedding rows"),
        "missing": (
            _write_jsonl(tmp_path / "missing.jsonl", [{"row": i, **rows[i]} for i in (0, 1, 2, 3, 5, 5)]),
            "row 5 is described 2 times",
        ),
        "gap": (
            _write_jsonl(tmp_path / "gap.jsonl", [{"row": i} for i in (0, 1, 2, 3, 5)]),
            "1 of 6 embedding rows have no metadata row (row 4)",
        ),
        "range": (_write_jsonl(tmp_path / "range.jsonl", [{"row": i} for i in range(1, N + 1)]), "row 6 out of range"),
        "float_row": (_write_jsonl(tmp_path / "fr.jsonl", [{"row": i + 0.5} for i in range(N)]), "expected integers"),
        "int_path": (_write_jsonl(tmp_path / "ip.jsonl", [{"image_path": i} for i in range(N)]), "'image_path' holds"),
        "suffix": (tmp_path / "m.txt", "metadata must be CSV, JSONL or parquet"),
        "garbage": (tmp_path / "garbage.parquet", "cannot read as PARQUET"),
        "not_json": (tmp_path / "bad.jsonl", "cannot read as JSON"),
        "no_file": (tmp_path / "nope.csv", "no such file"),
        "folder": (tmp_path / "dir.csv", "is a directory"),
        "neg_pair": (_write_jsonl(tmp_path / "np.jsonl", [{"pair_id": -5}] * N), "pair ids must be non-negative"),
    }
    (tmp_path / "dir.csv").mkdir(exist_ok=True)
    (tmp_path / "m.txt").write_text("image_path\n" + "a.png\n" * N)
    (tmp_path / "garbage.parquet").write_bytes(os.urandom(300))
    (tmp_path / "bad.jsonl").write_text('{"image_path": "a.png"}\n[1, 2\n')
    return cases


@pytest.mark.parametrize("existing", [False, True], ids=["new-store", "existing-store"])
def test_bad_metadata_is_one_line_and_writes_nothing(tmp_path, emb, capsys, existing):
    out = tmp_path / "s"
    if existing:
        import_embeddings(out, embeddings=tmp_path / "txt.npy", modality="text")
    before = snapshot(out)
    for name, (path, needle) in _bad_cases(tmp_path).items():
        for form in (
            [str(tmp_path / "img.npy"), "--modality", "image"],
            ["--images", str(tmp_path / "img.npy"), "--texts", str(tmp_path / "txt.npy")],
        ):
            rc = main(["import", *form, "--metadata", str(path), "--out", str(out)])
            one_line_error(capsys, rc, needle, str(path) if name != "suffix" else "m.txt")
            assert snapshot(out) == before, name


def test_unreadable_metadata(tmp_path, emb, capsys, monkeypatch):
    path = tmp_path / "m.csv"
    path.write_text("image_path\n" + "a.png\n" * N)
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: the reader is told to refuse, as the kernel would
        import pyarrow.csv

        def refuse(p, *a, **kw):
            raise PermissionError(13, "Permission denied", str(p))

        monkeypatch.setattr(pyarrow.csv, "read_csv", refuse)
    try:
        rc = main(
            ["import", str(tmp_path / "img.npy"), "--modality", "image", "--metadata", str(path)]
            + ["--out", str(tmp_path / "s")]
        )
    finally:
        path.chmod(0o644)
    one_line_error(capsys, rc, str(path), "cannot read")
    assert not (tmp_path / "s").exists()


def test_bad_image_root_and_conflicts(tmp_path, emb, capsys):
    _write_jsonl(tmp_path / "m.jsonl", _meta_rows())
    _write_jsonl(tmp_path / "nocap.jsonl", [{"image_path": "a.png"}] * N)
    (tmp_path / "c.txt").write_text("".join(f"c{i}\n" for i in range(N)))
    (tmp_path / "p.csv").write_text("0,0\n1,1\n")
    (tmp_path / "other").mkdir()
    out = tmp_path / "s"
    img = ["import", str(tmp_path / "img.npy"), "--modality", "image", "--out", str(out)]
    pair = ["import", "--images", str(tmp_path / "img.npy"), "--texts", str(tmp_path / "txt.npy"), "--out", str(out)]
    meta = ["--metadata", str(tmp_path / "m.jsonl")]
    cases = [
        (img + meta + ["--image-root", str(tmp_path / "nowhere")], "--image-root", "no such folder"),
        (img + meta + ["--image-root", str(tmp_path / "m.jsonl")], "no such folder"),
        (img + ["--image-root", str(tmp_path / "pics")], "needs --metadata"),
        (pair + meta + ["--captions", str(tmp_path / "c.txt")], "give them once"),
        (pair + ["--pairs", str(tmp_path / "p.csv"), "--metadata", str(tmp_path / "np.jsonl")], "no such file"),
    ]
    _write_jsonl(tmp_path / "pid.jsonl", [{"pair_id": 1}] * N)
    cases.append((pair + ["--pairs", str(tmp_path / "p.csv"), "--metadata", str(tmp_path / "pid.jsonl")], "pair_id"))
    for args, *needles in cases:
        one_line_error(capsys, main(args), *needles)
        assert not out.exists(), args
    # a store whose images live elsewhere keeps them there
    assert main(img + ["--metadata", str(tmp_path / "nocap.jsonl"), "--image-root", str(tmp_path / "pics")]) == 0
    capsys.readouterr()
    before = snapshot(out)
    rc = main(pair + meta + ["--image-root", str(tmp_path / "other")])
    one_line_error(capsys, rc, "holds images under", "same --image-root")
    assert snapshot(out) == before


def test_python_api_raises_mmsae_error(tmp_path, emb):
    _write_jsonl(tmp_path / "m.jsonl", _meta_rows()[:2])
    with pytest.raises(MmsaeError, match="2 metadata rows for 6"):
        import_embeddings(
            tmp_path / "s", embeddings=tmp_path / "img.npy", modality="image", metadata=tmp_path / "m.jsonl"
        )
    assert not (tmp_path / "s").exists()
