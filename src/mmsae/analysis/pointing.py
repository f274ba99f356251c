"""Where in a picture a concept fires: token codes gathered per picture, and the pointing game.

An SAE trained on a vision tower's patch tokens (`mmsae embed --layer N --tokens patches`) gives one
code per patch. A picture's activation of a concept is the max or the mean over its patches
(`per_image`); its heatmap is the concept's code on each patch, laid out on the patch grid.

The pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop") asks
whether the peak of a heatmap falls on the object it should: here, a hit when the patch where the
concept fires most overlaps the bounding box of an object holding the concept's attribute value.
Its baseline is the hit rate of a patch drawn uniformly at random: the share of a picture's patches
that overlap such a box, averaged over the pictures.

Pure functions of arrays; `benchmarks/pointing_game.py` runs them on the scene world, whose
objects' boxes are exact (`mmsae.world.object_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1 and y1 exclusive, as `mmsae.world.render.Box`."""


def per_image(codes_RF: np.ndarray, image_R: np.ndarray, n_images: int, how: str = "max") -> np.ndarray:
    """[n_images, F]: each picture's activation of each concept, the max (or mean) of its rows'
    codes; 0 for a picture with no row."""
    if how not in ("max", "mean"):
        raise ValueError(f"how must be max or mean, got {how!r}")
    codes = np.asarray(codes_RF, dtype=np.float64)
    image = np.asarray(image_R, dtype=np.int64)
    out = np.zeros((n_images, codes.shape[1]))
    if how == "max":
        np.maximum.at(out, image, codes)  # codes are non-negative: 0 is the neutral start
        return out
    np.add.at(out, image, codes)
    counts = np.bincount(image, minlength=n_images)
    return out / np.maximum(counts, 1)[:, None]


def patch_boxes(grid: tuple[int, int], size: int) -> np.ndarray:
    """[h·w, 4] pixel box of each patch of a `size`-pixel picture, in reading order."""
    h, w = grid
    ys = np.round(np.arange(h + 1) * size / h).astype(int)
    xs = np.round(np.arange(w + 1) * size / w).astype(int)
    return np.array([(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(h) for c in range(w)])


def overlaps(patches_P4: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """[P] whether each patch shares at least one pixel with any of the boxes."""
    hit = np.zeros(len(patches_P4), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        hit |= (patches_P4[:, 0] < x1) & (patches_P4[:, 2] > x0) & (patches_P4[:, 1] < y1) & (patches_P4[:, 3] > y0)
    return hit


def pointing_game(heat_IP: np.ndarray, targets: Sequence[Sequence[Box]], grid: tuple[int, int], size: int) -> dict:
    """Hits of the peak patch of each heatmap (row i: one picture's patches, reading order) on the
    boxes `targets[i]` of the objects it should point at, and the random-patch baseline."""
    patches = patch_boxes(grid, size)
    heat = np.asarray(heat_IP, dtype=np.float64)
    if heat.shape[1] != len(patches):
        raise ValueError(f"heatmaps have {heat.shape[1]} patches, the grid {grid} has {len(patches)}")
    hits, chance = [], []
    for row, boxes in zip(heat, targets):
        on = overlaps(patches, boxes)
        hits.append(bool(on[int(row.argmax())]))
        chance.append(float(on.mean()))
    return {
        "images": len(hits),
        "hit_rate": float(np.mean(hits)) if hits else float("nan"),
        "random_patch": float(np.mean(chance)) if chance else float("nan"),
    }
