"""Token-level activations of a vision or text tower: which rows `mmsae embed --layer N --tokens T`
writes.

A pooled embedding is one row per picture in the model's shared space. Patch-level SAEs (as saev
trains them) read the vision tower's residual stream instead: the hidden state after layer N of
every token, one row per token, in the tower's own width. Those rows live in another space than
the pooled ones (no text encoder reads them), so a store holds one or the other, and its manifest
says which (`preprocessing["tokens"]`).

Token positions follow the tower's sequence: with a class token (CLIP, AIMv2-style towers with
one), position 0 is it and positions 1..h·w the patches in reading order; without one (SigLIP),
positions 0..h·w−1 are the patches. Every row records its picture, position and patch grid in the
store's `extra` column, so a concept's activation over a picture can be laid out as a heatmap.

A text tower is read the same way when the input is captions (`--modality text`, or an input with
no pictures): one row per token of each caption (`all`, padding left out) or their mean (`mean`).
Each row records its caption (`text`, the index in the input), position and token (`piece`), and
its text column shows the caption with that token in brackets.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from mmsae.errors import MmsaeError
from mmsae.vectors import unit_rows

TOKEN_MODES = ("cls", "patches", "mean", "all")
"""`cls`: the class token alone; `patches`: every patch token; `mean`: the mean of the patch
tokens (one row per picture); `all`: the class token and every patch."""
TEXT_TOKEN_MODES = ("all", "mean")
"""A caption's tokens: `all`, one row each (padding left out); `mean`, their mean."""
TOWERS = ("vision", "text")
MEAN_POSITION = -1
"""The position recorded for a `mean` row (no single token)."""


@dataclass(frozen=True)
class TokenConfig:
    """Which hidden states of the vision tower become rows."""

    layer: int = -1
    """Hidden state index as transformers counts `output_hidden_states`: 0 is the patch embeddings,
    i the output of layer i; negative numbers count from the end (-1: the last layer's output)."""
    tokens: str = "patches"
    """One of TOKEN_MODES."""
    per_image: int | None = None
    """Keep this many patch tokens per picture, drawn at random (fixed by the picture's index and
    `seed`, so a resumed run draws the same); None keeps every one. The class token is kept."""
    seed: int = 0
    tower: str = "vision"
    """Which tower is read: `vision` (pictures) or `text` (captions)."""

    def __post_init__(self) -> None:
        if self.tower not in TOWERS:
            raise MmsaeError(f"the tower must be one of {', '.join(TOWERS)}, got {self.tower!r}")
        if self.tower == "text":
            if self.tokens not in TEXT_TOKEN_MODES:
                raise MmsaeError(
                    f"--tokens {self.tokens}: captions have no {'class token' if self.tokens == 'cls' else 'patches'}; "
                    f"a text tower's rows are --tokens all (every token) or mean"
                )
            if self.per_image is not None:
                raise MmsaeError("--patches-per-image samples a picture's patches; captions have none")
            return
        if self.tokens not in TOKEN_MODES:
            raise MmsaeError(f"--tokens must be one of {', '.join(TOKEN_MODES)}, got {self.tokens!r}")
        if self.per_image is not None and self.per_image < 1:
            raise MmsaeError(f"--patches-per-image must be positive, got {self.per_image}")
        if self.per_image is not None and self.tokens not in ("patches", "all"):
            raise MmsaeError(f"--patches-per-image samples patch tokens; --tokens {self.tokens} has none to sample")

    def to_json(self) -> dict:
        out = asdict(self)
        if self.tower == "vision":  # as stores recorded it before text towers were read
            del out["tower"]
        return out


@dataclass(frozen=True)
class TokenLayout:
    """How a tower's sequence is laid out (read from the model, checked against its output)."""

    grid: tuple[int, int] | None
    """Patches per column and per row (h, w); None for a tower that sizes the grid per picture
    (SigLIP2: each picture's grid comes with its pixels, its patches first, then padding)."""
    has_cls: bool
    """Whether position 0 is a class token."""
    n_hidden: int
    """Hidden states the tower returns: its layers + 1."""
    width: int
    tower: str = "vision"

    @classmethod
    def of_grid(cls, grid: tuple[int, int], hidden: list) -> TokenLayout:
        """The layout of a fixed-grid tower from its hidden states of one picture: a class token
        when there is one more token than patches; a one-line error when the count fits neither."""
        gh, gw = grid
        T, W = hidden[0].shape[1:]
        if T not in (gh * gw, gh * gw + 1):
            raise MmsaeError(
                f"--layer/--tokens: the vision tower returned {T} tokens for a {gh}×{gw} patch grid; "
                "its layout is not one mmsae reads"
            )
        return cls((gh, gw), T == gh * gw + 1, len(hidden), int(W))

    def check_layer(self, layer: int) -> int:
        """The layer as a non-negative index; a one-line error when it is out of range."""
        if not -self.n_hidden <= layer < self.n_hidden:
            first = "patch" if self.tower == "vision" else "token"
            raise MmsaeError(
                f"--layer {layer} is out of range: the {self.tower} tower has {self.n_hidden - 1} layers "
                f"(use 0 for the {first} embeddings, 1..{self.n_hidden - 1}, or -1..-{self.n_hidden} from the end)"
            )
        return layer % self.n_hidden


def select_tokens(
    hidden_BTW: np.ndarray, layout: TokenLayout, cfg: TokenConfig, image_B: np.ndarray, grids_B=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [R, W], picture [R], position [R]) of a batch of hidden states; picture b of the batch
    is picture `image_B[b]` of the input (its index there also seeds its sample of patches). A tower
    that sizes its grid per picture gives each picture's (h, w) in `grids_B`; its padding is left out."""
    B, T, W = hidden_BTW.shape
    start = 1 if layout.has_cls else 0
    if layout.grid is not None and T != start + layout.grid[0] * layout.grid[1]:
        raise MmsaeError(
            f"the vision tower returned {T} tokens, not {start + layout.grid[0] * layout.grid[1]} "
            f"({layout.grid[0]}×{layout.grid[1]} patches{' and a class token' if layout.has_cls else ''}): "
            "pictures of another size than its own?"
        )
    if cfg.tokens == "cls" and not layout.has_cls:
        raise MmsaeError("--tokens cls: this vision tower has no class token; use patches, mean or all")
    rows, image, pos = [], [], []
    for b in range(B):
        h_TW = hidden_BTW[b]
        gh, gw = layout.grid if layout.grid is not None else (int(g) for g in grids_B[b])
        n_patch = gh * gw
        if start + n_patch > T:
            raise MmsaeError(f"the vision tower returned {T} tokens for a {gh}×{gw} patch grid")
        if cfg.tokens == "mean":
            rows.append(h_TW[start : start + n_patch].mean(0, keepdims=True))
            image.append(int(image_B[b]))
            pos.append(MEAN_POSITION)
            continue
        keep: list[int] = []
        if cfg.tokens in ("cls", "all") and layout.has_cls:
            keep.append(0)
        if cfg.tokens in ("patches", "all"):
            patches = np.arange(start, start + n_patch)
            if cfg.per_image is not None and cfg.per_image < n_patch:
                rng = np.random.default_rng((cfg.seed, int(image_B[b])))
                patches = np.sort(rng.choice(patches, cfg.per_image, replace=False))
            keep.extend(int(p) for p in patches)
        rows.append(h_TW[keep])
        image.extend([int(image_B[b])] * len(keep))
        pos.extend(keep)
    return np.concatenate(rows), np.asarray(image, dtype=np.int64), np.asarray(pos, dtype=np.int64)


def token_extra(image: int, position: int, layout: TokenLayout, grid=None) -> str:
    """The `extra` metadata of one token row: its picture (index in the input), its position in the
    tower's sequence, the patch's grid cell (absent for the class token and a mean) and the grid (the
    tower's, or `grid`, the picture's own, where the tower sizes it per picture)."""
    position = int(position)
    gh, gw = (int(g) for g in (layout.grid if layout.grid is not None else grid))
    out: dict = {"image": int(image), "token": position, "grid": [gh, gw]}
    patch = position - (1 if layout.has_cls else 0)
    if position != MEAN_POSITION and 0 <= patch < gh * gw:
        out["cell"] = [patch // gw, patch % gw]
    return json.dumps(out)


class TokenBackend:
    """A vision-language backend read at one layer of its vision (or text) tower: `embed` writes its
    rows (several per picture or caption) instead of the pooled embeddings. It has the backend's spec
    (so the store records which model made it) and a model id of its own, so its stores never mix
    with pooled ones."""

    text_only = False

    def __init__(self, inner, cfg: TokenConfig):
        self.inner, self.cfg = inner, cfg
        if cfg.tower == "text":
            if not hasattr(inner, "text_hidden"):
                raise MmsaeError(
                    f"--layer/--tokens on captions read the text tower of a transformers model (--model hf:...); "
                    f"{inner.model_id} is not one"
                )
            self.modalities = ("text",)
            self.layout = inner.text_layout()
        else:
            if inner.text_only:
                raise MmsaeError(f"--tokens reads a vision tower; {inner.model_id} is a text-only encoder")
            self.modalities = ("image",)
            self.layout = inner.token_layout()
        self.layer = self.layout.check_layer(cfg.layer)
        if cfg.tokens == "cls" and not self.layout.has_cls:
            raise MmsaeError("--tokens cls: this vision tower has no class token; use patches, mean or all")
        self.spec, self.device, self.precision = inner.spec, inner.device, inner.precision
        self.dim = self.layout.width

    @property
    def model_id(self) -> str:
        return f"{self.inner.model_id}#{self.cfg.tower}-layer-{self.layer}/{self.cfg.tokens}"

    def preprocessing(self) -> dict:
        """What the manifest records (`preprocessing["tokens"]`): how the rows were read."""
        out = {**self.cfg.to_json(), "layer_index": self.layer}
        if self.cfg.tower == "vision":  # grid None: each picture's own, in its rows' extra
            grid = None if self.layout.grid is None else list(self.layout.grid)
            out.update(grid=grid, has_cls=self.layout.has_cls, centre_crop=self.inner.centre_crops())
        return out

    def image_transform(self):
        return self.inner.image_transform()

    def image_rows(self, pixels, image_B, normalize: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows [R, W], picture [R], extra metadata [R]) of a batch of pictures, picture b being
        picture `image_B[b]` of the input."""
        hidden_BTW = self.inner.vision_hidden(pixels, self.layer)
        grids_B = None if self.layout.grid is not None else self.inner.vision_grids(pixels)
        rows, image, pos = select_tokens(hidden_BTW, self.layout, self.cfg, np.asarray(image_B), grids_B)
        if normalize:
            rows = unit_rows(rows)
        grid_of = {int(i): g for i, g in zip(image_B, grids_B)} if grids_B is not None else {}
        extra = [token_extra(i, p, self.layout, grid_of.get(int(i))) for i, p in zip(image, pos)]
        return rows.astype(np.float32), image, extra

    def text_rows(
        self, texts: list[str], text_B, normalize: bool
    ) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """(rows [R, W], position in the batch [R], extra metadata [R], text [R]) of a batch of
        captions, caption b being caption `text_B[b]` of the input (what `extra` records); each row's
        text is its caption with the token in brackets (a mean row: the caption)."""
        hidden_BTW, real_B, pieces, spans = self.inner.text_hidden(texts, self.layer)
        rows, caption, extra, shown = [], [], [], []
        for b, text in enumerate(texts):
            at = np.asarray(real_B[b])  # the caption's real tokens in the padded sequence, in order
            n = len(at)
            if self.cfg.tokens == "mean":
                rows.append(hidden_BTW[b, at].mean(0, keepdims=True))
                caption.append(b)
                extra.append(json.dumps({"text": int(text_B[b]), "token": MEAN_POSITION}))
                shown.append(text)
                continue
            rows.append(hidden_BTW[b, at])
            for t in range(n):
                caption.append(b)
                extra.append(json.dumps({"text": int(text_B[b]), "token": t, "piece": pieces[b][t]}))
                lo, hi = spans[b][t] if spans is not None else (0, 0)
                shown.append(f"{text[:lo]}[{text[lo:hi]}]{text[hi:]}" if hi > lo else f"[{pieces[b][t]}] {text}")
        out = np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32)
        if normalize:
            out = unit_rows(out)
        return out.astype(np.float32), np.asarray(caption, dtype=np.int64), extra, shown
