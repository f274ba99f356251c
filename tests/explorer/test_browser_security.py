"""The front end under attack, in a real browser: a store whose modality name, captions, sources and
concept names are HTML payloads is shown as text, and no page breaks the Content-Security-Policy.

The hostile store is written with StoreWriter directly: stores made by older versions or by hand
can hold any string, whatever `mmsae import` accepts today.
"""

import json

import numpy as np
import pytest

from mmsae.explorer.app import create_app
from mmsae.explorer.index import load_explorer
from mmsae.runs import find_run
from tests.explorer.conftest import chromium as _chromium
from tests.explorer.conftest import serving
from tests.explorer.conftest import wait_ready as _wait

EVIL_MOD = "<img src=x onerror=window.__xss=1>"
EVIL_TEXT = "<img src=x onerror=window.__xss=2> & <svg onload=window.__xss=3></svg>"
EVIL_SOURCE = '"><img src=x onerror=window.__xss=4>.png'
EVIL_NAME = "<img src=x onerror=window.__xss=5>"
WATCH = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
                          e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""
INJECTED = """() => [...document.querySelectorAll('*')].filter(e => e.matches('img[src=x], svg[onload]') ||
    [...e.attributes].some(a => a.name.startsWith('on'))).length"""


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    from mmsae.data.store import StoreWriter
    from mmsae.train.trainer import train

    run = tmp_path_factory.mktemp("hostile")
    (run / "imgs").mkdir()
    (run / "imgs" / "ok.png").write_bytes(b"\x89PNG ok")
    rng = np.random.default_rng(0)
    n = 24
    pid = np.arange(n)
    with StoreWriter(run / "store", dim=8, preprocessing={"image_root": str(run / "imgs")}) as w:
        w.append(
            rng.standard_normal((n, 8)).astype(np.float32),
            "image",
            pair_id=pid,
            source=[["ok.png", EVIL_SOURCE, "a" * 300 + ".png"][i % 3] for i in range(n)],
            text=[f"picture {i}" for i in range(n)],
        )
        w.append(
            rng.standard_normal((n, 8)).astype(np.float32),
            "text",
            pair_id=pid,
            source=[""] * n,
            text=[f"{EVIL_TEXT} {i}" for i in range(n)],
        )
        w.append(
            rng.standard_normal((n, 8)).astype(np.float32),
            EVIL_MOD,
            pair_id=pid,
            source=[EVIL_SOURCE] * n,
            text=[f"{EVIL_TEXT} other {i}" for i in range(n)],
        )
    train(
        run / "store",
        run / "sae",
        arch="topk",
        dict_size=16,
        k=4,
        steps=5,
        batch_size=8,
        device="cpu",
        checkpoint_every=0,
        progress=False,
    )
    (run / "names").mkdir()
    (run / "names" / "names.json").write_text(
        json.dumps(
            {
                "concepts": [
                    {"concept": j, "name": f"{EVIL_NAME} {j}", "terms": [EVIL_NAME, EVIL_TEXT]} for j in range(16)
                ]
            }
        )
    )
    (run / "run.json").write_text(json.dumps({"sae": "sae", "store": "store"}))
    data = load_explorer(find_run(run))
    assert EVIL_MOD in data.modalities  # the payload really is a modality of the store
    with serving(create_app(data)) as url:
        yield url, data


@pytest.fixture(scope="module")
def browser():
    pw = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _page(browser):
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    pg.add_init_script(WATCH)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    return pg


def test_stored_payloads_are_shown_as_text(hostile_run, browser):
    url, data = hostile_run
    j = int(np.argmax(data.table["frequency"]))
    evil_rows = np.nonzero(data.store.modalities() == EVIL_MOD)[0]
    image_rows = np.nonzero(data.store.modalities() == "image")[0]
    pg = _page(browser)
    visits = {
        "#/": "[data-testid=concept-row]",
        f"#/concept/{j}": "[data-testid=histogram]",
        f"#/row/{int(evil_rows[0])}": "[data-testid=row-title]",
        f"#/row/{int(image_rows[1])}": "[data-testid=row-title]",
        "#/search?q=img": "[data-testid=search-concepts]",
    }
    for hash_, sel in visits.items():
        pg.goto(f"{url}/{hash_}")
        _wait(pg, hash_)
        pg.wait_for_selector(sel)
        assert pg.evaluate(INJECTED) == 0, hash_
        assert pg.evaluate("window.__xss") is None, hash_
        assert pg.evaluate("window.__csp") == [], hash_  # nothing was even attempted
        text = pg.inner_text("main")
        if hash_.startswith("#/concept"):
            assert EVIL_MOD in pg.text_content("[data-testid=histogram]")  # the legend, literally
            assert f"Top {EVIL_MOD} rows" in text
            assert EVIL_TEXT.split(" & ")[0] in text and f"{EVIL_NAME} {j}" in text
        elif hash_ == "#/":
            assert f"{EVIL_NAME} 0" in text
        elif hash_.startswith(f"#/row/{int(evil_rows[0])}"):
            assert f"{EVIL_MOD} row" in pg.inner_text("[data-testid=row-title]") and EVIL_SOURCE in text
    assert not pg.errors
    pg.close()


def test_demo_pages_keep_to_the_content_security_policy(server, browser):  # noqa: F811
    url, data, _ = server
    pg = _page(browser)
    r = pg.goto(url + "/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    row = int(data.store.rows("image")[0])
    for hash_ in ("#/", "#/concept/3", f"#/row/{row}", "#/plots", "#/search?q=a"):
        pg.goto(f"{url}/{hash_}")
        _wait(pg, hash_)
    pg.goto(f"{url}/#/row/{row}")
    _wait(pg, f"#/row/{row}")
    widths = pg.locator("[data-testid=row-concepts] .bar").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().width)"
    )
    assert widths and max(widths) == pytest.approx(150, abs=1)  # the bars' widths, set under the policy
    assert pg.evaluate("window.__csp") == [] and not pg.errors
    pg.close()
