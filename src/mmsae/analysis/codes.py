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
from mmsae.metrics.evaluate import routed_encode


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


def sparse_codes(model, x_BD: torch.Tensor, mods_B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r_N, c_N, v_N) of the nonzero codes of `x_BD`, each row through its modality's encoder
    for a paired SAE; numpy on the CPU."""
    if not getattr(model, "paired", False) and hasattr(model, "encode_sparse"):
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
