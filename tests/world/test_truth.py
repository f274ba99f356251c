"""The ground-truth masks equal a direct reading of the scenes and captions."""

import numpy as np
import pytest

from mmsae.errors import MmsaeError
from mmsae.world import World, attribute_values, mentions_in


def _shows(scene, attr, value):
    """Does the scene show the value? Read from the scene's fields, not from `Scene.values`."""
    if attr in ("shape", "colour", "size", "position"):
        return any(getattr(o, attr) == value for o in scene.objects)
    if attr == "count":
        return len(scene.objects) == int(value)
    if attr == "background":
        return scene.background == value
    if attr == "texture":
        return scene.texture == value
    return False  # style and mood: nothing in the picture


def test_masks_equal_a_recomputation(world_2k):
    n_scenes, n_caps = len(world_2k.scenes), len(world_2k.captions)
    said = [set(mentions_in(c.text)) for c in world_2k.captions]
    for v in attribute_values():
        image_N, text_N = world_2k.masks(v.key)
        assert image_N.shape == (n_scenes,) and text_N.shape == (n_caps,) and image_N.dtype == bool
        expect_img = np.array([_shows(s, v.attribute, v.value) for s in world_2k.scenes])
        expect_txt = np.array([v.key in s for s in said])
        np.testing.assert_array_equal(image_N, expect_img, err_msg=v.key)
        np.testing.assert_array_equal(text_N, expect_txt, err_msg=v.key)
        if v.kind == "image":
            assert image_N.any() and not text_N.any(), v.key
        elif v.kind == "text":
            assert text_N.any() and not image_N.any(), v.key
        else:
            assert image_N.any() and text_N.any(), v.key
            # a caption mentions a visual value only when its scene shows it
            assert not (text_N & ~image_N[world_2k.scene_of_caption_N]).any(), v.key


def test_captions_follow_their_scenes(world_2k):
    per = world_2k.config.captions_per_scene
    np.testing.assert_array_equal(world_2k.scene_of_caption_N, np.repeat(np.arange(len(world_2k.scenes)), per))


def test_json_round_trip(world_2k):
    d = world_2k.to_json()
    back = World.from_json(d)
    assert back.scenes == world_2k.scenes and back.captions == world_2k.captions and back.boxes == world_2k.boxes
    assert back.config == world_2k.config
    assert d["attributes"][0]["key"] == attribute_values()[0].key
    assert d["scenes"][3]["objects"][0]["box"] == list(world_2k.boxes[3][0])


def test_a_bad_key_is_refused_in_one_line(world_2k):
    with pytest.raises(MmsaeError, match="colour has no value 'teal'"):
        world_2k.masks("colour=teal")
