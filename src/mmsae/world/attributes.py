"""The world's attributes: their values, the words captions use for them, and which side sees them.

An attribute value is named by a key, `attribute=value` (`colour=red`, `position=top left`), the
same key in the scenes, the captions, `world.json` and the masks, so a concept found later can be
checked against one spelling. Each value has one canonical word (what a concept-naming vocabulary
would use) and the phrases captions may use for it (synonyms and spelling variants). Every phrase
belongs to exactly one value, which is what lets `mentions_in` read a caption back into keys.

Three kinds, as in the planted stores of `mmsae.data.synthetic`:

- `shared`: drawn in the picture and mentioned by some captions (shape, colour, size, position,
  object count, background);
- `image`: drawn but never mentioned (the background's texture): information a text encoder
  cannot learn from the captions;
- `text`: carried by the caption only (its style and mood), with no counterpart in the picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmsae.errors import MmsaeError

KINDS = ("shared", "image", "text")
"""`shared`: drawn and mentioned; `image`: drawn, never mentioned; `text`: in captions only."""

SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "hoop"),
    "hexagon": ("hexagon",),
}
"""Shape → the phrases a caption may use for it (the first is the canonical word)."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 40),
    "orange": (245, 135, 20),
    "yellow": (240, 210, 0),
    "green": (40, 165, 60),
    "blue": (35, 85, 225),
    "purple": (135, 45, 180),
    "pink": (245, 110, 190),
    "brown": (125, 70, 25),
}
"""Object colour → its RGB value. None is a grey, black or white, so an object never melts into a
background, and none equals a background's or its texture's colour (the renderer's tests rely
on that to find each object's pixels)."""

COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOURS} | {"purple": ("purple", "violet")}

SIZES: dict[str, tuple[str, ...]] = {"small": ("small", "little"), "large": ("large", "big")}

POSITIONS: dict[str, tuple[str, ...]] = {
    "top left": ("top left", "upper left"),
    "top middle": ("top middle", "top center", "top centre", "top"),
    "top right": ("top right", "upper right"),
    "middle left": ("middle left", "center left", "left"),
    "center": ("center", "centre", "middle"),
    "middle right": ("middle right", "center right", "right"),
    "bottom left": ("bottom left", "lower left"),
    "bottom middle": ("bottom middle", "bottom center", "bottom centre", "bottom"),
    "bottom right": ("bottom right", "lower right"),
}
"""Grid cell → phrases, in reading order: cell i is row i // 3 (0 = top), column i % 3 (0 = left).
`top`, `left`, `middle`... alone name the middle cells; `mentions_in` matches the longest phrase
first, so `top left` is never read as `top` and `left`."""

COUNTS: dict[str, tuple[str, ...]] = {"1": ("one",), "2": ("two",), "3": ("three",), "4": ("four",)}
"""Number of objects in a scene (1-4) → its word."""

BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "white": ((242, 242, 236), (212, 212, 204)),
    "grey": ((150, 150, 150), (122, 122, 122)),
    "black": ((28, 28, 30), (70, 70, 74)),
    "beige": ((226, 206, 168), (198, 176, 134)),
}
"""Background → (its colour, the colour of its texture's marks): the texture is a second tone of
the same background, so it changes the picture without changing what a caption would call its colour."""

BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "white": ("white background", "white backdrop"),
    "grey": ("grey background", "gray background", "grey backdrop", "gray backdrop"),
    "black": ("black background", "black backdrop"),
    "beige": ("beige background", "beige backdrop"),
}
"""A background is always mentioned with its noun (`on a black background`), so its word never
collides with an object colour a later palette might add."""

TEXTURES: dict[str, tuple[str, ...]] = {
    "plain": ("plain",),
    "stripes": ("stripes",),
    "dots": ("dots",),
    "checks": ("checks",),
}
"""The background's pattern: image-only, never in a caption (its words are the vocabulary's only)."""

STYLES: dict[str, tuple[str, ...]] = {
    "photo": ("photo", "photograph"),
    "drawing": ("drawing", "sketch"),
    "painting": ("painting",),
    "picture": ("picture", "image"),
}
"""The caption's register ("a photo of", "a sketch of"): text-only, drawn at random per caption,
so no pixel tells which one a caption will use."""

MOODS: dict[str, tuple[str, ...]] = {
    "cheerful": ("cheerful",),
    "calm": ("calm",),
    "gloomy": ("gloomy",),
    "playful": ("playful",),
}
"""An invented mood some captions add ("a gloomy photo of ..."): text-only, like the style."""


@dataclass(frozen=True)
class Attribute:
    """One attribute of the world."""

    name: str
    """`shape`, `colour`, `size`, `position`, `count`, `background`, `texture`, `style` or `mood`."""
    level: str
    """`object` (each object has one), `scene` (each scene has one) or `caption` (each caption has
    at most one)."""
    kind: str
    """One of KINDS."""
    phrases: dict[str, tuple[str, ...]]
    """Value → the phrases a caption may use (the first is the canonical word)."""


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("shape", "object", "shared", SHAPES),
    Attribute("colour", "object", "shared", COLOUR_WORDS),
    Attribute("size", "object", "shared", SIZES),
    Attribute("position", "object", "shared", POSITIONS),
    Attribute("count", "scene", "shared", COUNTS),
    Attribute("background", "scene", "shared", BACKGROUND_WORDS),
    Attribute("texture", "scene", "image", TEXTURES),
    Attribute("style", "caption", "text", STYLES),
    Attribute("mood", "caption", "text", MOODS),
)
"""Every attribute, objects' first, then the scene's, then the caption's."""

BY_NAME = {a.name: a for a in ATTRIBUTES}


@dataclass(frozen=True)
class AttributeValue:
    """One value of one attribute: the unit a concept is compared with."""

    key: str
    """`attribute=value`, e.g. `colour=red`, `position=top left`."""
    attribute: str
    value: str
    word: str
    """The canonical word, what a vocabulary uses to name the concept (`red`, `top left`,
    `white background`)."""
    kind: str
    """One of KINDS."""
    level: str
    """`object`, `scene` or `caption`."""
    phrases: tuple[str, ...]
    """Every phrase a caption may use for it; empty for image-only values, which no caption uses."""

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "attribute": self.attribute,
            "value": self.value,
            "word": self.word,
            "kind": self.kind,
            "level": self.level,
            "phrases": list(self.phrases),
        }


def attribute_values() -> list[AttributeValue]:
    """Every attribute value of the world, in ATTRIBUTES order, values in their table's order."""
    out = []
    for a in ATTRIBUTES:
        for value, phrases in a.phrases.items():
            said = () if a.kind == "image" else phrases
            out.append(AttributeValue(f"{a.name}={value}", a.name, value, phrases[0], a.kind, a.level, said))
    return out


def split_key(key: str) -> tuple[str, str]:
    """(attribute, value) of a key, refusing one the world does not have (a key can come from a user)."""
    name, sep, value = key.partition("=")
    attr = BY_NAME.get(name.strip())
    if not sep or attr is None:
        raise MmsaeError(
            f"{key!r} is not an attribute value: write ATTRIBUTE=VALUE with ATTRIBUTE one of {', '.join(BY_NAME)}"
        )
    value = value.strip()
    if value not in attr.phrases:
        raise MmsaeError(f"{key!r}: {attr.name} has no value {value!r}; its values are {', '.join(attr.phrases)}")
    return attr.name, value


def _phrase_table() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for v in attribute_values():
        for p in v.phrases:
            toks = tuple(p.split())
            if toks in table:  # the module's tables are wrong, not the caller
                raise AssertionError(f"phrase {p!r} names both {table[toks]} and {v.key}")
            table[toks] = v.key
    return table


PHRASES = _phrase_table()
"""Phrase (as a tuple of words) → the key it names, over every value a caption may mention."""
_LONGEST = max(len(p) for p in PHRASES)
_WORD = re.compile(r"[a-z0-9]+")


def mentions_in(text: str) -> list[str]:
    """The keys a caption names, in the order it names them (repeats kept).

    Reads words case-insensitively with hyphens as spaces (`top-left`), matching the longest
    phrase at each word, so `top left` is one position and not `top` plus `left`. Works on any
    text, not only generated captions: a later step can read what a hand-written caption says.
    """
    toks = _WORD.findall(text.lower())
    out, i = [], 0
    while i < len(toks):
        for n in range(min(_LONGEST, len(toks) - i), 0, -1):
            key = PHRASES.get(tuple(toks[i : i + n]))
            if key is not None:
                out.append(key)
                i += n
                break
        else:
            i += 1
    return out
