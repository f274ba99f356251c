"""Synthetic pictures: one per image row, drawn from the row's planted concepts."""

import numpy as np
from PIL import Image, ImageColor

from mmsae.data import synthetic_images as pics
from mmsae.data.images import IMAGE_SUFFIXES, image_root, safe_file
from mmsae.data.synthetic import SynthConfig, load_ground_truth, write_synthetic


def test_glyphs_are_unique_up_to_648():
    glyphs = {pics.glyph_of(r) for r in range(648)}
    assert len(glyphs) == 648
    assert pics.glyph_of(648) == pics.glyph_of(0)


def test_each_image_row_gets_a_picture_of_its_concepts(tmp_path):
    cfg = SynthConfig(dim=32, n_pairs=300, n_shared=12, n_image=6, n_text=6, seed=1)
    store = write_synthetic(tmp_path / "s", cfg, images=True)
    gt = load_ground_truth(tmp_path / "s")
    root = image_root(store)
    assert root == (tmp_path / "s" / pics.IMAGE_DIR).resolve()
    meta = store.metadata(["modality", "pair_id", "source"]).to_pylist()
    imgs = [m for m in meta if m["modality"] == "image"]
    assert len(imgs) == 300 and len(list(root.rglob("*.png"))) == 300
    texts = [m for m in meta if m["modality"] == "text"]
    assert all(m["source"].startswith("synthetic://text/") for m in texts)
    ranks = pics.visible_ranks(gt.kinds)
    assert (ranks[np.array(gt.kinds) == "text"] == -1).all()
    codes = gt.codes  # rows in store order: per chunk, images then texts
    checked = 0
    for i, m in enumerate(imgs[:40]):
        path = safe_file(root, m["source"], IMAGE_SUFFIXES)
        px = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        row = codes[i]
        vis = [(a, c) for c, a in zip(row.indices, row.data) if ranks[c] >= 0]
        if not vis:
            assert (px == ImageColor.getrgb("#f4f4f0")).all()  # nothing to draw: blank
            continue
        _, strongest = max(vis)
        color = np.array(ImageColor.getrgb(pics.glyph_of(int(ranks[strongest]))[1]))
        assert (px == color).all(axis=1).sum() > 20, (i, strongest)  # its glyph is drawn, in its colour
        checked += 1
    assert checked >= 20
