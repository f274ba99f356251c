"""The world's attribute tables, and reading a text back into the keys it mentions."""

import pytest

from mmsae.errors import MmsaeError
from mmsae.world import attribute_values, mentions_in, split_key
from mmsae.world.attributes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, TEXTURES


def test_the_world_has_the_promised_variety():
    assert len(SHAPES) >= 8 and {"circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon"} <= set(
        SHAPES
    )
    assert len(COLOURS) >= 8 and len(set(COLOURS.values())) == len(COLOURS)
    assert len(POSITIONS) == 9 and len(BACKGROUNDS) >= 4 and len(TEXTURES) >= 2
    # an object is never drawn in a background's colour or its texture's, so its pixels can be found
    assert not set(COLOURS.values()) & {c for pair in BACKGROUNDS.values() for c in pair}


def test_every_value_has_one_key_one_word_and_a_kind():
    values = attribute_values()
    assert len({v.key for v in values}) == len(values)
    assert len({v.word for v in values}) == len(values)
    kinds = {v.attribute: v.kind for v in values}
    assert kinds["texture"] == "image" and kinds["style"] == kinds["mood"] == "text"
    assert all(kinds[a] == "shared" for a in ("shape", "colour", "size", "position", "count", "background"))
    for v in values:
        assert v.key == f"{v.attribute}={v.value}"
        # image-only values have no phrase a caption could use; the others start with their word
        assert (v.phrases == ()) if v.kind == "image" else (v.phrases[0] == v.word)


def test_mentions_in_reads_the_longest_phrase():
    assert mentions_in("a red triangle in the top left") == ["colour=red", "shape=triangle", "position=top left"]
    assert mentions_in("Top-Left: RED disc") == ["position=top left", "colour=red", "shape=circle"]
    assert mentions_in("at the top, on the left, in the middle") == [
        "position=top middle",
        "position=middle left",
        "position=center",
    ]
    assert mentions_in("a big plus sign on a gray backdrop") == ["size=large", "shape=cross", "background=grey"]
    # a word inside another word is not a mention; texture words name nothing a caption says
    assert mentions_in("starred redness with stripes and dots") == []


@pytest.mark.parametrize("key", ["colour", "color=red", "colour=teal", "=red", "texture=velvet"])
def test_a_bad_key_is_one_line(key):
    with pytest.raises(MmsaeError) as exc:
        split_key(key)
    assert "\n" not in str(exc.value) and repr(key) in str(exc.value)


def test_split_key_accepts_every_value():
    for v in attribute_values():
        assert split_key(v.key) == (v.attribute, v.value)
