"""The explorer in a real browser: headless Chromium (the Debian package) driven by Playwright.

No test tool downloads a browser: Playwright launches the system's `chromium` (or
MMSAE_CHROMIUM). In CI (`CI` set) a missing browser is a failure, elsewhere a skip with the
command that installs it.
"""

import numpy as np
import pytest

from mmsae.analysis import truth
from mmsae.data.synthetic import load_ground_truth
from tests.explorer.conftest import browser_page
from tests.explorer.conftest import wait_ready as _wait


@pytest.fixture(scope="module")
def page(server):
    with browser_page() as pg:
        yield pg


def _not_blank(png: bytes) -> float:
    from io import BytesIO

    from PIL import Image

    px = np.asarray(Image.open(BytesIO(png)).convert("L"), dtype=np.float64)
    return float(px.std())


def test_index_sort_filter(server, page):
    url, data, _ = server
    page.goto(url + "/")
    page.wait_for_selector("[data-testid=concept-row]")
    rows = page.locator("[data-testid=concept-row]")
    assert rows.count() == 50
    first = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.concept)")]
    want = np.argsort(-data.table["frequency"], kind="stable")[:50]
    assert first == [int(x) for x in want]  # default: most frequent first
    assert _not_blank(page.screenshot()) > 10
    page.click("[data-testid=th-concept]")  # sort by concept id, descending
    page.wait_for_function("() => location.hash.includes('sort=concept')")
    page.wait_for_selector("th.sorted[data-key=concept]")
    ids = [
        int(x) for x in page.locator("[data-testid=concept-row]").evaluate_all("rs => rs.map(r => r.dataset.concept)")
    ]
    assert ids == list(range(data.dict_size - 1, data.dict_size - 51, -1))
    page.click("[data-testid=th-concept]")  # again: ascending
    page.wait_for_function("() => location.hash.includes('order=asc')")
    page.wait_for_selector("th.sorted.asc[data-key=concept]")
    ids = [
        int(x) for x in page.locator("[data-testid=concept-row]").evaluate_all("rs => rs.map(r => r.dataset.concept)")
    ]
    assert ids == list(range(50))
    page.select_option("[data-testid=filter-bucket]", "text")
    page.wait_for_function("() => location.hash.includes('bucket=text')")
    page.wait_for_selector("[data-testid=concept-row] .badge.text")
    badges = page.locator("[data-testid=concept-row] .badge").all_inner_texts()
    assert badges and set(badges) == {"text"}
    name = next(n for n in data.table["name"] if n.startswith("text-"))
    page.fill("[data-testid=filter-q]", name)
    page.wait_for_function("n => location.hash.includes('q=' + n)", arg=name)
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=concept-row]')].length >= 1 && "
        "[...document.querySelectorAll('[data-testid=concept-row]')].every(r => r.innerText.includes(n))",
        arg=name,
    )
    assert not page.errors


def test_concept_page_images_texts_and_bridge(server, page):
    url, data, run = server
    gt = load_ground_truth(run / "store")
    latent_C, _ = truth.match_planted(data.model.W_dec.detach().numpy(), gt.dictionary_CD)
    i, t = next((i, t) for i, t in gt.bridges if latent_C[i] >= 0 and latent_C[t] >= 0)
    j, partner = int(latent_C[i]), int(latent_C[t])
    page.goto(url + "/")
    page.wait_for_selector("[data-testid=concept-row]")
    page.goto(f"{url}/#/concept/{j}")
    _wait(page, f"#/concept/{j}")
    assert f"#{j}" in page.inner_text("[data-testid=concept-title]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=top-images] img')].length > 0 && "
        "[...document.querySelectorAll('[data-testid=top-images] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator("[data-testid=top-images] img").count() >= 6
    assert page.locator("[data-testid=histogram] rect").count() > 0
    png = page.screenshot(full_page=True)
    assert _not_blank(png) > 10
    # follow the planted bridge to its text-side partner
    page.click(f"[data-testid=bridges] a[href='#/concept/{partner}']")
    _wait(page, f"#/concept/{partner}")
    assert f"#{partner}" in page.inner_text("[data-testid=concept-title]")
    texts = page.locator("[data-testid=top-texts] li").all_inner_texts()
    assert texts and np.mean([gt.names[t] in x.split() for x in texts]) >= 0.8
    assert not page.errors


def test_row_page_and_text_query(server, page):
    url, data, run = server
    gt = load_ground_truth(run / "store")
    latent_C, _ = truth.match_planted(data.model.W_dec.detach().numpy(), gt.dictionary_CD)
    c = next(c for c in range(len(gt.names)) if latent_C[c] >= 0 and gt.kinds[c] == "shared")
    page.goto(url + "/")
    page.wait_for_selector("[data-testid=concept-row]")
    page.fill("[data-testid=search-input]", gt.names[c])
    page.press("[data-testid=search-input]", "Enter")
    page.wait_for_selector("[data-testid=search-concepts]")
    links = page.locator("[data-testid=search-concepts] a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert f"#/concept/{int(latent_C[c])}" in links[:3]
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=search-rows] img')].length > 0")
    page.locator("[data-testid=search-rows] a").first.click()
    page.wait_for_selector("[data-testid=row-title]")
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=row-image]'); "
        "return i && i.complete && i.naturalWidth > 0 }"
    )
    assert page.locator("[data-testid=row-concepts] a").count() >= 1
    assert page.locator("[data-testid=similar] a").count() >= 1
    page.goto(url + "/#/plots")
    _wait(page, "#/plots")
    assert page.locator("[data-testid=plots] img").count() >= 3
    page.goto(url + "/#/concept/99999999")
    _wait(page, "#/concept/99999999")
    assert "does not exist" in page.inner_text("[data-testid=error]")
    assert not page.errors
