"""One pass over a store as sparse codes, and the best rows of every concept kept as it goes.

Passes over a whole store (top examples, the explorer's index) need only each row's nonzero
codes. A TopK-family SAE gives them without forming its [B, F] codes (`encode_sparse`); any
other model is encoded densely a block at a time and its nonzeros taken. What consumes the
codes then costs O(nonzeros), not O(B·F): at 1,000,000 rows and F = 16,384 the dense codes are
16·10⁹ numbers, the nonzeros of a k = 64 TopK SAE 64·10⁶.

Shapes: B rows of a block, N nonzero codes of a block (row-major), F concepts, K examples kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mmsae.data.stream import StreamConfig, iter_rows
from mmsae.errors import MmsaeError
from mmsae.metrics.evaluate import routed_encode
from mmsae.models.base import SparseAutoencoder

DENSE_BLOCK_FLOATS = 1 << 26
"""A model without a sparse encoder forms [block, F] dense codes: its blocks hold at most this many
(256 MB of float32; 1,024 rows at F = 65,536)."""


@dataclass(frozen=True)
class CodeBlock:
    """The nonzero codes of one block of store rows."""

    rows_B: np.ndarray
    """Store row ids of the block's rows."""
    mods_B: np.ndarray
    """Each row's modality name."""
    r_N: np.ndarray
    """Position in the block (index into rows_B) of each nonzero code, ascending."""
    c_N: np.ndarray
    """Its concept."""
    v_N: np.ndarray
    """Its value (float32)."""


def sparse_encoder(model) -> bool:
    """Whether the model gives its nonzero codes without forming [B, F] codes (its own
    `encode_sparse`, as the TopK family has); otherwise codes are encoded densely, a block at a time."""
    own = getattr(type(model), "encode_sparse", None)
    return not getattr(model, "paired", False) and own not in (None, SparseAutoencoder.encode_sparse)


@torch.no_grad()
def sparse_codes(model, x_BD: torch.Tensor, mods_B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r_N, c_N, v_N) of the nonzero codes of `x_BD`, each row through its modality's encoder
    for a paired SAE; numpy on the CPU."""
    if sparse_encoder(model):
        r, c, v = model.encode_sparse(x_BD)
    else:
        codes_BF = routed_encode(model, x_BD, mods_B)
        r, c = codes_BF.nonzero(as_tuple=True)
        v = codes_BF[r, c]
    return r.cpu().numpy(), c.cpu().numpy(), v.float().cpu().numpy()


@torch.no_grad()
def code_blocks(
    model,
    store,
    block: int = 4096,
    modalities: tuple[str, ...] | None = None,
    device="cpu",
    progress: bool = False,
    desc: str = "codes",
) -> Iterator[CodeBlock]:
    """The store's rows in order (only `modalities`' when given), `block` rows at a time, as
    their nonzero codes; a progress bar over the store's rows when `progress`."""
    from tqdm.auto import tqdm

    if not sparse_encoder(model):
        block = max(256, min(block, DENSE_BLOCK_FLOATS // model.cfg.dict_size))  # its [block, F] codes are dense
    bar = tqdm(total=len(store), desc=desc, unit="row", unit_scale=True, disable=not progress)
    for rows, mods, x in iter_rows(store, StreamConfig(chunk_rows=max(block, 8192))):
        n_read = len(rows)
        if modalities is not None:
            keep = np.isin(mods, modalities)
            rows, mods, x = rows[keep], mods[keep], x[keep]
        for lo in range(0, len(rows), block):
            m = mods[lo : lo + block]
            r_N, c_N, v_N = sparse_codes(model, torch.as_tensor(x[lo : lo + block], device=device), m)
            order = np.argsort(r_N, kind="stable")  # encoders that already give rows in order cost one pass
            yield CodeBlock(rows[lo : lo + block], m, r_N[order], c_N[order], v_N[order])
        bar.update(n_read)
    bar.close()


class TopTracker:
    """The K largest positive codes of every concept and their rows, kept over a stream of rows
    that arrive in ascending row order; equal values rank by row (the earlier first), as a stable
    sort of the whole column would.

    A code enters only when it beats its concept's current K-th best, so once the lists fill, a
    block costs one comparison per nonzero code; the few that enter are merged with their
    concepts' lists by one sort."""

    def __init__(self, dict_size: int, k: int):
        self.k = k
        self.v_KF = np.zeros((k, dict_size), np.float32)
        """Best values, best first; 0 where a concept has fewer than K positive codes."""
        self.r_KF = np.full((k, dict_size), -1, np.int64)
        """Their rows; -1 where there is none."""

    def add(self, rows_N: np.ndarray, c_N: np.ndarray, v_N: np.ndarray) -> None:
        """Offer codes (store rows, concepts, values), rows not before any offered earlier."""
        enter = v_N > self.v_KF[-1, c_N]
        if not enter.any():
            return
        r, c, v = rows_N[enter], c_N[enter], v_N[enter]
        cols = np.unique(c)
        k = self.k
        all_c = np.concatenate([np.repeat(cols, k), c])
        all_v = np.concatenate([self.v_KF[:, cols].T.ravel(), v])
        all_r = np.concatenate([self.r_KF[:, cols].T.ravel(), r])
        order = np.lexsort((all_r, -all_v, all_c))  # by concept, value descending, then row
        all_c, all_v, all_r = all_c[order], all_v[order], all_r[order]
        rank = np.arange(len(all_c)) - np.searchsorted(all_c, all_c)  # place within its concept
        top = rank < k
        self.v_KF[rank[top], all_c[top]] = all_v[top]
        self.r_KF[rank[top], all_c[top]] = all_r[top]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(activations [K, F], row ids [K, F]), best first; 0 and -1 past a concept's last."""
        return self.v_KF.copy(), np.where(self.v_KF > 0, self.r_KF, -1)


def picture_codes(
    blocks: Iterator[CodeBlock], picture_R: np.ndarray, how: str = "max"
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Codes of a store of patch tokens gathered per picture: (rows_N, c_N, v_N) for the pictures
    completed so far, each (picture, concept) once, valued by the max (or the mean) of its patches'
    codes. Its row is the patch where the concept peaks (max) or the picture's first patch (mean),
    so a picture appears once in a top list and its row still leads to the picture.

    `picture_R` maps every store row to its picture, -1 for rows that are not patches (a class
    token): those are left out. A picture's rows are contiguous and in order, as `mmsae embed`
    writes them; a picture cut by a block waits for the next one."""
    if how not in ("max", "mean"):
        raise ValueError(f"how must be max or mean, got {how!r}")
    patch_R = np.flatnonzero(picture_R >= 0)
    pictures, first = np.unique(picture_R[patch_R], return_index=True)
    if len(pictures) and 1 + np.count_nonzero(np.diff(picture_R[patch_R])) != len(pictures):
        raise MmsaeError("a picture's patch rows are not contiguous in this store: cannot gather them per picture")
    first_row_P = np.full(int(pictures.max()) + 1 if len(pictures) else 0, -1, np.int64)
    first_row_P[pictures] = patch_R[first]
    n_patches_P = np.bincount(picture_R[patch_R], minlength=len(first_row_P))  # zero codes count too
    held_r, held_c, held_v = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    for blk in blocks:
        rows_N = blk.rows_B[blk.r_N]
        patch = picture_R[rows_N] >= 0
        r = np.concatenate([held_r, rows_N[patch]])
        c = np.concatenate([held_c, blk.c_N[patch]])
        v = np.concatenate([held_v, blk.v_N[patch]])
        patch_rows = blk.rows_B[picture_R[blk.rows_B] >= 0]
        if not len(patch_rows):
            held_r, held_c, held_v = r, c, v
            continue
        last = picture_R[patch_rows[-1]]  # may go on in the next block
        done = picture_R[r] != last
        held_r, held_c, held_v = r[~done], c[~done], v[~done]
        yield _gather(r[done], c[done], v[done], picture_R, how, first_row_P, n_patches_P)
    if len(held_r):
        yield _gather(held_r, held_c, held_v, picture_R, how, first_row_P, n_patches_P)


def _gather(r, c, v, picture_R, how, first_row_P, n_patches_P):
    """Each (picture, concept) of these codes once: its max and the patch row holding it, or its
    mean over the picture's patches and the picture's first patch row."""
    if not len(r):
        return r, c, v
    p = picture_R[r]
    if how == "max":
        order = np.lexsort((r, -v, c, p))  # per (picture, concept): the largest first, then the earlier row
        p, c, v, r = p[order], c[order], v[order], r[order]
        first = np.ones(len(p), bool)
        first[1:] = (p[1:] != p[:-1]) | (c[1:] != c[:-1])
        return r[first], c[first], v[first]
    width = int(c.max()) + 1
    keys, inv = np.unique(p * width + c, return_inverse=True)
    kp, kc = keys // width, keys % width
    mean = np.bincount(inv, weights=v) / n_patches_P[kp]
    order = np.argsort(first_row_P[kp], kind="stable")  # rows ascending, as the trackers want them
    return first_row_P[kp][order], kc[order], mean[order].astype(np.float32)


def picture_sparsity(
    model,
    store,
    picture_R: np.ndarray,
    how: str = "max",
    keep_R: np.ndarray | None = None,
    device="cpu",
    progress: bool = False,
) -> dict[str, float | int]:
    """Sparsity of a store of patch tokens counted per picture: a picture fires a concept when its
    max (or mean) over the picture's patches is nonzero, as `mmsae top --per-image` ranks them.
    L0 is concepts per picture, a concept's frequency the share of pictures it fires on; dead and
    dense as for rows (`mmsae.metrics.sparsity`), and the mean of a fired concept's pooled value
    (the one figure that max and mean pooling change). `keep_R` (e.g. a split) leaves rows out; it
    must keep or drop each picture whole, as the pair-id split does."""
    from mmsae.metrics.sparsity import DENSE_FREQUENCY

    picture_R = np.where(keep_R, picture_R, -1) if keep_R is not None else picture_R
    F_ = model.cfg.dict_size
    fired_F = np.zeros(F_, np.int64)
    pairs, total = 0, 0.0
    blocks = code_blocks(model, store, device=device, progress=progress, desc="codes per picture")
    for _, c_N, v_N in picture_codes(blocks, picture_R, how):
        fired_F += np.bincount(c_N, minlength=F_)
        pairs += len(c_N)
        total += float(v_N.sum(dtype=np.float64))
    n = len(np.unique(picture_R[picture_R >= 0]))
    freq_F = fired_F / max(n, 1)
    return {
        "pictures": n,
        "how": how,
        "l0": pairs / n if n else float("nan"),
        "dead_fraction": float((fired_F == 0).mean()),
        "dense_fraction": float((freq_F > DENSE_FREQUENCY).mean()),
        "mean_activation": total / pairs if pairs else float("nan"),
    }


def picture_activations(
    model, store, picture_R: np.ndarray, how: str = "max", device="cpu", progress: bool = False
) -> tuple[np.ndarray, object]:
    """(pictures_P, [P, F] scipy CSR matrix): every picture's activation of every concept, the max
    (or mean) over its patches as `picture_codes` gathers them, in one pass; rows follow the
    ascending picture ids `pictures_P`."""
    import scipy.sparse as sp

    pictures_P = np.unique(picture_R[picture_R >= 0])
    parts_r, parts_c, parts_v = [], [], []
    blocks = code_blocks(model, store, device=device, progress=progress, desc="codes per picture")
    for r_N, c_N, v_N in picture_codes(blocks, picture_R, how):
        parts_r.append(np.searchsorted(pictures_P, picture_R[r_N]))
        parts_c.append(c_N)
        parts_v.append(v_N)
    cat = lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt)  # noqa: E731
    acts = sp.csr_matrix(
        (cat(parts_v, np.float32), (cat(parts_r, np.int64), cat(parts_c, np.int64))),
        shape=(len(pictures_P), int(model.cfg.dict_size)),
    )
    return pictures_P, acts
