"""Pictures for synthetic image rows, so that the explorer has something to show.

Each concept an image can hold (shared or image-only) is drawn as its own glyph: a shape, a
colour and a cell of a 3×3 grid, sized by the concept's coefficient relative to the image's strongest. A concept's top images then
visibly share one glyph, which makes a correct SAE easy to see and a wrong one obvious.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross")
COLORS = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#808000",
    "#000075",
    "#469990",
    "#800000",
)
SIZE = 72


def glyph_of(rank: int) -> tuple[str, str, int]:
    """(shape, colour, grid cell) of the image-visible concept with this rank; unique for 648 concepts."""
    return SHAPES[(rank // 9) % len(SHAPES)], COLORS[(rank // 54) % len(COLORS)], rank % 9


def visible_ranks(kinds: list[str]) -> np.ndarray:
    """Per concept, its rank among image-visible concepts (-1 for text-only ones)."""
    ranks = np.full(len(kinds), -1)
    vis = [i for i, k in enumerate(kinds) if k != "text"]
    ranks[vis] = np.arange(len(vis))
    return ranks


def render(concepts: np.ndarray, coefs: np.ndarray, ranks: np.ndarray, path: Path) -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), "#f4f4f0")
    draw = ImageDraw.Draw(img)
    cell = SIZE // 3
    top = max(float(np.max(coefs)), 1e-12) if len(coefs) else 1.0
    for c, a in sorted(zip(concepts, coefs), key=lambda t: -t[1]):
        if ranks[c] < 0:
            continue
        shape, color, pos = glyph_of(int(ranks[c]))
        cx, cy = (pos % 3 + 0.5) * cell, (pos // 3 + 0.5) * cell
        r = cell * (0.2 + 0.25 * float(a) / top)  # the strongest concept is drawn largest
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=color)
        elif shape == "ring":
            draw.ellipse(box, outline=color, width=max(2, int(r / 3)))
        elif shape == "square":
            draw.rectangle(box, fill=color)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color)
        elif shape == "diamond":
            draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
        else:
            w = max(2, int(r / 2.5))
            draw.rectangle((cx - r, cy - w / 2, cx + r, cy + w / 2), fill=color)
            draw.rectangle((cx - w / 2, cy - r, cx + w / 2, cy + r), fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=False)


IMAGE_DIR = "images"
"""The pictures' folder inside the store: its image root."""


def image_name(pair_id: int) -> str:
    """Path of a pair's picture, relative to the image root (1,000 files per folder)."""
    return f"{pair_id // 1000:04d}/{pair_id}.png"
