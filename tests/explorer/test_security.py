"""The explorer's defences over HTTP: the Host header against DNS rebinding, security headers on
every answer, file names the file system refuses, and a damaged cached index."""

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mmsae.errors import MmsaeError
from mmsae.explorer.app import CSP, DOCS_CSP, LOOPBACK, create_app
from mmsae.explorer.index import load_explorer
from mmsae.explorer.serve import allowed_hosts
from mmsae.runs import find_run


@pytest.fixture(scope="module")
def data(demo_run):
    return load_explorer(find_run(demo_run))


@pytest.fixture(scope="module")
def client(data):
    return TestClient(create_app(data), base_url="http://localhost")


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example", 403),
        ("evil.example:8765", 403),
        ("localhost.evil.example", 403),
        ("127.0.0.1.nip.io", 403),
        ("testserver", 403),
        ("", 403),
        ("localhost:abc", 403),
        ("localhost", 200),
        ("localhost:8765", 200),
        ("LOCALHOST:8765", 200),
        ("127.0.0.1", 200),
        ("127.0.0.1:8765", 200),
        ("[::1]", 200),
        ("[::1]:8765", 200),
    ],
)
def test_host_header_must_name_this_machine(client, host, status):
    r = client.get("/api/summary", headers={"host": host})
    assert r.status_code == status, (host, r.text)
    if status == 403:
        assert "--allow-host" in r.text and len(r.text) < 300 and "dict_size" not in r.text
        assert r.headers["content-security-policy"] == CSP


def test_allowed_hosts_extend_the_loopback_names(data):
    hosts = allowed_hosts("0.0.0.0", ["explorer.lan", "Box.Local:8080", "[fe80::1]"])
    assert hosts[: len(LOOPBACK)] == list(LOOPBACK)
    c = TestClient(create_app(data, hosts))
    for host, status in [
        ("explorer.lan", 200),
        ("explorer.lan:8765", 200),
        ("box.local:1", 200),
        ("[fe80::1]:80", 200),
        ("0.0.0.0:8765", 200),
        ("localhost:8765", 200),
        ("evil.example", 403),
        ("lan", 403),
    ]:
        assert c.get("/api/summary", headers={"host": host}).status_code == status, host
    assert c.get("/api/summary").status_code == 403  # TestClient's own "testserver" is not on the list
    for bad in ("", "a b", "x/y", "http://x"):
        with pytest.raises(MmsaeError, match="--allow-host"):
            allowed_hosts("127.0.0.1", [bad])


def test_security_headers_on_every_answer(client, data):
    img = client.get(f"/api/rows/{int(data.store.rows('image')[0])}").json()["image_url"]
    for url, status in [
        ("/", 200),
        ("/static/app.js", 200),
        ("/static/app.css", 200),
        ("/api/summary", 200),
        ("/api/concepts", 200),
        ("/api/concepts/3", 200),
        ("/plots/modality.png", 200),
        (img, 200),
        ("/api/concepts/999999", 404),
        ("/api/concepts?limit=0", 422),
        ("/api/concepts?sort=x", 400),
        ("/images/..%2fmanifest.json", 403),
        ("/nothing", 404),
        ("/static/nothing.js", 404),
    ]:
        r = client.get(url)
        assert r.status_code == status, (url, r.status_code)
        assert r.headers["content-security-policy"] == CSP, url
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer", url
    assert client.get("/api/docs").headers["content-security-policy"] == DOCS_CSP
    assert "frame-ancestors 'none'" in DOCS_CSP and "object-src 'none'" in DOCS_CSP
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "path",
    [
        "/images/" + "a" * 300 + ".png",
        "/images/" + "a" * 300 + ".jpg",
        "/images/0000/" + "b" * 5000 + ".png",
        "/images/" + "/".join(["c" * 200] * 30) + ".png",
        "/static/" + "d" * 300 + ".js",
        "/plots/" + "e" * 300 + ".png",
    ],
)
def test_file_names_the_file_system_refuses_are_404(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path[:40], r.status_code)
    assert r.json()["detail"]


def test_traversal_is_still_403(client):
    for path in (
        "/images/..%2fmanifest.json",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images//etc/passwd",
        "/images/" + "a" * 300 + "/..%2f..%2f..%2fmanifest.json",
    ):
        assert client.get(path).status_code == 403, path


def test_a_stored_source_too_long_for_the_file_system_gets_no_url(tmp_path):
    from mmsae.data.store import StoreWriter
    from mmsae.train.trainer import train

    root = tmp_path / "imgs"
    root.mkdir()
    (root / "ok.png").write_bytes(b"\x89PNG ok")
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "store", dim=8, preprocessing={"image_root": str(root)}) as w:
        w.append(
            rng.standard_normal((4, 8)).astype(np.float32),
            "image",
            pair_id=np.arange(4),
            source=["ok.png", "a" * 300 + ".png", "b" * 300 + "/c.png", "/".join(["d" * 250] * 20) + ".png"],
            text=[f"row {i}" for i in range(4)],
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
    c = TestClient(create_app(load_explorer(find_run(tmp_path / "sae"))), base_url="http://localhost")
    assert [c.get(f"/api/rows/{r}").json()["image_url"] for r in range(4)] == ["/images/ok.png", None, None, None]
    assert all(c.get(f"/api/concepts/{j}").status_code == 200 for j in range(16))


def test_a_damaged_cached_index_is_rebuilt(demo_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(demo_run / "sae-relu", run)  # an SAE folder as the run: the cache holds its top examples
    want = load_explorer(find_run(run)).table["frequency"]
    cache = run / "explorer"
    stamp = cache / "index.json"
    good = stamp.read_text()
    capsys.readouterr()
    for damage in (
        good[: len(good) // 2],
        "[]",
        '{"key": 5}',
        b"\xff\xfe\x00garbage",
        ("stats.npz", b"PK\x03\x04 cut"),
        ("top_examples.parquet", b"PAR1 cut"),
    ):
        name, text = damage if isinstance(damage, tuple) else ("index.json", damage)
        (cache / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        data = load_explorer(find_run(run))  # what a new start does
        err = capsys.readouterr().err
        assert "damaged" in err and "rebuilding" in err and len(err.strip().splitlines()) == 1, (damage, err)
        np.testing.assert_array_equal(data.table["frequency"], want)
        assert json.loads(stamp.read_text())["key"] == json.loads(good)["key"]
        assert TestClient(create_app(data), base_url="http://localhost").get("/api/concepts/0").status_code == 200
    load_explorer(find_run(run))
    assert capsys.readouterr().err == ""  # repaired: reused quietly
