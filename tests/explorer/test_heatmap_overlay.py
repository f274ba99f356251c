"""The explorer on a store of patch tokens: `/heatmaps/{concept}/{row}.png` draws the concept over
the row's picture (checked against a direct computation), and the concept page's toggle swaps its
top pictures for their heatmaps in a real browser."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmsae.analysis.heatmaps import overlay
from mmsae.data.store import EmbeddingStore
from mmsae.explorer.app import Explorer, create_app
from mmsae.explorer.index import load_explorer
from mmsae.metrics.crossmodal import encode_decode
from mmsae.models.io import load_sae
from mmsae.models.paired import as_paired
from mmsae.runs import find_run
from tests.explorer.conftest import browser_page, serving, wait_ready


def _top_image(ex: Explorer) -> tuple[int, int]:
    """A concept with top pictures, and its first top row."""
    for j in range(ex.data.dict_size):
        top = ex.concept(j)["top"].get("image", [])
        if top:
            return j, top[0]["row"]
    raise AssertionError("no concept fires")


def test_heatmap_endpoint_draws_the_concept_over_the_rows_picture(patch_run):
    t = patch_run
    ex = Explorer(load_explorer(find_run(t / "sae")))
    assert ex.patch_grid == [4, 4]
    j, r = _top_image(ex)
    drawn = np.asarray(Image.open(io.BytesIO(ex.heatmap_png(j, r))), dtype=int)
    store = EmbeddingStore(t / "s")
    extras = store.extras(range(len(store)))
    rows = [i for i, e in enumerate(extras) if e["image"] == extras[r]["image"]]
    codes = encode_decode(as_paired(load_sae(t / "sae")), store.get(rows), "image", "cpu")[0].numpy()[:, j]
    heat = np.zeros((4, 4))
    for i, z in zip(rows, codes):
        heat[tuple(extras[i]["cell"])] = z
    with Image.open(t / "pics" / store.labels([r])[0]) as pic:
        expected = np.asarray(overlay(pic, heat, codes.max()), dtype=int)
    assert drawn.shape == expected.shape and np.abs(drawn - expected).max() <= 1
    assert ex.heatmap_png(j, rows[-1]) == ex.heatmap_png(j, rows[0])  # any patch of a picture draws it whole


def test_heatmaps_are_refused_where_there_are_no_patches(patch_run, tiny_clip):
    import pytest

    from mmsae.cli.main import main

    t = patch_run
    assert main(["embed", str(t / "pics"), "--model", f"hf:{tiny_clip}", "--out", str(t / "pooled"),
                 "--workers", "0", "--json"]) == 0  # fmt: skip
    assert main(["train", str(t / "pooled"), "--arch", "topk", "--dict-size", "8", "--k", "2", "--epochs", "1",
                 "--out", str(t / "psae")]) == 0  # fmt: skip
    ex = Explorer(load_explorer(find_run(t / "psae")))
    assert ex.patch_grid is None
    with pytest.raises(KeyError, match="holds pooled embeddings: heatmaps need patch tokens"):
        ex.heatmap_png(0, 0)


def test_concept_page_toggles_heatmaps_over_its_top_pictures(patch_run):
    data = load_explorer(find_run(patch_run / "sae"))
    j, _ = _top_image(Explorer(data))
    with serving(create_app(data)) as url, browser_page() as pg:
        pg.goto(f"{url}/#/concept/{j}")
        wait_ready(pg, f"#/concept/{j}")
        imgs = pg.locator('[data-testid="top-images"] img')
        n = imgs.count()
        assert n > 0 and all("/images/" in imgs.nth(i).get_attribute("src") for i in range(n))
        pg.get_by_test_id("heatmap-toggle").check()
        pg.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="top-images"] img')].every(
                 (im) => im.src.includes('/heatmaps/') && im.complete && im.naturalWidth > 0)""",
            timeout=20000,
        )
        assert pg.evaluate("document.querySelector('[data-testid=\"top-images\"] img').naturalWidth") == 40
        pg.get_by_test_id("heatmap-toggle").uncheck()
        assert all("/images/" in imgs.nth(i).get_attribute("src") for i in range(n))
        assert not pg.errors


def test_a_patch_lists_its_own_concepts(patch_run, tiny_clip):
    """`/api/rows/{r}/patch?y=&x=` answers with the row of that patch of r's picture and the same
    concepts as that row's own page; the row page says where a patch row sits."""
    import pytest

    ex = Explorer(load_explorer(find_run(patch_run / "sae")))
    _, r = _top_image(ex)
    store = EmbeddingStore(patch_run / "s")
    extras = store.extras(range(len(store)))
    assert ex.row(r, n_similar=0)["patches"] == {"grid": [4, 4], "cell": extras[r]["cell"], "crop": True}
    for y, x in [(0, 0), (1, 2), (3, 3)]:
        got = ex.patch(r, y, x)
        p = got["row"]
        assert extras[p]["image"] == extras[r]["image"] and extras[p]["cell"] == [y, x] == got["cell"]
        z = encode_decode(as_paired(load_sae(patch_run / "sae")), store.get([p]), "image", "cpu")[0].numpy()[0]
        want = [j for j in np.argsort(-z, kind="stable") if z[j] > 0]
        assert [c["concept"] for c in got["concepts"]] == want
        np.testing.assert_allclose([c["activation"] for c in got["concepts"]], z[want], rtol=1e-5)
    with pytest.raises(ValueError, match="outside the 4×4 patch grid"):
        ex.patch(r, 4, 0)
    with pytest.raises(KeyError, match="does not exist"):
        ex.patch(len(store), 0, 0)


def test_row_page_draws_the_chosen_concept_and_lists_a_clicked_patchs_concepts(patch_run):
    data = load_explorer(find_run(patch_run / "sae"))
    ex = Explorer(data)
    j, r = _top_image(ex)
    y, x = 1, 2
    want = ex.patch(r, y, x)
    loaded = """(part) => { const im = document.querySelector('[data-testid="row-image"]');
                 return im.src.includes(part) && im.complete && im.naturalWidth > 0; }"""
    with serving(create_app(data)) as url, browser_page() as pg:
        pg.goto(f"{url}/#/concept/{j}")  # a top picture opens its row page with this concept drawn
        wait_ready(pg, f"#/concept/{j}")
        pg.locator('[data-testid="top-images"] .card').first.click()
        wait_ready(pg, f"#/row/{r}?concept={j}")
        pg.wait_for_function(loaded, arg=f"/heatmaps/{j}/{r}.png", timeout=20000)
        assert f"#{j}" in pg.get_by_test_id("heat-caption").inner_text()
        box = pg.get_by_test_id("row-image").bounding_box()
        pg.mouse.click(box["x"] + box["width"] * (x + 0.5) / 4, box["y"] + box["height"] * (y + 0.5) / 4)
        listed = pg.get_by_test_id("patch-concept-list")
        listed.wait_for(timeout=20000)
        assert f"Patch ({y}, {x})" in pg.get_by_test_id("patch-concepts").inner_text()
        links = listed.get_by_test_id("concept-link")
        assert [int(links.nth(i).inner_text().split()[0][1:]) for i in range(links.count())] == [
            c["concept"] for c in want["concepts"]
        ]
        other = want["concepts"][-1]["concept"]
        listed.get_by_test_id("heat-button").last.click()  # that patch's weakest concept, drawn over the picture
        pg.wait_for_function(loaded, arg=f"/heatmaps/{other}/{r}.png", timeout=20000)
        pg.get_by_test_id("heat-clear").click()
        pg.wait_for_function(loaded, arg="/images/", timeout=20000)
        assert not pg.errors


def test_siglip2_pictures_keep_their_own_grid_in_the_explorer(siglip2_patch_run):
    """Each picture its own grid: the summary names none but says there are patches; a wide
    picture's heatmap covers all of it (SigLIP2 does not crop) and its patches are clicked on its grid."""
    import pytest

    t = siglip2_patch_run
    data = load_explorer(find_run(t / "sae"))
    ex = Explorer(data)
    assert ex.patch_grid is None and ex.patch_tokens is not None
    store = EmbeddingStore(t / "s")
    extras = store.extras(range(len(store)))
    sources = store.labels(range(len(store)))
    r = next(i for i, s in enumerate(sources) if s.endswith("p00.png"))  # 80×20: a wide grid
    gh, gw = extras[r]["grid"]
    assert gw > gh
    assert ex.row(r, n_similar=0)["patches"] == {"grid": [gh, gw], "cell": extras[r]["cell"], "crop": False}
    drawn = Image.open(io.BytesIO(ex.heatmap_png(0, r)))
    assert drawn.size == (80, 20)
    got = ex.patch(r, gh - 1, gw - 1)
    assert extras[got["row"]]["cell"] == [gh - 1, gw - 1] and extras[got["row"]]["image"] == extras[r]["image"]
    with pytest.raises(ValueError, match=f"outside the {gh}×{gw} patch grid"):
        ex.patch(r, gh, 0)


def test_a_click_on_a_wide_siglip2_picture_finds_its_patch(siglip2_patch_run):
    """SigLIP2 resizes the whole picture (no crop) onto its own grid: a click near the right end of
    an 80×20 picture lists the concepts of its last column's patch."""
    t = siglip2_patch_run
    data = load_explorer(find_run(t / "sae"))
    store = EmbeddingStore(t / "s")
    extras = store.extras(range(len(store)))
    r = next(i for i, s in enumerate(store.labels(range(len(store)))) if s.endswith("p00.png"))
    gh, gw = extras[r]["grid"]
    with serving(create_app(data)) as url, browser_page() as pg:
        pg.goto(f"{url}/#/row/{r}")
        wait_ready(pg, f"#/row/{r}")
        pg.wait_for_function("() => document.querySelector('[data-testid=\"row-image\"]').naturalWidth > 0")
        box = pg.get_by_test_id("row-image").bounding_box()
        assert box["width"] > 3 * box["height"]  # drawn whole, not cropped to a square
        pg.mouse.click(box["x"] + box["width"] * (gw - 0.5) / gw, box["y"] + box["height"] * 0.5 / gh)
        pg.get_by_test_id("patch-concepts").get_by_text(f"Patch (0, {gw - 1})").wait_for(timeout=20000)
        assert not pg.errors
