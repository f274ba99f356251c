"""The ground truth of a world: its scenes, captions and boxes, and which rows hold each value.

A `World` is what `world.json` holds, as objects. Its masks answer the question every later check
asks: for an attribute value such as `colour=red`, which scenes show it (the image side) and which
captions mention it (the text side). A text-only value (`style=photo`) is shown by no scene, an
image-only one (`texture=stripes`) mentioned by no caption, by construction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mmsae.errors import MmsaeError
from mmsae.world.attributes import AttributeValue, attribute_values, split_key
from mmsae.world.captions import Caption, caption_scenes
from mmsae.world.render import MIN_SIZE, Box, object_boxes
from mmsae.world.scenes import Scene, sample_scenes

FORMAT = "mmsae-world"
VERSION = 1
WORLD_FILE = "world.json"


@dataclass(frozen=True)
class WorldConfig:
    """What a world is generated from: the same config gives the same world, byte for byte."""

    n_scenes: int
    """Number of scenes (and pictures)."""
    seed: int
    """Seed of the scenes and of the captions (separate streams, see `scenes` and `captions`)."""
    image_size: int = 64
    """Side of each picture in pixels."""
    captions_per_scene: int = 2
    """Captions drawn per scene."""
    antialias: int = 4
    """Supersampling factor of the objects' edges (1: none)."""

    def __post_init__(self):
        def whole(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        checks = [
            (
                whole(self.n_scenes) and self.n_scenes >= 1,
                f"n_scenes must be a positive integer, got {self.n_scenes!r}",
            ),
            (whole(self.seed) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}"),
            (
                whole(self.image_size) and self.image_size >= MIN_SIZE,
                f"image_size must be an integer ≥ {MIN_SIZE}, got {self.image_size!r}",
            ),
            (
                whole(self.captions_per_scene) and self.captions_per_scene >= 1,
                f"captions_per_scene must be a positive integer, got {self.captions_per_scene!r}",
            ),
            (
                whole(self.antialias) and self.antialias >= 1,
                f"antialias must be a positive integer, got {self.antialias!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise MmsaeError(message)
        for name in ("n_scenes", "seed", "image_size", "captions_per_scene", "antialias"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def to_json(self) -> dict:
        return {
            "n_scenes": self.n_scenes,
            "seed": self.seed,
            "image_size": self.image_size,
            "captions_per_scene": self.captions_per_scene,
            "antialias": self.antialias,
        }


def image_matrix(scenes: list[Scene], values: list[AttributeValue] | None = None) -> np.ndarray:
    """[N scenes, C values] bool: scene n shows value c (C over `attribute_values()` by default)."""
    values = attribute_values() if values is None else values
    col = {v.key: c for c, v in enumerate(values)}
    shows_NC = np.zeros((len(scenes), len(values)), bool)
    for n, s in enumerate(scenes):
        shows_NC[n, [col[k] for k in s.values() if k in col]] = True
    return shows_NC


def text_matrix(captions: list[Caption], values: list[AttributeValue] | None = None) -> np.ndarray:
    """[N captions, C values] bool: caption n mentions value c."""
    values = attribute_values() if values is None else values
    col = {v.key: c for c, v in enumerate(values)}
    says_NC = np.zeros((len(captions), len(values)), bool)
    for n, cap in enumerate(captions):
        says_NC[n, [col[k] for k in cap.mentions if k in col]] = True
    return says_NC


@dataclass(frozen=True)
class World:
    """Every scene with its captions and object boxes, and the config they came from."""

    config: WorldConfig
    scenes: tuple[Scene, ...]
    """Scene i has id i."""
    captions: tuple[Caption, ...]
    """`captions_per_scene` per scene, scene by scene: caption j describes scene j // captions_per_scene."""
    boxes: tuple[tuple[Box, ...], ...] = field(repr=False)
    """Per scene, each object's bounding box in its `image_size` picture (`render.Box`)."""

    @cached_property
    def values(self) -> list[AttributeValue]:
        """The columns of the matrices: `attribute_values()`."""
        return attribute_values()

    @cached_property
    def scene_of_caption_N(self) -> np.ndarray:
        """[N captions] the scene each caption describes."""
        return np.array([c.scene for c in self.captions], np.int64)

    @cached_property
    def image_NC(self) -> np.ndarray:
        """[N scenes, C values] bool: which values each scene shows."""
        return image_matrix(list(self.scenes), self.values)

    @cached_property
    def text_NC(self) -> np.ndarray:
        """[N captions, C values] bool: which values each caption mentions."""
        return text_matrix(list(self.captions), self.values)

    def masks(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(scenes that show it [N scenes], captions that mention it [N captions]) for a value
        such as `colour=red`, `shape=triangle` or `position=top left`."""
        attr, value = split_key(key)
        c = next(i for i, v in enumerate(self.values) if v.key == f"{attr}={value}")
        return self.image_NC[:, c].copy(), self.text_NC[:, c].copy()

    def to_json(self) -> dict:
        """What `world.json` holds: the config, every attribute value, and per scene its objects
        (with their boxes) and its captions (with what they mention)."""
        per = self.config.captions_per_scene
        scenes = []
        for s, boxes in zip(self.scenes, self.boxes):
            d = s.to_json()
            for o, box in zip(d["objects"], boxes):
                o["box"] = list(box)
            d["captions"] = [c.to_json() for c in self.captions[s.id * per : (s.id + 1) * per]]
            scenes.append(d)
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_json(),
            "attributes": [v.to_json() for v in self.values],
            "scenes": scenes,
        }

    @classmethod
    def from_json(cls, d: dict) -> World:
        """The world `to_json` wrote; raises KeyError, TypeError or ValueError on anything else."""
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(f"not an {FORMAT} version {VERSION} file")
        config = WorldConfig(**d["config"])
        scenes, captions, boxes = [], [], []
        for sd in d["scenes"]:
            s = Scene.from_json(sd)
            scenes.append(s)
            boxes.append(tuple(tuple(int(x) for x in o["box"]) for o in sd["objects"]))
            captions.extend(Caption.from_json(s.id, c) for c in sd["captions"])
        if len(scenes) != config.n_scenes or any(s.id != i for i, s in enumerate(scenes)):
            raise ValueError(f"expected scenes 0 … {config.n_scenes - 1} in order")
        return cls(config, tuple(scenes), tuple(captions), tuple(boxes))


def build_world(config: WorldConfig) -> World:
    """The world a config describes: scenes, captions and boxes (no pictures, no files)."""
    scenes = sample_scenes(config.n_scenes, config.seed)
    captions = caption_scenes(scenes, config.seed, config.captions_per_scene)
    boxes = tuple(tuple(object_boxes(s, config.image_size, config.antialias)) for s in scenes)
    return World(config, tuple(scenes), tuple(captions), boxes)


def read_world(folder: str | os.PathLike) -> World:
    """The world in a folder `write_world` wrote; a missing or damaged `world.json` is one line."""
    path = Path(folder) / WORLD_FILE
    if not path.is_file():
        raise MmsaeError(f"{folder} is not a world folder: it has no {WORLD_FILE} (write one with write_world)")
    try:
        return World.from_json(json.loads(path.read_text()))
    except MmsaeError as exc:
        raise MmsaeError(f"{path} is damaged: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise MmsaeError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
