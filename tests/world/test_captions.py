"""Captions agree with their scenes: what they say is true, what is image-only is never said, and
every template, style and paraphrase is used."""

import re
from collections import Counter

from mmsae.world import DISTRACTORS, TEMPLATES, attribute_values, caption_scenes, mentions_in, sample_scenes, vocabulary
from mmsae.world.attributes import COLOUR_WORDS, POSITIONS, SHAPES, STYLES, TEXTURES


def _words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


def test_every_mention_is_true_of_the_scene(world_2k):
    for cap in world_2k.captions:
        scene = world_2k.scenes[cap.scene]
        for key in cap.mentions:
            attr, value = key.split("=")
            if attr == "style":
                assert value == cap.style, cap
            elif attr == "mood":
                assert value == cap.mood, cap
            else:
                assert key in scene.values(), (cap.text, key, scene)


def test_colour_and_shape_words_belong_to_the_scene(world_2k):
    # read with plain word sets, without the package's phrase reader
    colour_of = {w: c for c, ws in COLOUR_WORDS.items() for w in ws}
    shape_of = {w: s for s, ws in SHAPES.items() for w in ws if " " not in w}
    for cap in world_2k.captions:
        scene = world_2k.scenes[cap.scene]
        words = _words(cap.text)
        assert {colour_of[w] for w in words & colour_of.keys()} <= {o.colour for o in scene.objects}, cap.text
        assert {shape_of[w] for w in words & shape_of.keys()} <= {o.shape for o in scene.objects}, cap.text


def test_recorded_mentions_are_what_the_text_says(world_2k):
    for cap in world_2k.captions:
        said = mentions_in(cap.text)
        assert tuple(sorted(set(said))) == cap.mentions, cap
        # every object's shape is named, once per object
        shapes = Counter(k for k in said if k.startswith("shape="))
        assert shapes == Counter(f"shape={o.shape}" for o in world_2k.scenes[cap.scene].objects), cap.text
        assert f"style={cap.style}" in said
        assert (f"mood={cap.mood}" in said) if cap.mood else not any(k.startswith("mood=") for k in said)


def test_image_only_attributes_are_never_said(world_2k):
    texture_words = set(TEXTURES) | {"striped", "stripe", "dotted", "dot", "checked", "checkered", "check", "texture"}
    for cap in world_2k.captions:
        assert not _words(cap.text) & texture_words, cap.text
        assert not any(k.startswith("texture=") for k in cap.mentions)


def test_each_attribute_is_said_as_often_as_intended(world_2k):
    caps = world_2k.captions
    n_obj = {c.scene: world_2k.scenes[c.scene].count for c in caps}

    def share(attr):  # fraction of captions mentioning some value of the attribute
        return sum(any(k.startswith(attr + "=") for k in c.mentions) for c in caps) / len(caps)

    assert share("shape") == 1.0 and share("style") == 1.0
    for attr in ("colour", "size", "position", "count", "background", "mood"):
        assert 0.05 < share(attr) < 0.99, attr  # only sometimes
    # size is the rarest object attribute: said for about a third of the objects
    sized = sum(sum(k.startswith("size=") for k in mentions_in(c.text)) for c in caps)
    assert 0.2 < sized / sum(n_obj[c.scene] for c in caps) < 0.5


def test_every_template_style_and_paraphrase_occurs(world_2k):
    caps = world_2k.captions
    assert set(Counter(c.template for c in caps)) == set(TEMPLATES) and len(TEMPLATES) >= 5
    assert {c.style for c in caps} == set(STYLES)
    assert None in {c.mood for c in caps} and len({c.mood for c in caps}) > 2
    # longest phrases first, each taken out once read, so `top` is not found inside `top left`
    phrases = sorted((p for v in attribute_values() for p in v.phrases), key=len, reverse=True)
    said_phrases = set()
    for c in caps:
        text = " " + re.sub(r"[^a-z]+", " ", c.text.lower()) + " "
        for p in phrases:
            if f" {p} " in text:
                said_phrases.add(p)
                text = text.replace(f" {p} ", " | ")
    for v in attribute_values():
        if v.kind != "image":
            assert set(v.phrases) <= said_phrases, v.key
        assert any(re.search(r"\btop-left: ", c.text) for c in caps)  # the tag form


def test_distractors_are_never_said_and_name_no_value(world_2k):
    assert len(DISTRACTORS) >= 50 and len(set(DISTRACTORS)) == len(DISTRACTORS)
    phrases = {p for v in attribute_values() for p in (*v.phrases, v.word)}
    assert not set(DISTRACTORS) & phrases
    texts = [" " + re.sub(r"[^a-z-]+", " ", c.text.lower()) + " " for c in world_2k.captions]
    for d in DISTRACTORS:
        assert not any(f" {d} " in t for t in texts), d
    vocab = vocabulary()
    assert vocab[: len(attribute_values())] == [v.word for v in attribute_values()]
    assert vocab[len(attribute_values()) :] == list(DISTRACTORS)
    assert {"red", "triangle", "top left"} <= set(vocabulary(distractors=False))


def test_captions_are_deterministic_per_scene():
    scenes = sample_scenes(60, seed=3)
    a = caption_scenes(scenes, seed=3, per_scene=3)
    assert a == caption_scenes(scenes, seed=3, per_scene=3)
    # a scene's captions do not depend on how many scenes are captioned with it
    assert caption_scenes(scenes[:10], seed=3, per_scene=3) == a[:30]
    other = caption_scenes(scenes, seed=4, per_scene=3)
    assert sum(x.text != y.text for x, y in zip(a, other)) > 150
    assert all(pos in POSITIONS for s in scenes for pos in (o.position for o in s.objects))
