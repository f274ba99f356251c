"""What `mmsae embed` reads: images and captions, with the pairs between them.

Four layouts, told apart by the path: an image folder (recursive), a CSV/TSV or JSONL table of
`image_path, caption` rows, a COCO-style captions JSON (`images` + `annotations`) and a plain
text file of captions, one a line. Every layout becomes the same two ordered lists, so the
pipeline, resuming and the rank split never depend on the layout.

Pair ids: a COCO image keeps its COCO id; elsewhere an image's pair id is its position among
the distinct images, in first-seen order. A caption carries the pair id of its image, or
`NO_PAIR` when it has none. The same caption twice for the same image is one row.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmsae.data.images import IMAGE_SUFFIXES
from mmsae.data.store import NO_PAIR
from mmsae.errors import MmsaeError

EMBED_IMAGE_SUFFIXES = IMAGE_SUFFIXES + (".tif", ".tiff")
IMAGE_COLUMNS = ("image_path", "image", "file_name", "filename", "path", "filepath")
TEXT_COLUMNS = ("caption", "text", "captions")
LAYOUTS = ("folder", "table", "coco", "text")


@dataclass(frozen=True)
class ImageItem:
    """One image to embed."""

    path: str
    """Absolute path of the file."""
    source: str
    """What the store records: the path relative to the image root (so the explorer can serve it)."""
    pair_id: int
    """The pair this image belongs to."""


@dataclass(frozen=True)
class TextItem:
    """One caption to embed."""

    text: str
    """The caption, stripped."""
    pair_id: int
    """Pair id of its image, or NO_PAIR."""
    source: str
    """Where it came from (`file:line`), for provenance."""


@dataclass
class EmbedInputs:
    """The images and captions of one input, in the order they are embedded."""

    layout: str
    """One of LAYOUTS."""
    images: list[ImageItem] = field(default_factory=list)
    texts: list[TextItem] = field(default_factory=list)
    image_root: str | None = None
    """Folder the image sources are relative to (absolute)."""
    duplicate_texts: int = 0
    """Captions dropped because the same text was already listed for the same pair."""
    pair_ids_given: bool = False
    """Pair ids come from the input itself (COCO image ids) and may join rows of separate runs;
    otherwise they are positions, which the store shifts past the ids it already holds."""


def detect_layout(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        return "table"
    if suffix == ".json":
        return "coco"
    if suffix == ".txt":
        return "text"
    raise MmsaeError(
        f"{path}: cannot tell the input layout from the name; give an image folder, a .csv/.tsv/.jsonl "
        "table, a COCO captions .json or a .txt of captions (or say which with --layout)"
    )


def read_inputs(
    path: str | os.PathLike, *, layout: str = "auto", image_root: str | os.PathLike | None = None
) -> EmbedInputs:
    """The images and captions named by `path`; relative image paths resolve against `image_root`
    (default: the folder of the input file)."""
    path = Path(path)
    if not path.exists():
        raise MmsaeError(f"{path}: no such file or folder")
    layout = detect_layout(path) if layout == "auto" else layout
    if layout not in LAYOUTS:
        raise MmsaeError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "folder":
        if not path.is_dir():
            raise MmsaeError(f"{path}: layout 'folder' needs a folder")
        return _read_folder(path.resolve())
    if path.is_dir():
        raise MmsaeError(f"{path}: is a folder; layout {layout!r} needs a file")
    root = Path(image_root).resolve() if image_root is not None else path.resolve().parent
    if image_root is not None and not root.is_dir():
        raise MmsaeError(f"--image-root {image_root}: no such folder")
    try:
        if layout == "text":
            return _read_text(path)
        if layout == "coco":
            return _read_coco(path, root)
        return _read_table(path, root)
    except UnicodeDecodeError as exc:
        raise MmsaeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_folder(root: Path) -> EmbedInputs:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EMBED_IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise MmsaeError(f"{root}: no image files ({', '.join(EMBED_IMAGE_SUFFIXES)}) in this folder or below")
    items = [ImageItem(str(p), p.relative_to(root).as_posix(), i) for i, p in enumerate(files)]
    return EmbedInputs("folder", images=items, image_root=str(root))


def _read_text(path: Path) -> EmbedInputs:
    out = EmbedInputs("text")
    builder = _Captions(out)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        builder.add(line, NO_PAIR, f"{path.name}:{lineno}")
    if not out.texts:
        raise MmsaeError(f"{path}: no captions (the file has no non-empty line)")
    return out


class _Captions:
    """Adds captions, dropping empty ones and repeats of (text, pair)."""

    def __init__(self, out: EmbedInputs):
        self.out = out
        self.seen: set[tuple[str, int]] = set()

    def add(self, text: str | None, pair_id: int, source: str) -> None:
        text = (text or "").strip()
        if not text:
            return
        key = (text, pair_id)
        if key in self.seen:
            self.out.duplicate_texts += 1
            return
        self.seen.add(key)
        self.out.texts.append(TextItem(text, pair_id, source))


class _Images:
    """Assigns pair ids to distinct image paths in first-seen order (or takes the given id)."""

    def __init__(self, out: EmbedInputs, root: Path):
        self.out, self.root = out, root
        self.ids: dict[str, int] = {}

    def add(self, name: str, pair_id: int | None = None) -> int:
        p = Path(name)
        full = (p if p.is_absolute() else self.root / p).resolve()
        key = str(full)
        if key not in self.ids:
            self.ids[key] = len(self.ids) if pair_id is None else pair_id
            source = full.relative_to(self.root).as_posix() if full.is_relative_to(self.root) else str(full)
            self.out.images.append(ImageItem(key, source, self.ids[key]))
        return self.ids[key]


def _read_coco(path: Path, root: Path) -> EmbedInputs:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MmsaeError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(obj, dict) or "annotations" not in obj:
        raise MmsaeError(f"{path}: not a COCO captions file (expected keys 'images' and 'annotations')")
    out = EmbedInputs("coco", image_root=str(root), pair_ids_given=True)
    images, captions = _Images(out, root), _Captions(out)
    for i, im in enumerate(obj.get("images", [])):
        try:
            images.add(str(im["file_name"]), int(im["id"]))
        except (KeyError, TypeError, ValueError):
            raise MmsaeError(f"{path}: images[{i}] needs 'id' and 'file_name'") from None
    for i, ann in enumerate(obj["annotations"]):
        try:
            image_id = int(ann["image_id"])
            caption = ann["caption"]
        except (KeyError, TypeError, ValueError):
            raise MmsaeError(f"{path}: annotations[{i}] needs 'image_id' and 'caption'") from None
        captions.add(caption, image_id, f"{path.name}#ann{ann.get('id', i)}")
    if not out.images and not out.texts:
        raise MmsaeError(f"{path}: no images and no captions")
    return out


def _rows_of_table(path: Path):
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MmsaeError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise MmsaeError(f"{path}:{lineno}: expected a JSON object per line")
                yield lineno, rec
        return
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        for lineno, rec in enumerate(reader, start=2):
            yield lineno, rec


def _column(keys, wanted: tuple[str, ...]) -> str | None:
    lower = {str(k).strip().lower(): k for k in keys}
    return next((lower[w] for w in wanted if w in lower), None)


def _read_table(path: Path, root: Path) -> EmbedInputs:
    out = EmbedInputs("table", image_root=str(root))
    images, captions = _Images(out, root), _Captions(out)
    img_col = txt_col = None
    first = True
    for lineno, rec in _rows_of_table(path):
        if first:
            img_col, txt_col = _column(rec.keys(), IMAGE_COLUMNS), _column(rec.keys(), TEXT_COLUMNS)
            if img_col is None and txt_col is None:
                raise MmsaeError(
                    f"{path}: no image column ({', '.join(IMAGE_COLUMNS)}) and no caption column "
                    f"({', '.join(TEXT_COLUMNS)}); found {list(rec.keys())}"
                )
            first = False
        name = rec.get(img_col) if img_col is not None else None
        pair = images.add(str(name).strip()) if name not in (None, "") and str(name).strip() else NO_PAIR
        value = rec.get(txt_col) if txt_col is not None else None
        # a list of captions (JSONL) or the ` || `-joined form some exports use
        texts = value if isinstance(value, list) else (str(value).split(" || ") if value is not None else [])
        for text in texts:
            captions.add(str(text), pair, f"{path.name}:{lineno}")
    if first:
        raise MmsaeError(f"{path}: no rows")
    if not out.images and not out.texts:
        raise MmsaeError(f"{path}: no image paths and no captions in any row")
    return out
