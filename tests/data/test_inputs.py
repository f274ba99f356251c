"""Input layouts of `mmsae embed`: every one becomes the same ordered images and captions, with
the pair ids the user's data implies."""

from __future__ import annotations

import json

import pytest

from mmsae.data.inputs import read_inputs
from mmsae.data.store import NO_PAIR
from mmsae.errors import MmsaeError
from tests.backends.conftest import write_table


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_is_recursive_and_sorted(tmp_path):
    for name in ("b/2.JPG", "a/1.png", "a/deep/3.webp", "notes.txt", "c/4.tiff"):
        _touch(tmp_path / name)
    inp = read_inputs(tmp_path)
    assert inp.layout == "folder" and not inp.texts
    assert [i.source for i in inp.images] == ["a/1.png", "a/deep/3.webp", "b/2.JPG", "c/4.tiff"]
    assert [i.pair_id for i in inp.images] == [0, 1, 2, 3]


def test_csv_many_captions_per_image_keep_one_pair_id(tmp_path):
    _touch(tmp_path / "img" / "x.jpg")
    rows = [
        {"image_path": "img/x.jpg", "caption": "one"},
        {"image_path": "img/y.jpg", "caption": "two"},
        {"image_path": "img/x.jpg", "caption": "three || four"},
        {"image_path": "", "caption": "alone"},
        {"image_path": "img/x.jpg", "caption": "one"},
    ]
    inp = read_inputs(write_table(tmp_path / "t.csv", rows))
    assert [i.source for i in inp.images] == ["img/x.jpg", "img/y.jpg"]
    assert [(t.text, t.pair_id) for t in inp.texts] == [
        ("one", 0),
        ("two", 1),
        ("three", 0),
        ("four", 0),
        ("alone", NO_PAIR),
    ]
    assert inp.duplicate_texts == 1


def test_jsonl_caption_lists_and_image_root(tmp_path):
    root = tmp_path / "photos"
    _touch(root / "p.png")
    path = tmp_path / "meta" / "t.jsonl"
    path.parent.mkdir()
    write_table(path, [{"file_name": "p.png", "text": ["a", "b"]}, {"file_name": "q.png", "text": "c"}])
    inp = read_inputs(path, image_root=root)
    assert inp.image_root == str(root.resolve()) and [i.source for i in inp.images] == ["p.png", "q.png"]
    assert [(t.text, t.pair_id) for t in inp.texts] == [("a", 0), ("b", 0), ("c", 1)]


def test_coco_keeps_coco_image_ids(shared_data):
    coco = shared_data / "coco-mini"
    inp = read_inputs(coco / "captions_val2017.json", image_root=coco / "images")
    raw = json.loads((coco / "captions_val2017.json").read_text())
    assert inp.layout == "coco" and len(inp.images) == len(raw["images"])
    assert {i.pair_id for i in inp.images} == {im["id"] for im in raw["images"]}
    by_id = {}
    for a in raw["annotations"]:
        by_id.setdefault(a["image_id"], set()).add(a["caption"].strip())
    assert len(inp.texts) == sum(len(v) for v in by_id.values())
    assert all(t.text in by_id[t.pair_id] for t in inp.texts)


def test_text_file(tmp_path):
    p = tmp_path / "caps.txt"
    p.write_text("a dog\n\n  a cat  \na dog\n")
    inp = read_inputs(p)
    assert [t.text for t in inp.texts] == ["a dog", "a cat"] and inp.duplicate_texts == 1
    assert {t.pair_id for t in inp.texts} == {NO_PAIR} and not inp.images


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("x.parquet", "", "cannot tell the input layout"),
        ("x.json", "{not json", "not valid JSON"),
        ("x.json", '{"a": 1}', "not a COCO captions file"),
        ("x.json", '{"images": [{"id": 1}], "annotations": []}', "needs 'id' and 'file_name'"),
        ("x.csv", "foo,bar\n1,2\n", "no image column"),
        ("x.csv", "image_path,caption\n", "no rows"),
        ("x.jsonl", '{"caption": "a"}\n[1]\n', "a JSON object per line"),
        ("x.txt", "\n\n", "no captions"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(MmsaeError, match=match):
        read_inputs(p)


def test_missing_paths(tmp_path):
    with pytest.raises(MmsaeError, match="no such file or folder"):
        read_inputs(tmp_path / "nope")
    with pytest.raises(MmsaeError, match="no image files"):
        read_inputs(tmp_path)
    p = tmp_path / "c.csv"
    p.write_text("image_path,caption\na.png,x\n")
    with pytest.raises(MmsaeError, match="--image-root"):
        read_inputs(p, image_root=tmp_path / "missing")
