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
    with pytest.raises(KeyError, match="no patch tokens"):
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
