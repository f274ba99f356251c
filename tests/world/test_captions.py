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


def test_vary_scene_changes_one_attribute_of_one_object():
    from mmsae.world.scenes import vary_scene

    changed = Counter()
    for s in sample_scenes(500, 4):
        v = vary_scene(s, 4, 10_000 + s.id)
        assert v.id == 10_000 + s.id and (v.background, v.texture) == (s.background, s.texture)
        diffs = [
            (a, x, y)
            for x, y in zip(s.objects, v.objects)
            for a in ("shape", "colour", "size", "position", "jitter")
            if getattr(x, a) != getattr(y, a)
        ]
        assert len(diffs) == 1, (s, v)
        changed[diffs[0][0]] += 1
        assert vary_scene(s, 4, 10_000 + s.id) == v  # deterministic
    assert changed["shape"] > changed["colour"] > 0 and changed["size"] > 0 and changed["position"] == 0


def test_vary_scene_absent_values_and_positions_keep_reading_order():
    from mmsae.world.attributes import POSITIONS as CELLS
    from mmsae.world.scenes import vary_scene

    order = list(CELLS)
    for s in sample_scenes(400, 6):
        v = vary_scene(s, 6, s.id, (("colour", 1.0), ("shape", 1.0), ("position", 1.0)), absent=True)
        new = v.values() - s.values()
        assert new, (s, v)  # the new value is nowhere in the original scene
        assert all(k.split("=")[0] in ("colour", "shape", "position") for k in new)
        positions = [order.index(o.position) for o in v.objects]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_swapped_captions_labels_are_exact():
    from mmsae.world.captions import swapped_captions

    scenes = sample_scenes(1000, 8)
    labelled = swapped_captions(scenes, 8)
    assert len(labelled) == 1000
    visual = {v.key for v in attribute_values() if v.kind == "shared"}
    for s, lc in zip(scenes, labelled):
        wrong = {k for k in mentions_in(lc.caption.text) if k in visual} - s.values()
        assert lc.hallucinated == bool(wrong), (lc, s)
        assert lc.swapped or not lc.hallucinated  # a caption of the scene itself is always true
        assert (lc.changed in ("shape", "colour", "position")) if lc.swapped else lc.changed is None
        if lc.hallucinated:  # what it says wrongly is of the changed attribute
            assert {k.split("=")[0] for k in wrong} == {lc.changed}
    swapped = sum(lc.swapped for lc in labelled)
    assert 400 < swapped < 600
    # most swaps are said (shape always is; colour and position sometimes)
    assert sum(lc.hallucinated for lc in labelled) > 0.6 * swapped
