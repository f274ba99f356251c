"""Every endpoint of the explorer's API, on the demo run (planted truth) and on hostile input."""

import os

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mmsae.analysis import truth
from mmsae.data.synthetic import load_ground_truth
from mmsae.explorer.app import MAX_LIMIT, create_app
from mmsae.explorer.index import load_explorer
from mmsae.runs import find_run


@pytest.fixture(scope="module")
def run(demo_run):
    data = load_explorer(find_run(demo_run))
    gt = load_ground_truth(demo_run / "store")
    latent_C, _ = truth.match_planted(data.model.W_dec.detach().numpy(), gt.dictionary_CD)
    return TestClient(create_app(data), base_url="http://localhost"), data, gt, latent_C


def test_summary_and_front_end(run):
    client, data, _, _ = run
    s = client.get("/api/summary").json()
    assert s["dict_size"] == data.dict_size and s["rows"] == len(data.store) and s["has_images"]
    assert set(s["plots"]) >= {"modality", "bridges", "stability"}
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/app.css").status_code == 200
    plots = client.get("/api/plots").json()
    for p in plots:
        r = client.get(p["url"])
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_concept_list_sorts_filters_and_pages(run):
    client, data, _, _ = run
    F = data.dict_size
    full = client.get("/api/concepts", params={"sort": "frequency", "order": "desc", "limit": MAX_LIMIT}).json()
    assert full["total"] == F
    freq = [c["frequency"] for c in full["items"]]
    assert freq == sorted(freq, reverse=True)
    page = client.get("/api/concepts", params={"sort": "frequency", "offset": 50, "limit": 25}).json()
    assert [c["concept"] for c in page["items"]] == [c["concept"] for c in full["items"][50:75]]
    asc = client.get("/api/concepts", params={"sort": "modality_score", "order": "asc", "limit": MAX_LIMIT}).json()
    mu = [c["modality_score"] for c in asc["items"]]
    known = [m for m in mu if m is not None]
    assert known == sorted(known) and all(m is None for m in mu[len(known) :])  # missing values last
    names = client.get("/api/concepts", params={"sort": "name", "order": "asc", "limit": 20}).json()
    got = [c["name"] for c in names["items"]]
    assert got == sorted(got)
    for b in ("image", "text", "bimodal"):
        res = client.get("/api/concepts", params={"bucket": b, "limit": MAX_LIMIT}).json()
        assert res["total"] == int((data.table["bucket"] == b).sum()) and all(c["bucket"] == b for c in res["items"])
    name = next(n for n in data.table["name"] if n)
    res = client.get("/api/concepts", params={"q": name}).json()
    assert res["total"] >= 1 and all(name in (c["name"] or "") or name in c["terms"] for c in res["items"])


def test_concept_page_shows_the_planted_concept(run):
    client, data, gt, latent_C = run
    checked = 0
    for c in np.nonzero(latent_C >= 0)[0][::7]:
        j = int(latent_C[c])
        page = client.get(f"/api/concepts/{j}").json()
        kind, name = gt.kinds[c], gt.names[c]
        side = "text" if kind == "text" else "image"
        rows = page["top"][side]
        assert rows, (j, kind)
        share = np.mean([name in r["text"].split() for r in rows])  # a synthetic row's text lists its planted names
        assert share >= 0.8, (j, name, share)
        if side == "image":
            assert all(r["image_url"] and client.get(r["image_url"]).status_code == 200 for r in rows[:3])
        assert page["name"] == name  # named from the vocabulary of planted names and distractors
        assert sum(sum(v) for v in page["histogram"]["counts"].values()) > 0
        cos = [n["cosine"] for n in page["neighbors"]]
        assert cos == sorted(cos, reverse=True) and j not in [n["concept"] for n in page["neighbors"]]
        checked += 1
    assert checked >= 8


def test_bridges_link_planted_partners(run):
    client, data, gt, latent_C = run
    found = 0
    for i, t in gt.bridges:
        if latent_C[i] < 0 or latent_C[t] < 0:
            continue
        page = client.get(f"/api/concepts/{int(latent_C[i])}").json()
        partners = {b["concept"] for b in page["bridges"] if b["side"] == "image"}
        found += int(latent_C[t]) in partners
    assert found >= len(gt.bridges) - 1


def test_row_page_and_similar_rows(run):
    client, data, gt, latent_C = run
    store = data.store
    planted_of = truth.planted_of_latents(latent_C, data.dict_size)
    img_rows = store.rows("image")
    X = store.all_embeddings()
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for r in img_rows[:5]:
        d = client.get(f"/api/rows/{int(r)}", params={"similar": 6}).json()
        assert d["modality"] == "image" and d["image_url"]
        assert {p["modality"] for p in d["pair"]} == {"text"}
        mine = set(d["text"].split())
        named = [gt.names[planted_of[c["concept"]]] for c in d["concepts"][:3] if planted_of[c["concept"]] >= 0]
        assert all(n in mine for n in named)  # its strongest recovered concepts are planted in it
        sims = Xn[img_rows] @ Xn[r]
        order = img_rows[np.argsort(-sims)]
        want = [int(x) for x in order if x != r][:6]
        assert [s["row"] for s in d["similar"]] == want


def test_text_query(run):
    client, data, gt, latent_C = run
    c = next(c for c in range(len(gt.names)) if latent_C[c] >= 0 and gt.kinds[c] == "shared")
    res = client.get("/api/search", params={"q": gt.names[c]}).json()
    assert res["method"] == "encoder"
    assert int(latent_C[c]) in [x["concept"] for x in res["concepts"][:3]]
    assert res["rows"] and all(r["modality"] == "image" for r in res["rows"])
    hits = np.mean([gt.names[c] in r["text"].split() for r in res["rows"]])
    assert hits >= 0.5
    odd = client.get("/api/search", params={"q": "a purple elephant"}).json()  # unknown to the synthetic encoder
    assert odd["method"] == "names" and "note" in odd


@pytest.mark.parametrize(
    "url, status",
    [
        ("/api/concepts?sort=password", 400),
        ("/api/concepts?order=sideways", 400),
        ("/api/concepts?bucket=x", 400),
        ("/api/concepts?limit=0", 422),
        (f"/api/concepts?limit={MAX_LIMIT + 1}", 422),
        ("/api/concepts?offset=-1", 422),
        ("/api/concepts?min_frequency=2", 422),
        ("/api/concepts?q=" + "x" * 201, 422),
        ("/api/concepts/-1", 404),
        ("/api/concepts/100000", 404),
        ("/api/concepts/abc", 422),
        ("/api/concepts/3?examples=0", 422),
        ("/api/rows/99999999", 404),
        ("/api/rows/-5", 404),
        ("/api/rows/1?similar=101", 422),
        ("/api/search", 422),
        ("/api/search?q=", 422),
        ("/api/search?q=" + "y" * 201, 422),
        ("/api/nothing", 404),
        ("/plots/passwd.png", 404),
    ],
)
def test_bad_parameters_get_4xx_with_a_message(run, url, status):
    r = run[0].get(url)
    assert r.status_code == status, (url, r.text)
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/images/..%2fmanifest.json",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images/%2e%2e%2fmanifest.json",
        "/images/%2Fetc%2Fpasswd",
        "/images//etc/passwd",
        "/images/0000/..%2F..%2Fmanifest.json",
        "/images/0000/%2e%2e/%2e%2e/ground_truth/config.json",
        "/images/%252e%252e/manifest.json",
        "/images/0000/0.png%00.txt",
        "/static/..%2f..%2fexplorer%2findex.py",
        "/static/%2e%2e/app.py",
        "/plots/..%2f..%2fmanifest",
        "/images/file:%2F%2F%2Fetc%2Fpasswd",
    ],
)
def test_path_traversal_is_refused(run, path):
    r = run[0].get(path)
    assert r.status_code in (403, 404), (path, r.status_code)
    assert b"dim" not in r.content and b"root:" not in r.content


def test_symlink_out_of_the_image_root_is_refused(run, tmp_path):
    client, data, _, _ = run
    from mmsae.data.images import image_root

    root = image_root(data.store)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    link, dlink = root / "zz-escape.png", root / "zz-dir"
    os.symlink(secret, link)
    os.symlink(tmp_path, dlink)
    try:
        assert client.get("/images/zz-escape.png").status_code == 403
        assert client.get("/images/zz-dir/secret.png").status_code == 403
        assert client.get("/images/0000/0.png").status_code == 200
    finally:
        link.unlink()
        dlink.unlink()


def test_hostile_metadata_never_yields_a_url(tmp_path):
    """Rows whose stored source points outside the image root get no image URL, and fetching the
    path by hand is refused."""
    from mmsae.data.store import StoreWriter
    from mmsae.train.trainer import train

    root = tmp_path / "imgs"
    root.mkdir()
    (root / "ok.png").write_bytes(b"\x89PNG ok")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG out")
    rng = np.random.default_rng(0)
    sources = ["ok.png", "../outside.png", str(tmp_path / "outside.png"), "missing.png", "http://x/y.png"]
    with StoreWriter(tmp_path / "store", dim=8, preprocessing={"image_root": str(root)}) as w:
        w.append(
            rng.standard_normal((5, 8)).astype(np.float32),
            "image",
            pair_id=np.arange(5),
            source=sources,
            text=[f"row {i}" for i in range(5)],
        )
        w.append(
            rng.standard_normal((5, 8)).astype(np.float32),
            "text",
            pair_id=np.arange(5),
            source=[""] * 5,
            text=[f"caption {i}" for i in range(5)],
        )
    train(
        tmp_path / "store",
        tmp_path / "sae",
        arch="topk",
        dict_size=16,
        k=2,
        steps=3,
        batch_size=4,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    client = TestClient(create_app(load_explorer(find_run(tmp_path / "sae"))), base_url="http://localhost")
    urls = [client.get(f"/api/rows/{r}").json()["image_url"] for r in range(5)]
    assert urls == ["/images/ok.png", None, None, None, None]
    assert client.get("/images/..%2foutside.png").status_code == 403
    assert client.get(f"/images/{tmp_path}/outside.png").status_code == 403


def test_cli_search_and_explorer_rank_rows_alike(run):
    """One ranking: `mmsae search --query` (analysis.search.search_text) and /api/search return the
    same rows, in the same order, whenever the store has a text encoder (names only list concepts)."""
    from mmsae.analysis.search import search_text

    client, data, gt, _ = run
    encoder = client.app.state.explorer.encoder()
    for q, limit in [(f"a photo of a {n}", limit) for n in gt.names[:8] for limit in (3, 8)]:
        res = client.get("/api/search", params={"q": q, "limit": limit}).json()
        assert res["method"] == "encoder"
        cli = search_text(data.model, data.store, q, encoder, top=limit)
        assert [r["row"] for r in res["rows"]] == [r["row"] for r in cli["rows"]], q
        np.testing.assert_allclose([r["score"] for r in res["rows"]], [r["score"] for r in cli["rows"]], rtol=1e-5)
