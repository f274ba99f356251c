"""Pictures show their scenes: each object in its colour inside its box, each box inside its cell,
nothing but the background and its texture outside the boxes, and the same bytes every time."""

import numpy as np
import pytest

from mmsae.world import Scene, SceneObject, cell_box, object_boxes, png_bytes, render, sample_scenes
from mmsae.world.attributes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES


def _pixels(scene, size, antialias):
    img = render(scene, size, antialias)
    assert img.mode == "RGB" and img.size == (size, size)
    return np.asarray(img)


@pytest.mark.parametrize(("size", "antialias"), [(64, 4), (50, 1), (96, 3)])
def test_objects_are_in_their_boxes_and_boxes_in_their_cells(size, antialias):
    for scene in sample_scenes(120, seed=11):
        px_YX3 = _pixels(scene, size, antialias)
        boxes = object_boxes(scene, size, antialias)
        outside_YX = np.ones((size, size), bool)
        for obj, (x0, y0, x1, y1) in zip(scene.objects, boxes):
            cx0, cy0, cx1, cy1 = cell_box(obj.position, size)
            assert cx0 <= x0 < x1 <= cx1 and cy0 <= y0 < y1 <= cy1, (obj, (x0, y0, x1, y1))
            inside_YX3 = px_YX3[y0:y1, x0:x1]
            own = (inside_YX3 == COLOURS[obj.colour]).all(axis=-1)
            # even a small star or a thin ring covers a tenth of its box in exactly its colour
            assert own.mean() > 0.1, (obj, own.mean())
            outside_YX[y0:y1, x0:x1] = False
        base, mark = BACKGROUNDS[scene.background]
        rest = px_YX3[outside_YX]
        is_bg = (rest == base).all(axis=-1) | (rest == mark).all(axis=-1)
        assert is_bg.all(), scene


def test_the_background_and_its_texture_are_visible():
    for scene in sample_scenes(80, seed=5):
        px = _pixels(scene, 64, 4).reshape(-1, 3)
        base, mark = BACKGROUNDS[scene.background]
        n_base = (px == base).all(axis=-1).sum()
        n_mark = (px == mark).all(axis=-1).sum()
        assert n_base > 64 * 64 * 0.2
        assert (n_mark == 0) if scene.texture == "plain" else (n_mark > 64 * 64 * 0.03), scene


def test_each_shape_and_size_draws_differently():
    def mask(shape, size):
        scene = Scene(0, (SceneObject(shape, "red", size, "center", (0.0, 0.0)),), "white", "plain")
        return (_pixels(scene, 96, 4) == COLOURS["red"]).all(axis=-1)

    masks = {s: mask(s, "large") for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:  # shapes differ in at least a tenth of their pixels
                assert (masks[a] ^ masks[b]).sum() > 0.1 * max(masks[a].sum(), masks[b].sum()), (a, b)
    for s in SHAPES:
        assert mask(s, "small").sum() < 0.5 * masks[s].sum(), s


def test_cells_tile_the_picture():
    for size in (24, 64, 65, 100):
        cover = np.zeros((size, size), int)
        for p in POSITIONS:
            x0, y0, x1, y1 = cell_box(p, size)
            cover[y0:y1, x0:x1] += 1
        assert (cover == 1).all()


def test_same_seed_same_scenes_and_bytes():
    a, b = sample_scenes(40, seed=9), sample_scenes(40, seed=9)
    assert a == b and sample_scenes(15, seed=9) == a[:15]
    assert [png_bytes(render(s)) for s in a[:20]] == [png_bytes(render(s)) for s in b[:20]]
    other = sample_scenes(40, seed=10)
    assert sum(x != y for x, y in zip(a, other)) > 35
    for s in a:  # objects in distinct cells, in reading order
        cells = [list(POSITIONS).index(o.position) for o in s.objects]
        assert cells == sorted(set(cells)) and 1 <= len(cells) <= 4


@pytest.mark.parametrize(("size", "antialias"), [(23, 4), (64, 0), (64.0, 4), (True, 4)])
def test_bad_sizes_are_refused(size, antialias):
    scene = sample_scenes(1, seed=0)[0]
    with pytest.raises(ValueError):
        render(scene, size, antialias)
