"""The compiled part of `mmsae.models.kernels.select.batch_top_n` (loaded on first use by
`mmsae.models.kernels.compiled`). Module-level so numba's on-disk cache is hit."""

import numba
import numpy as np

SAMPLE_ROWS = 64
"""Rows read to estimate a lower bound of the batch's n-th largest value."""
MARGIN = 1.25
"""How far below the sample's estimate the bound is set: a quarter more candidates than needed,
where the sample's count varies by ~1% (64 rows of 4096 latents hold ~2,000 of the n)."""


@numba.njit(nogil=True, inline="always")
def _kept(v, t):
    return v >= t and v > 0  # NaN never (the PyTorch path drops it too)


@numba.njit(parallel=True, nogil=True, cache=True)
def batch_top_n(pre, n, n_blocks):  # pragma: no cover - compiled
    """(status, rows, cols, vals): the n largest positive entries of `pre` [B, F] (all positive
    ones when fewer), in row-major order, ties at the n-th value going to the earlier entries.
    status 0: done; 1: the bound from the sample let too few or too many entries through (the
    caller then takes the PyTorch path)."""
    B, F = pre.shape
    empty_i = np.empty(0, np.int64)
    empty_v = np.empty(0, pre.dtype)
    # 1. a lower bound t of the n-th largest value, from a sample of whole rows
    step = max(1, B // SAMPLE_ROWS) | 1  # odd: rows with a power-of-two period do not line up with it
    n_sampled = (B + step - 1) // step
    sample = np.empty(n_sampled * F, pre.dtype)
    m = 0
    for b in range(0, B, step):
        for j in range(F):
            v = pre[b, j]
            if _kept(v, 0.0):
                sample[m] = v
                m += 1
    want = int(n * n_sampled / B * MARGIN) + 64
    t = 0.0
    if m > want:
        t = np.partition(sample[:m], m - want)[m - want]
    passing = 0  # sampled entries ≥ t: at least `want`, more where many tie at t
    for i in range(m):
        passing += sample[i] >= t
    # 2. every entry ≥ t, block by block in row order (so their concatenation is in flat order);
    # the buffers are twice the expected size, and only the part written is ever touched
    cap = int(2 * passing * (B / n_sampled) / n_blocks) + 2 * F + 1024
    cand_i = np.empty((n_blocks, cap), np.int64)
    cand_v = np.empty((n_blocks, cap), pre.dtype)
    counts = np.zeros(n_blocks, np.int64)
    for blk in numba.prange(n_blocks):
        c = 0
        for b in range(blk * B // n_blocks, (blk + 1) * B // n_blocks):
            for j in range(F):
                v = pre[b, j]
                if _kept(v, t):
                    if c < cap:
                        cand_i[blk, c] = b * F + j
                        cand_v[blk, c] = v
                    c += 1
        counts[blk] = c
    total = counts.sum()
    if counts.max() > cap or (t > 0.0 and total < n):
        return 1, empty_i, empty_i, empty_v
    idx = np.empty(total, np.int64)
    val = np.empty(total, pre.dtype)
    p = 0
    for blk in range(n_blocks):
        idx[p : p + counts[blk]] = cand_i[blk, : counts[blk]]
        val[p : p + counts[blk]] = cand_v[blk, : counts[blk]]
        p += counts[blk]
    # 3. the exact n-th largest value T among the candidates: all above it, the first ties at it
    if total > n:
        T = np.partition(val, total - n)[total - n]
        above = 0
        for i in range(total):
            above += val[i] > T
        ties = n - above
        keep = 0
        for i in range(total):
            v = val[i]
            if v > T or (v == T and ties > 0):
                if v == T:
                    ties -= 1
                idx[keep] = idx[i]
                val[keep] = v
                keep += 1
        idx, val = idx[:keep], val[:keep]
    return 0, idx // F, idx % F, val
