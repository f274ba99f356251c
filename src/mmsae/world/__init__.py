"""A scene world whose concepts are known: pictures of shapes on a grid, captions about them, and
the ground truth of which picture shows and which caption mentions each attribute value.

It sits at the data floor (numpy, Pillow, `mmsae.errors`, `mmsae.fileio`), so anything above can
use it: a model trained contrastively on these pairs has an embedding space whose concepts can be
checked against `World.masks`. What the world holds and why: docs/world.md.
"""

from mmsae.world.attributes import (
    ATTRIBUTES,
    KINDS,
    Attribute,
    AttributeValue,
    attribute_values,
    mentions_in,
    split_key,
)
from mmsae.world.captions import TEMPLATES, Caption, caption_scene, caption_scenes
from mmsae.world.model import WorldClipConfig, build_world_clip, caption_words, world_image_processor, world_tokenizer
from mmsae.world.render import cell_box, object_boxes, png_bytes, render
from mmsae.world.scenes import Scene, SceneObject, sample_scene, sample_scenes
from mmsae.world.truth import World, WorldConfig, build_world, image_matrix, read_world, text_matrix
from mmsae.world.vocab import DISTRACTORS, vocabulary, world_words
from mmsae.world.write import IMAGE_DIR, METADATA_COLUMNS, METADATA_FILE, image_name, write_world

__all__ = [
    "ATTRIBUTES",
    "DISTRACTORS",
    "IMAGE_DIR",
    "KINDS",
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "TEMPLATES",
    "Attribute",
    "AttributeValue",
    "Caption",
    "Scene",
    "SceneObject",
    "World",
    "WorldClipConfig",
    "WorldConfig",
    "attribute_values",
    "build_world",
    "build_world_clip",
    "caption_scene",
    "caption_scenes",
    "caption_words",
    "cell_box",
    "image_matrix",
    "image_name",
    "mentions_in",
    "object_boxes",
    "png_bytes",
    "read_world",
    "render",
    "sample_scene",
    "sample_scenes",
    "split_key",
    "text_matrix",
    "vocabulary",
    "world_image_processor",
    "world_tokenizer",
    "world_words",
    "write_world",
]
