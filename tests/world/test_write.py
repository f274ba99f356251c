"""`write_world` writes what it says: a picture per scene, a caption table, and the ground truth."""

import csv
import json

import pytest
from PIL import Image

from mmsae.data.inputs import read_inputs
from mmsae.errors import MmsaeError
from mmsae.world import METADATA_COLUMNS, build_world, png_bytes, read_world, render, write_world
from mmsae.world.truth import WorldConfig
from tests.helpers import snapshot


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    world = write_world(out, 200, seed=2, image_size=48, captions_per_scene=3, progress=False)
    return out, world


def test_it_writes_every_picture_caption_and_the_truth(written):
    out, world = written
    assert sorted(p.name for p in out.iterdir()) == ["images", "metadata.csv", "world.json"]
    pngs = sorted(p.name for p in (out / "images").iterdir())
    assert pngs == [f"{i:06d}.png" for i in range(200)]  # and no temporary file left
    assert world == build_world(WorldConfig(200, 2, 48, 3))
    for s in world.scenes[::17]:
        path = out / "images" / f"{s.id:06d}.png"
        assert path.read_bytes() == png_bytes(render(s, 48))
        with Image.open(path) as img:
            assert img.size == (48, 48) and img.mode == "RGB"

    with open(out / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(METADATA_COLUMNS) and len(rows) == 600
    for j, (row, cap) in enumerate(zip(rows, world.captions)):
        assert row["image_path"] == f"images/{cap.scene:06d}.png" and (out / row["image_path"]).is_file()
        assert row["caption"] == cap.text and int(row["scene_id"]) == cap.scene == j // 3
        assert int(row["caption_id"]) == j and row["style"] == cap.style and row["mood"] == (cap.mood or "")
        assert row["mentions"].split(";") == list(cap.mentions)

    assert read_world(out) == world
    d = json.loads((out / "world.json").read_text())
    assert d["config"] == {"n_scenes": 200, "seed": 2, "image_size": 48, "captions_per_scene": 3, "antialias": 4}
    assert len(d["scenes"]) == 200 and all(len(s["captions"]) == 3 for s in d["scenes"])
    assert [tuple(o["box"]) for o in d["scenes"][5]["objects"]] == list(world.boxes[5])


def test_mmsae_embed_reads_the_caption_table(written):
    out, world = written
    inputs = read_inputs(out / "metadata.csv")
    assert inputs.layout == "table" and len(inputs.images) == 200
    assert [i.source for i in inputs.images] == [f"images/{i:06d}.png" for i in range(200)]
    # a scene's captions share its image's pair id (two captions of a scene may be equal: one row)
    pair_of = {i.pair_id: int(i.source[7:13]) for i in inputs.images}
    texts = {(pair_of[t.pair_id], t.text) for t in inputs.texts}
    assert texts == {(c.scene, c.text) for c in world.captions}


def test_a_folder_with_a_world_is_not_overwritten_by_mistake(written, tmp_path):
    out, _ = written
    before = snapshot(out)
    with pytest.raises(MmsaeError, match="already holds a world.*overwrite=True") as exc:
        write_world(out, 10, seed=0, progress=False)
    assert "\n" not in str(exc.value) and snapshot(out) == before

    copy = tmp_path / "w"
    write_world(copy, 30, seed=1, image_size=32, progress=False)
    smaller = write_world(copy, 12, seed=5, image_size=32, overwrite=True, progress=False)
    assert sorted(p.name for p in (copy / "images").iterdir()) == [f"{i:06d}.png" for i in range(12)]
    assert read_world(copy) == smaller and smaller.config.seed == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_scenes": 0},
        {"n_scenes": 2.5},
        {"seed": -1},
        {"image_size": 16},
        {"captions_per_scene": 0},
        {"antialias": True},
    ],
)
def test_bad_arguments_are_one_line(tmp_path, kwargs):
    args = {"n_scenes": 5, "seed": 0} | kwargs
    with pytest.raises(MmsaeError) as exc:
        write_world(tmp_path / "w", progress=False, **args)
    assert "\n" not in str(exc.value) and not (tmp_path / "w").exists()


def test_a_missing_or_damaged_world_is_one_line(written, tmp_path):
    with pytest.raises(MmsaeError, match="not a world folder"):
        read_world(tmp_path)
    d = json.loads((written[0] / "world.json").read_text())
    del d["scenes"][3]["objects"][0]["shape"]
    (tmp_path / "world.json").write_text(json.dumps(d))
    with pytest.raises(MmsaeError, match="world.json is damaged"):
        read_world(tmp_path)
    (tmp_path / "world.json").write_text(json.dumps(d)[:-40])
    with pytest.raises(MmsaeError, match="world.json is damaged"):
        read_world(tmp_path)
