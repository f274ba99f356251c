"""Heatmaps of patch-level concepts over the pictures they fire on (`mmsae top --heatmaps DIR`).

On a store of patch tokens (`mmsae embed --layer N --tokens patches|all`) a concept has a code per
patch. Its top pictures are those with the largest max over their patches; its heatmap over one
picture is its code on each patch, laid out on the picture's patch grid (the tower's, recorded in
the manifest, or SigLIP2's own per picture, recorded in its rows), upsampled bilinearly and blended
over the picture (transparent where the concept is silent, opaque in the colour map where it peaks).

The grid covers what the image processor fed the tower, as the manifest records it
(`centre_crop`): CLIP-style processors resize the shorter side and crop the centre, so the heatmap
is drawn over the picture's central square; SigLIP's and SigLIP2's resize the whole picture, so
it is drawn over all of it. A store with a class token ranks and
scales by the patches alone; a store of sampled patches, or without an image folder, is refused.
Pictures are ranked in one pass over the store's sparse codes, holding only each concept's best
pictures (`analysis.codes.picture_codes`, `TopTracker`); every row's `extra` metadata is parsed
once (the picture and patch cell of each row).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmsae.analysis.codes import TopTracker, code_blocks, picture_codes
from mmsae.errors import MmsaeError

DEFAULT_CONCEPTS = 16
"""Concepts drawn when none are named: those firing on the most pictures."""
ALPHA = 0.6
"""Opacity of the colour map where a concept peaks."""


def token_layout(store) -> dict:
    """The manifest's record of how the store's token rows were read, for a store heatmaps can be
    drawn from; a one-line error otherwise (pooled embeddings, no patches, sampled patches, no
    image folder)."""
    from mmsae.data.images import image_root

    tokens = store.manifest.preprocessing.get("tokens")
    if not tokens or "grid" not in tokens:
        what = "a text tower's token rows" if (tokens or {}).get("tower") == "text" else "pooled embeddings"
        raise MmsaeError(
            f"{store.root} holds {what}: heatmaps need patch tokens (`mmsae embed --layer N --tokens patches`)"
        )
    if tokens.get("tokens") not in ("patches", "all"):
        raise MmsaeError(f"{store.root} holds --tokens {tokens.get('tokens')} rows: heatmaps need patch tokens")
    if tokens.get("per_image") is not None:
        raise MmsaeError(
            f"{store.root} holds {tokens['per_image']} sampled patches per picture: a heatmap would show the "
            "others as silent; embed every patch for heatmaps"
        )
    if image_root(store) is None:
        raise MmsaeError(f"{store.root} records no image folder: the pictures to draw over are unknown")
    return tokens


def token_index(store) -> tuple[np.ndarray, np.ndarray]:
    """(picture [R], patch cell [R, 2]) of every row of a token store, from the rows' `extra`; the
    cell is (−1, −1) for a class token or a mean."""
    extras = store.extras(np.arange(len(store)))
    image_R = np.array([(e or {}).get("image", -1) for e in extras], dtype=np.int64)
    cell_R = np.array([(e or {}).get("cell", [-1, -1]) for e in extras], dtype=np.int64).reshape(-1, 2)
    return image_R, cell_R


def has_patches(store) -> bool:
    """Whether the store's rows are patch tokens (`--tokens patches` or `all`), from its manifest."""
    tokens = store.manifest.preprocessing.get("tokens") or {}
    return tokens.get("tower", "vision") == "vision" and tokens.get("tokens") in ("patches", "all")


def patch_pictures(store) -> np.ndarray | None:
    """[R] the picture of every patch row of a store of patch tokens, -1 for a class token or a
    mean; None for any other store (pooled embeddings, --tokens cls or mean)."""
    if not has_patches(store):
        return None
    image_R, cell_R = token_index(store)
    picture_R = np.where(cell_R[:, 0] >= 0, image_R, -1)
    if len(picture_R) and not (picture_R >= 0).any():
        raise MmsaeError(f"{store.root} records patch tokens but no row names its picture and cell")
    return picture_R


def picture_sources(store, picture_R: np.ndarray) -> dict[int, str]:
    """Each picture's source (its path under the store's image folder), read from its first row."""
    sources = store.metadata(["source"]).column("source").to_pylist()
    out: dict[int, str] = {}
    for r in np.flatnonzero(picture_R >= 0).tolist():
        out.setdefault(int(picture_R[r]), sources[r])
    return out


def picture_grid(store, tokens: dict, row: int) -> tuple[int, int]:
    """The patch grid of the picture of `row`: the tower's, or (a tower that sizes it per picture,
    `tokens["grid"]` None) the picture's own, from its rows' `extra`."""
    if tokens.get("grid") is not None:
        return tuple(tokens["grid"])
    return tuple((store.extras([row])[0] or {})["grid"])


def centre_crop(tokens: dict) -> bool:
    """Whether the model's processor centre-cropped the pictures (stores from before it was recorded:
    yes, as CLIP's does)."""
    return bool(tokens.get("centre_crop", True))


def heat_grid(codes_R: np.ndarray, cell_R: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """[h, w] heatmap: each patch row's code at its cell (0 where a patch has no row)."""
    heat_hw = np.zeros(tuple(grid))
    heat_hw[cell_R[:, 0], cell_R[:, 1]] = codes_R
    return heat_hw


def overlay(picture, heat_hw: np.ndarray, vmax: float, colormap: str = "inferno", crop: bool = True):
    """The picture (PIL, centre-cropped to a square, as a CLIP processor crops it; with `crop` False
    whole, as SigLIP's and SigLIP2's processors resize it) with `heat_hw` upsampled over it; 0 leaves
    a pixel as it was, `vmax` and above paints it at ALPHA in the colour map's top colour."""
    from matplotlib import colormaps
    from PIL import Image

    picture = picture.convert("RGB")
    w, h = picture.size
    if crop:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        picture, w, h = picture.crop((left, top, left + side, top + side)), side, side
    scaled = np.clip(np.asarray(heat_hw, dtype=np.float64) / max(vmax, 1e-12), 0, 1)
    heat = Image.fromarray((scaled * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    level = np.asarray(heat, dtype=np.float64) / 255
    colour = colormaps[colormap](level)[..., :3] * 255
    base = np.asarray(picture, dtype=np.float64)
    alpha = ALPHA * level[..., None]
    return Image.fromarray(np.round(base * (1 - alpha) + colour * alpha).astype(np.uint8))


def _codes(model, x_ND: np.ndarray) -> np.ndarray:
    from mmsae.metrics.crossmodal import encode_decode
    from mmsae.models.paired import as_paired

    return encode_decode(as_paired(model), np.asarray(x_ND, dtype=np.float32), "image", "cpu")[0].numpy()


def write_heatmaps(
    model,
    store,
    out_dir: str | Path,
    concepts: list[int] | None = None,
    per_concept: int = 8,
    block: int = 4096,
    progress: bool = False,
) -> dict:
    """Draw each concept's `per_concept` top pictures with its heatmap into OUT_DIR: one PNG per
    (concept, picture), `concept-C/rank-R.png`, and `heatmaps.json` listing them with the picture,
    its source and the concept's max activation there, and the pictures that could not be read
    (gone or damaged since they were embedded: skipped, as `embed` skips them). Returns that listing."""
    from PIL import Image
    from tqdm import tqdm

    from mmsae.data.images import OutsideRoot, image_root, safe_file

    tokens = token_layout(store)
    crop = centre_crop(tokens)
    root = image_root(store)
    F = int(model.cfg.dict_size)
    if concepts is not None and any(not 0 <= c < F for c in concepts):
        raise MmsaeError(f"concepts must lie in 0..{F - 1}, got {sorted(c for c in concepts if not 0 <= c < F)}")
    image_R, cell_R = token_index(store)
    picture_R = np.where(cell_R[:, 0] >= 0, image_R, -1)  # a class token is never drawn, so it does not rank either
    # each concept's best pictures and how many pictures it fires on, in O(per_concept · F) memory
    tracker, fired_F = TopTracker(F, per_concept), np.zeros(F, np.int64)
    blocks = code_blocks(model, store, block, progress=progress, desc="heatmaps: codes")
    for rows_N, c_N, v_N in picture_codes(blocks, picture_R, "max"):
        tracker.add(rows_N, c_N, v_N)
        fired_F += np.bincount(c_N[v_N > 0], minlength=F)
    best_KF, best_row_KF = tracker.result()
    if concepts is None:
        concepts = [int(c) for c in np.argsort(-fired_F, kind="stable")[:DEFAULT_CONCEPTS] if fired_F[c] > 0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source_of = picture_sources(store, picture_R)
    listing: dict[str, list[dict]] = {}
    unreadable: dict[str, str] = {}  # source → why: pictures gone or damaged since they were embedded
    for c in tqdm(concepts, desc="heatmaps: drawing", unit="concept", disable=not progress):
        top = [int(picture_R[r]) for r in best_row_KF[:, c] if r >= 0]
        peak = {int(picture_R[r]): float(v) for r, v in zip(best_row_KF[:, c], best_KF[:, c]) if r >= 0}
        folder = out / f"concept-{c:05d}"
        folder.mkdir(exist_ok=True)
        for old in folder.glob("rank-*.png"):  # an earlier run's pictures are not this one's
            old.unlink()
        drawn = []
        for rank, i in enumerate(top):
            rows = np.flatnonzero((image_R == i) & (cell_R[:, 0] >= 0))
            grid = picture_grid(store, tokens, int(rows[0]))
            heat_hw = heat_grid(_codes(model, store.get(rows))[:, c], cell_R[rows], grid)
            source = source_of[i]
            try:
                path = safe_file(root, source)
            except OutsideRoot:
                path = None
            if path is None:
                unreadable[source] = "not in the image folder"
                continue
            try:
                with Image.open(path) as picture:
                    drawing = overlay(picture, heat_hw, peak[i], crop=crop)
            except OSError as exc:
                unreadable[source] = str(exc)
                continue
            drawing.save(folder / f"rank-{rank:02d}.png")
            drawn.append(
                {
                    "rank": rank,
                    "image": i,
                    "source": source,
                    "activation": peak[i],
                    "grid": list(grid),
                    "file": f"concept-{c:05d}/rank-{rank:02d}.png",
                }  # fmt: skip
            )
        listing[str(c)] = drawn
    grid = tokens["grid"]  # None where each picture has its own (in each drawing's entry)
    skipped = [{"source": k, "reason": v} for k, v in sorted(unreadable.items())]
    (out / "heatmaps.json").write_text(json.dumps({"grid": grid, "concepts": listing, "unreadable": skipped}, indent=1))
    return listing
