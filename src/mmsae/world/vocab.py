"""The words for naming the world's concepts, with distractors that name nothing in it.

A concept-naming method is scored by whether it picks the right word for a learned concept; a
vocabulary of only the right words would make that too easy (every pick is some attribute value).
The distractors are words of the same sorts (colours, shapes, objects, textures, places, moods)
that no scene shows and no caption says.
"""

from __future__ import annotations

from mmsae.world.attributes import attribute_values

DISTRACTORS: tuple[str, ...] = (
    # colours the world does not use
    "magenta", "teal", "turquoise", "maroon", "olive", "gold", "silver", "crimson", "indigo",
    "lavender", "navy", "cyan", "lime", "amber", "ivory",
    # shapes it does not draw
    "oval", "rectangle", "pentagon", "octagon", "crescent", "heart", "arrow", "spiral",
    "trapezoid", "ellipse", "cube", "sphere", "cone", "cylinder", "pyramid",
    # objects, none of which is in any scene
    "dog", "cat", "car", "tree", "house", "bird", "apple", "chair", "boat", "flower", "clock",
    "bicycle", "guitar", "lamp", "book", "umbrella", "horse", "banana", "kite", "bottle",
    # textures, places, sizes and registers it never has
    "zigzag", "marble", "wood grain", "horizon", "far corner", "medium", "huge",
    "cartoon", "blueprint", "x-ray", "angry", "sleepy",
)  # fmt: skip
"""Words that never occur in a caption and name no attribute value (the tests hold both)."""


def world_words() -> list[str]:
    """Every attribute value's canonical word, image-only and text-only ones included, in
    `attribute_values()` order."""
    return [v.word for v in attribute_values()]


def vocabulary(distractors: bool = True) -> list[str]:
    """The world's words followed by the distractors (`distractors=False`: the world's words only)."""
    return world_words() + (list(DISTRACTORS) if distractors else [])
