"""Drawing a scene, and where each object lies in the picture.

The background and its texture are laid out in numpy at the output resolution, every mark a whole
pixel; the objects are drawn with Pillow on a canvas `antialias` times larger, which is then
reduced by averaging each `antialias`×`antialias` block. So a pixel of the background is exactly
the background's colour or its texture's, a pixel inside an object is exactly the object's colour,
and only an object's edge pixels are blends: each object's bounding box holds all of them.

Each object is drawn inside its grid cell (the cells tile the picture), so its box lies within the
cell and boxes of different objects never overlap; a patch-level heatmap can be scored against them.
"""

from __future__ import annotations

import io
import math

import numpy as np

from mmsae.world.attributes import BACKGROUNDS, COLOURS, POSITIONS
from mmsae.world.scenes import Scene, SceneObject

MIN_SIZE = 24
"""Smallest picture drawn: 8-pixel cells leave a small object a few pixels across."""
RADIUS = {"small": 0.5, "large": 0.95}
"""Object radius as a fraction of the room in its cell (half the cell's width less a pixel)."""
_CELLS = {p: i for i, p in enumerate(POSITIONS)}

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1 and y1 exclusive: `pixels[y0:y1, x0:x1]`."""


def cell_box(position: str, size: int) -> Box:
    """The pixels of a grid cell: the 3×3 cells tile the picture without overlap."""
    i = _CELLS[position]
    col, row = i % 3, i // 3
    edges = [(2 * k * size + 3) // 6 for k in range(4)]  # k·size/3, rounded half up
    return edges[col], edges[row], edges[col + 1], edges[row + 1]


def _geometry(obj: SceneObject, size: int, f: int) -> tuple[float, float, float]:
    """(centre x, centre y, radius) on the canvas `f` times larger than the picture."""
    x0, y0, x1, y1 = cell_box(obj.position, size)
    room = min(x1 - x0, y1 - y0) * f / 2 - f  # half the cell, less a one-pixel margin
    r = RADIUS[obj.size] * room
    free = room - r
    return (x0 + x1) * f / 2 + obj.jitter[0] * free, (y0 + y1) * f / 2 + obj.jitter[1] * free, r


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
    if shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            rr = r if k % 2 == 0 else 0.45 * r
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    if shape == "hexagon":
        return [(cx + r * math.cos(k * math.pi / 3), cy + r * math.sin(k * math.pi / 3)) for k in range(6)]
    # circle, ring and cross fill the square of side 2r: their extent is that square's
    return [(cx - r, cy - r), (cx + r, cy + r)]


def _canvas_box(obj: SceneObject, size: int, f: int) -> Box:
    """The object's box in picture pixels, from its extent on the canvas: Pillow may colour a
    canvas pixel up to the ceiling of a coordinate, so the box reaches that pixel's block."""
    pts = _polygon(obj.shape, *_geometry(obj, size, f))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return (
        math.floor(min(xs)) // f,
        math.floor(min(ys)) // f,
        math.ceil(max(xs)) // f + 1,
        math.ceil(max(ys)) // f + 1,
    )


def object_boxes(scene: Scene, size: int = 64, antialias: int = 4) -> list[Box]:
    """Each object's bounding box in the picture `render(scene, size, antialias)` draws, in the
    order of `scene.objects`; every box lies inside its object's cell."""
    _check(size, antialias)
    return [_canvas_box(o, size, antialias) for o in scene.objects]


def background_array(scene: Scene, size: int) -> np.ndarray:
    """The background with its texture, [size, size, 3] uint8, marks on whole pixels."""
    base, mark = BACKGROUNDS[scene.background]
    out_YX3 = np.empty((size, size, 3), np.uint8)
    out_YX3[:] = base
    if scene.texture == "plain":
        return out_YX3
    period = max(4, size // 8)
    y, x = np.mgrid[0:size, 0:size]
    if scene.texture == "stripes":  # diagonal, a quarter of each period wide
        on = (x + y) % period < max(1, period // 4)
    elif scene.texture == "dots":
        d = max(1, period // 4)
        on = (x % period < d) & (y % period < d)
    else:  # checks
        on = ((x // period) + (y // period)) % 2 == 1
    out_YX3[on] = mark
    return out_YX3


def render(scene: Scene, size: int = 64, antialias: int = 4):
    """The scene as an RGB `PIL.Image` of size×size pixels; `antialias` is the supersampling
    factor of the objects' edges (1: none, each pixel one colour)."""
    from PIL import Image, ImageDraw

    _check(size, antialias)
    f = antialias
    bg = background_array(scene, size)
    if f > 1:
        bg = np.repeat(np.repeat(bg, f, axis=0), f, axis=1)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        colour = COLOURS[obj.colour]
        cx, cy, r = _geometry(obj, size, f)
        pts = _polygon(obj.shape, cx, cy, r)
        if obj.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif obj.shape == "ring":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(f, round(0.35 * r)))
        elif obj.shape == "cross":
            a = 0.3 * r
            draw.rectangle((cx - r, cy - a, cx + r, cy + a), fill=colour)
            draw.rectangle((cx - a, cy - r, cx + a, cy + r), fill=colour)
        else:
            draw.polygon(pts, fill=colour)
    return img.reduce(f) if f > 1 else img


def png_bytes(image) -> bytes:
    """The picture as PNG bytes: the same pixels give the same bytes (no timestamp, fixed level)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _check(size: int, antialias: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer ≥ {MIN_SIZE}, got {size!r}")
    if isinstance(antialias, bool) or not isinstance(antialias, int) or antialias < 1:
        raise ValueError(f"antialias must be an integer ≥ 1, got {antialias!r}")
