"""The pointing game and per-picture gathering of token codes (`mmsae.analysis.pointing`), on
constructed heatmaps and boxes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from mmsae.analysis.pointing import overlaps, patch_boxes, per_image, pointing_game


def test_per_image_max_and_mean_against_a_loop():
    rng = np.random.default_rng(0)
    codes = np.maximum(rng.normal(size=(30, 4)), 0)
    image = rng.integers(0, 5, 30)
    image[image == 3] = 4  # picture 3 has no row
    mx, mean = per_image(codes, image, 6), per_image(codes, image, 6, "mean")
    for i in range(6):
        rows = codes[image == i]
        np.testing.assert_allclose(mx[i], rows.max(0) if len(rows) else 0)
        np.testing.assert_allclose(mean[i], rows.mean(0) if len(rows) else 0)
    with pytest.raises(ValueError, match="max or mean"):
        per_image(codes, image, 6, "sum")


def test_patch_boxes_tile_the_picture():
    boxes = patch_boxes((8, 8), 64)
    assert len(boxes) == 64 and tuple(boxes[0]) == (0, 0, 8, 8) and tuple(boxes[9]) == (8, 8, 16, 16)
    area = np.zeros((64, 64), int)
    for x0, y0, x1, y1 in patch_boxes((7, 7), 64):  # uneven: still every pixel exactly once
        area[y0:y1, x0:x1] += 1
    assert (area == 1).all()


def test_overlaps_needs_a_shared_pixel():
    patches = patch_boxes((2, 2), 10)  # (0,0,5,5) (5,0,10,5) (0,5,5,10) (5,5,10,10)
    assert overlaps(patches, [(5, 5, 6, 6)]).tolist() == [False, False, False, True]
    assert overlaps(patches, [(4, 4, 6, 6)]).tolist() == [True, True, True, True]
    assert overlaps(patches, [(5, 0, 10, 5)]).tolist() == [False, True, False, False]  # touching edges do not
    assert overlaps(patches, []).tolist() == [False] * 4


def test_pointing_game_counts_peaks_on_target_boxes():
    grid, size = (4, 4), 32  # 8-pixel patches
    heat = np.zeros((3, 16))
    heat[0, 5] = 1.0  # patch (1, 1): pixels 8-16; on the box
    heat[1, 0] = 1.0  # patch (0, 0): off the box
    heat[2, 15] = 2.0  # patch (3, 3): on the second box
    targets = [[(9, 9, 14, 14)], [(20, 20, 30, 30)], [(0, 0, 4, 4), (25, 25, 31, 31)]]
    res = pointing_game(heat, targets, grid, size)
    assert res["images"] == 3 and res["hit_rate"] == pytest.approx(2 / 3)
    assert res["random_patch"] == pytest.approx(np.mean([1 / 16, 4 / 16, 2 / 16]))
    with pytest.raises(ValueError, match="the grid"):
        pointing_game(heat[:, :9], targets, grid, size)
