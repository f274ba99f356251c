"""The explorer on the scene-world demo, in a real browser: concepts named by the world's words,
their top scene pictures and captions (system Chromium through Playwright, as test_browser.py)."""

import json
from pathlib import Path

import pytest

from mmsae.data.store import EmbeddingStore
from mmsae.explorer.app import create_app
from mmsae.explorer.index import load_explorer
from mmsae.runs import find_run
from mmsae.world import read_world, world_words
from tests.explorer.conftest import browser_page, serving
from tests.explorer.conftest import wait_ready as _wait


@pytest.fixture(scope="module")
def world_server(world_demo_run):
    data = load_explorer(find_run(world_demo_run))
    with serving(create_app(data)) as url:
        yield url, data, world_demo_run


@pytest.fixture(scope="module")
def page(world_server):
    with browser_page() as pg:
        yield pg


def test_concepts_have_world_words_scene_pictures_and_captions(world_server, page):
    url, data, run = world_server
    page.goto(url + "/")
    page.wait_for_selector("[data-testid=concept-row]")
    ids = [
        int(x) for x in page.locator("[data-testid=concept-row]").evaluate_all("rs => rs.map(r => r.dataset.concept)")
    ]
    texts = page.locator("[data-testid=concept-row]").all_inner_texts()
    names = [data.table["name"][j] for j in ids]
    assert all((n or "") in t for n, t in zip(names, texts))  # each row shows its concept's name
    assert sum(n in world_words() for n in names) >= len(names) // 2  # mostly the world's words, not distractors
    # the concept that detects a colour best on pictures, by the demo's own probing
    s = json.loads((run / "demo_summary.json").read_text())
    image_values = s["world_scores"]["probing"]["image"]["values"]
    best = max((v for v in image_values if v["key"].startswith("colour=")), key=lambda v: v["sae"])
    j, colour = best["latent"], best["key"].split("=")[1]
    page.goto(f"{url}/#/concept/{j}")
    _wait(page, f"#/concept/{j}")
    assert f"#{j}" in page.inner_text("[data-testid=concept-title]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=top-images] img')].length >= 6 && "
        "[...document.querySelectorAll('[data-testid=top-images] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    sizes = page.locator("[data-testid=top-images] img").evaluate_all("is => is.map(i => i.naturalWidth)")
    assert set(sizes) == {64}  # the world's own pictures
    texts = page.locator("[data-testid=top-texts] li").all_inner_texts()
    assert texts and all(" " in t for t in texts)  # captions, in words
    # the top pictures' scenes, read from the world's ground truth, show the colour
    rows = page.locator("[data-testid=top-images] a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    store = EmbeddingStore(run / "store")
    sources = store.metadata().column("source").to_pylist()
    world = read_world(run / "world")
    scenes = [world.scenes[int(Path(sources[int(h.split("/")[-1])]).stem)] for h in rows]
    shows = [f"colour={colour}" in sc.values() for sc in scenes]
    assert best["sae"] >= 0.9 and sum(shows) >= 0.8 * len(shows), (colour, best, shows)
    assert not page.errors
