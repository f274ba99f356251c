"""Writing a world as a dataset folder: pictures, a caption table and the ground truth.

```
OUT/
  images/000000.png   one picture per scene, named by its id
  metadata.csv        one row per caption: image_path (relative to OUT), caption, scene_id, ...
  world.json          the ground truth and the config (written last)
```

`metadata.csv` is what `mmsae embed OUT/metadata.csv` reads (its `image_path`s resolve against the
table's folder). `world.json` is written last and is the folder's mark of completeness: a folder
with one holds every picture and caption it lists. Replacing a world removes its `world.json`
first, so a replacement cut short is never read as the old world or as a whole new one.

Each picture is written to a temporary name and renamed, so a killed writer leaves no half
picture; the pictures are flushed to disk once, by one `os.sync` before the caption table and the
ground truth (each fsynced by `atomic_write`) — an fsync per picture would cost more than the
drawing.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from mmsae.errors import MmsaeError
from mmsae.fileio import TMP_MARK, atomic_write, dumps, remove_stale_tmp, tmp_path
from mmsae.world.render import png_bytes, render
from mmsae.world.truth import WORLD_FILE, World, WorldConfig, build_world

IMAGE_DIR = "images"
METADATA_FILE = "metadata.csv"
METADATA_COLUMNS = ("image_path", "caption", "scene_id", "caption_id", "template", "style", "mood", "mentions")
"""`mood` is empty when the caption has none; `mentions` is the caption's keys joined by `;`."""
_IMAGE_NAME = re.compile(r"^(\d{6,})\.png$")


def image_name(scene_id: int) -> str:
    """A scene's picture, relative to the world folder."""
    return f"{IMAGE_DIR}/{scene_id:06d}.png"


def write_world(
    out_dir: str | os.PathLike,
    n_scenes: int,
    seed: int,
    image_size: int = 64,
    captions_per_scene: int = 2,
    *,
    antialias: int = 4,
    overwrite: bool = False,
    progress: bool = True,
) -> World:
    """Generate a world and write it to `out_dir` (see the module's docstring); returns it.

    A folder that already holds a world (a `world.json`, a `metadata.csv` or pictures) is refused
    unless `overwrite`, which replaces it, pictures of scenes beyond the new count included.
    """
    config = WorldConfig(n_scenes, seed, image_size, captions_per_scene, antialias)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MmsaeError(f"{out} is a file, not a folder; choose another output folder")
    images = out / IMAGE_DIR
    held = [p for p in (out / WORLD_FILE, out / METADATA_FILE) if p.exists()]
    if images.is_dir() and any(_IMAGE_NAME.match(p.name) for p in images.iterdir()):
        held.append(images)
    if held and not overwrite:
        raise MmsaeError(
            f"{out} already holds a world ({held[0].name}); pass overwrite=True to replace it, or choose another folder"
        )
    try:
        (out / WORLD_FILE).unlink(missing_ok=True)  # first: from here on the folder is not a whole world
        images.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MmsaeError(f"cannot write {out}: {exc.strerror or exc}") from None
    remove_stale_tmp(out)
    remove_stale_tmp(images)

    world = build_world(config)
    _write_pictures(world, out, progress)
    if held:
        _remove_extra_pictures(images, config.n_scenes)
    if hasattr(os, "sync"):
        os.sync()
    atomic_write(out / METADATA_FILE, _metadata_csv(world))
    atomic_write(out / WORLD_FILE, dumps(world.to_json(), indent=None))  # one line: a third of the size
    return world


def _write_pictures(world: World, out: Path, progress: bool) -> None:
    from tqdm import tqdm

    cfg = world.config
    for scene in tqdm(world.scenes, desc="drawing scenes", unit="scene", disable=not progress):
        path = out / image_name(scene.id)
        tmp = tmp_path(path)
        try:
            with open(tmp, "wb") as f:
                f.write(png_bytes(render(scene, cfg.image_size, cfg.antialias)))
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise MmsaeError(f"cannot write {path}: {exc.strerror or exc}") from None
            raise


def _remove_extra_pictures(images: Path, n_scenes: int) -> None:
    for p in images.iterdir():
        m = _IMAGE_NAME.match(p.name)
        if m and int(m.group(1)) >= n_scenes and TMP_MARK not in p.name:
            p.unlink(missing_ok=True)


def _metadata_csv(world: World) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(METADATA_COLUMNS)
    for j, c in enumerate(world.captions):
        w.writerow((image_name(c.scene), c.text, c.scene, j, c.template, c.style, c.mood or "", ";".join(c.mentions)))
    return buf.getvalue()
