"""The compiled part of `mmsae.models.kernels.select` (loaded on first use by `mmsae.models.kernels.compiled`).
Defined at module level so numba's on-disk cache is hit: the kernel compiles once per machine, not
once per process."""

import numba
import numpy as np
from numba import types
from numba.extending import overload


def as_keys(row, scratch):  # pragma: no cover - compiled code uses the overloads below
    return row


def midpoint(lo, hi):  # pragma: no cover
    return lo


@overload(as_keys, inline="always")
def _as_keys(row, scratch):
    if isinstance(row.dtype, types.Integer):  # bfloat16 bits: flip the magnitude of negatives (int order = float order)

        def impl(row, scratch):
            for j in range(len(row)):
                v = row[j]
                scratch[j] = v ^ ((v >> 15) & 0x7FFF)
            return scratch

        return impl
    return lambda row, scratch: row


@overload(midpoint, inline="always")
def _midpoint(lo, hi):
    if isinstance(lo, types.Integer):
        return lambda lo, hi: (np.int32(lo) + np.int32(hi)) // 2
    return lambda lo, hi: lo + (hi - lo) * 0.5


@numba.njit(nogil=True, inline="always")
def before(v, i, w, j):  # larger value first, then smaller index
    return v > w or (v == w and i < j)


@numba.njit(parallel=True, nogil=True, cache=True)
def topk_idx(pre, k, C, n_blocks, out_idx):
    B, F = pre.shape
    R = F // C  # chunk c holds the entries c, c + C, c + 2C, ...: its max is an elementwise max of R slices
    short = 0
    for blk in numba.prange(n_blocks):
        scratch = np.empty(F, pre.dtype)
        cmax = np.empty(C, pre.dtype)
        cand_v = np.empty(F, pre.dtype)
        cand_i = np.empty(F, np.int64)
        for b in range(blk * B // n_blocks, (blk + 1) * B // n_blocks):
            keys = as_keys(pre[b], scratch)
            cmax[:] = keys[:C]
            for r in range(1, R):
                np.maximum(cmax, keys[r * C : r * C + C], cmax)
            # t: any value with >= k chunk maxima at or above it (then the top k are all >= t); bisect
            # towards the largest such t, so few entries pass
            lo, hi = cmax.min(), cmax.max()
            for _ in range(16):
                mid = midpoint(lo, hi)
                if not lo < mid < hi:
                    break
                cnt = 0
                for c in range(C):
                    cnt += cmax[c] >= mid
                if cnt >= k:
                    lo = mid
                    if cnt <= k + 4:
                        break
                else:
                    hi = mid
            t = lo
            n = 0
            for c in range(C):
                if cmax[c] >= t:
                    for j in range(c, F, C):
                        v = keys[j]
                        if v >= t:  # insertion sort: n stays ~k
                            p = n
                            while p > 0 and before(v, j, cand_v[p - 1], cand_i[p - 1]):
                                cand_v[p] = cand_v[p - 1]
                                cand_i[p] = cand_i[p - 1]
                                p -= 1
                            cand_v[p] = v
                            cand_i[p] = j
                            n += 1
            if n < k:  # only NaNs get here (they compare false)
                short += 1
                continue
            out_idx[b, :] = cand_i[:k]
    return short
