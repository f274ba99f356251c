"""Exact top k of each row on CPU, in a compiled kernel (and BatchTopK's top n of a whole batch,
`batch_top_n`, below).

After the encoder GEMM, choosing each row's k largest pre-activations is the largest cost of a
CPU TopK step: `torch.topk` runs a partial sort per row at ~5 ns an entry (21 ms of a 135 ms step
at B = F = 4096). The kernel reads a row once as F / `chunk` interleaved chunks (chunk c holds
entries c, c + C, c + 2C, …, so their maxima are an elementwise maximum of contiguous slices) and
keeps each chunk's maximum. Any t with at least k chunk maxima ≥ t is a lower bound of the row's
k-th largest value (those chunks each hold an entry ≥ t), so every member of the top k is ≥ t and
lies in a chunk whose maximum is ≥ t. A bisection over the maxima finds such a t with only a few
more than k maxima above it; only those chunks are read again, and the entries ≥ t among them
(~k + a few) are insertion-sorted. Ties are broken towards the smaller index, so the
choice is deterministic. The result is the same selection as `torch.topk` up to the order of
tied entries (tests/models/kernels/test_select.py).

bfloat16 rows are read as int16 bit patterns mapped to integers of the same order (numba has no
bfloat16), so a bf16 GEMM's output is selected without a conversion pass. On other devices (CUDA's
topk is already a radix select), for other dtypes, and where numba cannot be imported, this is
`torch.topk`.
"""

from __future__ import annotations

import torch

from mmsae.models.kernels.compiled import compiled_kernel

CHUNK = 16
"""Entries per chunk: 16 fp32 values are one 64-byte cache line."""


def available() -> bool:
    """Whether the compiled kernel can be used (numba is installed)."""
    return compiled_kernel("_select_kernel", "topk_idx") is not None


def topk_rows(pre_BF: torch.Tensor, k: int, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest entries of each row, largest first, as `torch.topk(k, 1)`."""
    B, F = pre_BF.shape
    cpu = pre_BF.device.type == "cpu" and pre_BF.dtype in (torch.float32, torch.bfloat16)
    kernel = compiled_kernel("_select_kernel", "topk_idx") if cpu else None
    n_chunks = F // chunk
    if kernel is None or F % chunk or not 0 < k <= n_chunks // 2 or pre_BF.stride(1) != 1 or B == 0:
        return pre_BF.topk(k, dim=1)
    import numba

    rows = pre_BF.view(torch.int16) if pre_BF.dtype == torch.bfloat16 else pre_BF
    idx_BK = torch.empty((B, k), dtype=torch.long)
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    if kernel(rows.numpy(), k, n_chunks, threads, idx_BK.numpy()):
        return pre_BF.topk(k, dim=1)  # NaN in a row: torch.topk's rule (NaN counts as largest)
    return pre_BF.gather(1, idx_BK), idx_BK


def batch_top_n(pre_BF: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows_N, cols_N, vals_N): the n largest positive entries of the whole [B, F] block (all
    positive ones when fewer), in row-major order: BatchTopK's selection.

    `torch.topk` over the B·F flattened values is a single-threaded partial sort on CPU, and its
    result must then be sorted back into row order (docs/performance.md#batchtopk-selection).
    The compiled kernel (`_batch_select_kernel`) instead reads about 64 rows to bound the n-th
    largest value from below, collects every entry above the bound in one parallel pass (in
    row-major order already), and finds the exact n-th value among those few candidates; ties
    at it go to the earlier entries. Elsewhere, for other dtypes, without numba, or when the
    bound misses (a sample unlike the batch), it is `torch.topk`."""
    B, F = pre_BF.shape
    cpu = pre_BF.device.type == "cpu" and pre_BF.dtype == torch.float32 and pre_BF.is_contiguous()
    kernel = compiled_kernel("_batch_select_kernel", "batch_top_n") if cpu and B and n > 0 else None
    if kernel is not None:
        import numba

        threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(threads)
        status, rows, cols, vals = kernel(pre_BF.detach().numpy(), n, threads)
        if status == 0:
            return torch.from_numpy(rows), torch.from_numpy(cols), torch.from_numpy(vals)
    flat = pre_BF.reshape(-1)
    flat = torch.where(flat > 0, flat, 0)  # NaN out of the running: topk ranks it above everything
    flat_val, flat_idx = torch.topk(flat, min(n, B * F), sorted=False)
    keep = flat_val > 0
    flat_val, flat_idx = flat_val[keep], flat_idx[keep]
    order = torch.argsort(flat_idx)  # row-major: by row, latents ascending within a row (CSR order)
    return flat_idx[order] // F, flat_idx[order] % F, flat_val[order]
