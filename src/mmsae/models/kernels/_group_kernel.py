"""The compiled part of `mmsae.models.kernels.sparse_decode.grouped_row_sum` (loaded by
`mmsae.models.kernels.compiled`; module level, so numba's on-disk cache is hit)."""

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def group_pairs(group_N, n_groups, rows_N, weights_N, offsets_G1, rows_out_N, weights_out_N) -> bool:
    """Stable counting sort of the (row, weight) pairs by group: O(N + G) where a comparison sort
    is O(N log N) and needs two more gathers. False (nothing written) if a group is out of range."""
    counts = np.zeros(n_groups + 1, np.int64)
    for n in range(len(group_N)):
        g = group_N[n]
        if g < 0 or g >= n_groups:
            return False
        counts[g + 1] += 1
    for g in range(n_groups):
        counts[g + 1] += counts[g]
    offsets_G1[:] = counts
    for n in range(len(group_N)):
        g = group_N[n]
        at = counts[g]
        rows_out_N[at] = rows_N[n]
        weights_out_N[at] = weights_N[n]
        counts[g] = at + 1
    return True
