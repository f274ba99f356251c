"""Scenes: 1-4 objects on a 3×3 grid over a background, drawn at random from a seed.

A scene is plain data (frozen dataclasses), so the pictures, the captions and the ground truth
are all functions of it, and a scene can be rebuilt from `world.json` alone. Scene i is drawn
from its own generator, seeded by `(seed, i)`: the first n scenes are the same whatever the total,
and any one scene can be redrawn without the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mmsae.world.attributes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, TEXTURES

MAX_OBJECTS = 4
SCENE_STREAM = 0
"""First word of a scene generator's seed after the user's seed (captions use another), so that
captions and scenes never share random numbers."""


@dataclass(frozen=True)
class SceneObject:
    """One object: what it is and where."""

    shape: str
    """A key of SHAPES."""
    colour: str
    """A key of COLOURS."""
    size: str
    """`small` or `large`."""
    position: str
    """A key of POSITIONS: its grid cell."""
    jitter: tuple[float, float]
    """(x, y) offset of its centre from its cell's centre, in [-1, 1] of the room it has there
    (so an object never leaves its cell); the same at every image size."""

    def values(self) -> tuple[str, ...]:
        """Its attribute values as keys."""
        return (f"shape={self.shape}", f"colour={self.colour}", f"size={self.size}", f"position={self.position}")

    def to_json(self) -> dict:
        return {
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "position": self.position,
            "jitter": list(self.jitter),
        }

    @classmethod
    def from_json(cls, d: dict) -> SceneObject:
        jx, jy = d["jitter"]
        return cls(str(d["shape"]), str(d["colour"]), str(d["size"]), str(d["position"]), (float(jx), float(jy)))


@dataclass(frozen=True)
class Scene:
    """One picture's content."""

    id: int
    """Its index in the world (and its image's file name)."""
    objects: tuple[SceneObject, ...]
    """1-4 objects in distinct cells, in reading order (top left first)."""
    background: str
    """A key of BACKGROUNDS."""
    texture: str
    """A key of TEXTURES: the background's pattern (image-only)."""

    @property
    def count(self) -> int:
        return len(self.objects)

    def values(self) -> frozenset[str]:
        """Every attribute value the picture shows, as keys (`colour=red`, `count=2`, ...)."""
        keys = {k for o in self.objects for k in o.values()}
        keys |= {f"count={self.count}", f"background={self.background}", f"texture={self.texture}"}
        return frozenset(keys)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "background": self.background,
            "texture": self.texture,
            "objects": [o.to_json() for o in self.objects],
        }

    @classmethod
    def from_json(cls, d: dict) -> Scene:
        objs = tuple(SceneObject.from_json(o) for o in d["objects"])
        return cls(int(d["id"]), objs, str(d["background"]), str(d["texture"]))


_SHAPES, _COLOURS, _SIZES = list(SHAPES), list(COLOURS), list(SIZES)
_POSITIONS, _BACKGROUNDS, _TEXTURES = list(POSITIONS), list(BACKGROUNDS), list(TEXTURES)


def sample_scene(i: int, seed: int) -> Scene:
    """Scene i of the world with this seed: the number of objects uniform in 1-4, their cells a
    uniform choice of distinct cells, every other attribute uniform and independent."""
    rng = np.random.default_rng((SCENE_STREAM, int(seed), int(i)))
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = np.sort(rng.choice(len(_POSITIONS), size=n, replace=False))
    shape = rng.integers(len(_SHAPES), size=n)
    colour = rng.integers(len(_COLOURS), size=n)
    size = rng.integers(len(_SIZES), size=n)
    jitter = rng.uniform(-1.0, 1.0, size=(n, 2))
    objs = tuple(
        SceneObject(
            _SHAPES[shape[j]],
            _COLOURS[colour[j]],
            _SIZES[size[j]],
            _POSITIONS[cells[j]],
            (round(float(jitter[j, 0]), 4), round(float(jitter[j, 1]), 4)),
        )
        for j in range(n)
    )
    bg = _BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))]
    tex = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
    return Scene(int(i), objs, bg, tex)


def sample_scenes(n: int, seed: int) -> list[Scene]:
    """Scenes 0 … n-1 of the world with this seed (deterministic; a prefix of a longer call)."""
    return [sample_scene(i, seed) for i in range(int(n))]


VARY_STREAM = 2
"""First word of a variation's seed (scenes use 0, captions 1)."""
VARIED_ATTRIBUTES = (("shape", 0.6), ("colour", 0.2), ("size", 0.2))
"""Which attribute `vary_scene` changes by default, with its probability: mostly the shape, which a
picture shows only in a few pixels' outline and which colour and position already tell apart in
most random batches."""


def vary_scene(
    scene: Scene,
    seed: int,
    new_id: int,
    attributes: tuple[tuple[str, float], ...] = VARIED_ATTRIBUTES,
    absent: bool = False,
) -> Scene:
    """The scene with one attribute of one object changed to another value, drawn from `seed` and
    the scene's id (a hard negative: the two pictures, and captions that say the attribute, differ
    only there). `attributes` weighs shape, colour, size and position; with `absent`, the new value
    is one no object of the scene has (for a position: an empty cell), so a caption saying it says
    something the original picture does not show anywhere. The copy gets `new_id`."""
    rng = np.random.default_rng((VARY_STREAM, int(seed), int(scene.id)))
    names, weights = zip(*attributes, strict=True)
    attr = names[int(rng.choice(len(names), p=np.asarray(weights) / np.sum(weights)))]
    j = int(rng.integers(scene.count))
    pool = {"shape": _SHAPES, "colour": _COLOURS, "size": _SIZES, "position": _POSITIONS}[attr]
    taken = {getattr(o, attr) for o in scene.objects} if (absent or attr == "position") else set()
    choices = [v for v in pool if v != getattr(scene.objects[j], attr) and v not in taken]
    if not choices:  # absent sizes: both sizes already in the scene
        choices = [v for v in pool if v != getattr(scene.objects[j], attr)]
    objs = list(scene.objects)
    objs[j] = dataclasses.replace(objs[j], **{attr: choices[int(rng.integers(len(choices)))]})
    if attr == "position":  # keep reading order, which the captions and boxes assume
        objs.sort(key=lambda o: _POSITIONS.index(o.position))
    return Scene(int(new_id), tuple(objs), scene.background, scene.texture)
