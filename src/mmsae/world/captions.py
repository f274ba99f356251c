"""Captions: English sentences generated from a scene, with the keys each one mentions.

Every caption names every object's shape; the other attributes are said only sometimes, so the
text side sees each attribute with its own frequency (a concept a text encoder can learn only as
well as captions teach it):

- colour: always in the `short` template, otherwise with probability P_COLOUR per object;
- size: with probability P_SIZE per object (never in `short`);
- position: always in `tags`, `there_is` and `where_first`, with P_POSITION per object in `list`
  and `background`, never in `count` and `short`;
- object count: only in `count`;
- background: always in `background`, with P_BACKGROUND in `list`, `count` and `there_is`;
- texture: never (image-only);
- style: every caption has one (text-only); mood: with probability P_MOOD (text-only).

The style and mood are drawn independently of the scene: nothing in the picture predicts them.
A caption records what it mentions as it is built, and `attributes.mentions_in` reads the same
keys back from its text (the tests hold the two equal).

Scene i's captions come from their own generator, seeded by `(CAPTION_STREAM, seed, i)`: the
same whatever the number of scenes, and independent of the scene's own draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmsae.world.attributes import (
    BACKGROUND_WORDS,
    COLOUR_WORDS,
    COUNTS,
    MOODS,
    POSITIONS,
    SHAPES,
    SIZES,
    STYLES,
    attribute_values,
)
from mmsae.world.scenes import Scene, SceneObject, vary_scene

CAPTION_STREAM = 1
TEMPLATES = ("list", "tags", "count", "there_is", "where_first", "background", "short")
"""The caption templates, drawn uniformly. Examples (style `photo`):

- `list`: "a photo of a small red triangle in the top left and a blue circle"
- `tags`: "top-left: red triangle, center: small blue disc (photo)"
- `count`: "a photograph showing two shapes: a red triangle and a big blue circle"
- `there_is`: "in this photo, there is a red triangle in the upper left and a blue circle at the bottom"
- `where_first`: "in the top left, a red triangle; at the bottom, a blue circle. a photo"
- `background`: "a photo of a red triangle and a blue circle on a black background"
- `short`: "photo: red triangle, blue circle"
"""
P_COLOUR = 0.85
P_SIZE = 0.35
P_POSITION = 0.5
P_BACKGROUND = 0.3
P_MOOD = 0.4
P_SHUFFLE = 0.5
"""Chance that a caption lists its objects in random order rather than reading order."""


@dataclass(frozen=True)
class Caption:
    """One caption of one scene."""

    scene: int
    """The scene it describes."""
    text: str
    template: str
    """One of TEMPLATES."""
    style: str
    """A key of STYLES (text-only)."""
    mood: str | None
    """A key of MOODS, or None when the caption has no mood word (text-only)."""
    mentions: tuple[str, ...]
    """The keys it mentions, sorted, each once (`colour=red`, `style=photo`, ...)."""

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "template": self.template,
            "style": self.style,
            "mood": self.mood,
            "mentions": list(self.mentions),
        }

    @classmethod
    def from_json(cls, scene: int, d: dict) -> Caption:
        mood = d.get("mood")
        return cls(
            int(scene),
            str(d["text"]),
            str(d["template"]),
            str(d["style"]),
            None if mood is None else str(mood),
            tuple(str(m) for m in d["mentions"]),
        )


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class _Builder:
    """Draws one caption's words and records the keys they mention."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.said: set[str] = set()

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def say(self, key: str, phrases: tuple[str, ...]) -> str:
        self.said.add(key)
        return self.pick(phrases)

    def thing(self, o: SceneObject, colour: bool, size: bool) -> str:
        """`small red triangle`, `blue disc`, `triangle`: without article."""
        words = []
        if size:
            words.append(self.say(f"size={o.size}", SIZES[o.size]))
        if colour:
            words.append(self.say(f"colour={o.colour}", COLOUR_WORDS[o.colour]))
        words.append(self.say(f"shape={o.shape}", SHAPES[o.shape]))
        return " ".join(words)

    def where(self, o: SceneObject) -> str:
        """`in the top left`, `at the bottom`, `on the left`, `in the middle`."""
        p = self.say(f"position={o.position}", POSITIONS[o.position])
        if p in ("top", "bottom"):
            return f"at the {p}"
        if p in ("left", "right"):
            return f"on the {p}"
        return f"{self.pick(('in', 'at'))} the {p}" if " " in p else f"in the {p}"

    def tag(self, o: SceneObject) -> str:
        """`top-left`, `center`, `bottom`: a position as a label."""
        return self.say(f"position={o.position}", POSITIONS[o.position]).replace(" ", "-")

    def background(self, scene: Scene) -> str:
        phrase = self.say(f"background={scene.background}", BACKGROUND_WORDS[scene.background])
        return f"{self.pick(('on', 'against'))} {_an(phrase)}"


def caption_scene(scene: Scene, seed: int, n: int) -> list[Caption]:
    """n captions of the scene (deterministic in the seed and the scene's id)."""
    rng = np.random.default_rng((CAPTION_STREAM, int(seed), int(scene.id)))
    return [_caption(scene, rng) for _ in range(int(n))]


def caption_scenes(scenes: list[Scene], seed: int, per_scene: int) -> list[Caption]:
    """`per_scene` captions of each scene, scene by scene."""
    return [c for s in scenes for c in caption_scene(s, seed, per_scene)]


def _caption(scene: Scene, rng: np.random.Generator) -> Caption:
    b = _Builder(rng)
    template = b.pick(TEMPLATES)
    style = b.pick(tuple(STYLES))
    mood = b.pick(tuple(MOODS)) if b.chance(P_MOOD) else None
    objs = list(scene.objects)
    if b.chance(P_SHUFFLE):
        objs = [objs[j] for j in rng.permutation(len(objs))]
    noun = b.say(f"style={style}", STYLES[style])
    if mood is not None:
        noun = f"{b.say(f'mood={mood}', MOODS[mood])} {noun}"
    style_of = f"{_an(noun)} {b.pick(('of', 'showing'))}"  # "a cheerful photo of"

    def things(p_position: float, colour_always: bool = False, sizes: bool = True) -> list[str]:
        out = []
        for o in objs:
            t = _an(b.thing(o, colour_always or b.chance(P_COLOUR), sizes and b.chance(P_SIZE)))
            out.append(f"{t} {b.where(o)}" if b.chance(p_position) else t)
        return out

    def maybe_background(p: float) -> str:
        return f" {b.background(scene)}" if b.chance(p) else ""

    if template == "list":
        text = f"{style_of} {_join(things(P_POSITION))}{maybe_background(P_BACKGROUND)}"
    elif template == "tags":
        tags = [f"{b.tag(o)}: {b.thing(o, b.chance(P_COLOUR), b.chance(P_SIZE))}" for o in objs]
        text = f"{', '.join(tags)} ({noun})"
    elif template == "count":
        n = len(objs)
        count = b.say(f"count={n}", COUNTS[str(n)])
        text = f"{style_of} {count} shape{'s' if n > 1 else ''}: {_join(things(0.0))}{maybe_background(P_BACKGROUND)}"
    elif template == "there_is":
        text = f"in this {noun}, there is {_join(things(1.0))}{maybe_background(P_BACKGROUND)}"
    elif template == "where_first":
        parts = [f"{b.where(o)}, {_an(b.thing(o, b.chance(P_COLOUR), b.chance(P_SIZE)))}" for o in objs]
        text = f"{'; '.join(parts)}. {_an(noun)}"
    elif template == "background":
        text = f"{style_of} {_join(things(P_POSITION))} {b.background(scene)}"
    else:  # short
        text = f"{noun}: {', '.join(b.thing(o, True, False) for o in objs)}"
    return Caption(scene.id, text, template, style, mood, tuple(sorted(b.said)))


SWAP_STREAM = 3
SWAPPED_ATTRIBUTES = (("shape", 1.0), ("colour", 1.0), ("position", 1.0))
"""What a swapped caption changes: one object's shape, colour or position, equally often."""


@dataclass(frozen=True)
class LabelledCaption:
    """A caption shown with a picture, and whether it says something the picture does not show."""

    caption: Caption
    """Its `scene` is the picture's scene, swapped or not."""
    swapped: bool
    """Written for a copy of the scene with one value changed (`vary_scene`, to a value the scene lacks)."""
    hallucinated: bool
    """It mentions a visual value (shared kind) the picture does not show: a swapped caption that
    does not happen to say the changed attribute (colour and position are said only sometimes) is
    not one."""
    changed: str | None
    """The attribute the copy changed (`shape`, `colour` or `position`); None when not swapped."""


def swapped_captions(scenes: list[Scene], seed: int, share: float = 0.5) -> list[LabelledCaption]:
    """One caption per scene: with probability `share`, a caption of a copy of the scene with one
    object's shape, colour or position changed to a value the scene has nowhere (so the caption
    swaps one attribute word for another), else a caption of the scene itself. The two draw their
    wording from the same generator, so a swapped caption mostly differs in that word alone.
    The label is exact: whether the caption mentions a shared-kind value outside the scene's."""
    visual = {v.key for v in attribute_values() if v.kind == "shared"}
    out = []
    for s in scenes:
        swap = bool(np.random.default_rng((SWAP_STREAM, int(seed), int(s.id))).random() < share)
        said = vary_scene(s, seed, s.id, SWAPPED_ATTRIBUTES, absent=True) if swap else s
        cap = caption_scene(said, seed, 1)[0]
        wrong = any(k in visual and k not in s.values() for k in cap.mentions)
        changed = next((k.split("=")[0] for k in said.values() - s.values()), None) if swap else None
        out.append(LabelledCaption(cap, swap, wrong, changed))
    return out
