"""A TopK encoder whose backward pass costs O(B·K·D) instead of O(B·F·D).

Plain autograd through `topk` sends a dense [B, F] gradient (zero except K entries per row) into
two dense GEMMs: one for ∂W_enc, one for ∂(x − b_dec) that is then summed into ∂b_dec. Only
the K selected latents of each row get a gradient, so:

    ∂b_enc[f]  = Σ_{b,k: idx_bk = f} g_bk                    O(B·K)
    ∂W_enc[:, f] = Σ_{b,k: idx_bk = f} g_bk · (x_b − b_dec)    O(B·K·D), one embedding_bag
    ∂b_dec     = −W_enc ∂b_enc                                 O(F·D)  (b_dec is shared by the batch)

so the encoder forward GEMM is the step's only O(B·F·D) work (decoding already uses
`embedding_bag`). The AuxK selection (top `aux_k` dead latents) comes out of the same forward,
and its gradient joins the same sparse backward. Verified against dense autograd in
tests/models/kernels/test_sparse_encode.py.
"""

from __future__ import annotations

import torch

from mmsae.device import reads_are_free
from mmsae.models.kernels.gemm import linear, onednn_enabled
from mmsae.models.kernels.select import batch_top_n, topk_rows
from mmsae.models.kernels.sparse_decode import group_offsets, grouped_row_sum

_WORKSPACE: dict[tuple, torch.Tensor] = {}
CPU_BLOCK_ROWS = 256
"""Rows per block of the CPU encoder forward. GEMM + selection of B = 4096 rows, D = 512, measured:
F = 4096, k = 32: 56 / 46 / 44-46 / 51 ms with 1024 / 512 / 256 / 128-row blocks; F = 16384,
k = 64: 256 / 260 / 177-194 / 205 ms (oneDNN; a block's pre-activations stay in cache)."""
BF16_BLOCK_BYTES = 8 << 20
"""Where the GEMM runs in bf16 (--select-dtype bfloat16), blocks of this many bytes of output
(256 to 1024 rows): AMX wants taller blocks than fp32 where F is small (docs/performance.md)."""


def _workspace(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A [B, F] pre-activation buffer reused across steps. On CPU a fresh one costs page faults on
    every step (12 ms of a 90 ms GEMM at B = F = 4096); it is never saved for backward."""
    key = (shape, dtype, str(device))
    buf = _WORKSPACE.get(key)
    if buf is None:
        _WORKSPACE.clear()  # one shape at a time: a training run's
        buf = _WORKSPACE[key] = torch.empty(shape, dtype=dtype, device=device)
    return buf


class _TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_BD, W_enc_DF, b_enc_F, b_dec_D, k: int, dead_F, aux_k: int, select_dtype, masked: bool):
        xc_BD = x_BD - b_dec_D
        B, F = len(xc_BD), len(b_enc_F)
        dtype = select_dtype or xc_BD.dtype  # choose the latents in select_dtype, value them in full precision
        # [F, D]: no copy, W_enc is stored that way
        W_FD, b_F, xs_BD = W_enc_DF.to(dtype).T.contiguous(), b_enc_F.to(dtype), xc_BD.to(dtype)
        # AuxK (aux_k = min(aux_k, dead latents) here): among the dead columns, their ids read on
        # the host, or `masked`: among all columns with the live ones at −inf
        dead_idx = dead_F.nonzero().squeeze(1) if dead_F is not None and aux_k > 0 and not masked else None
        # on CPU, blocks of rows: the [rows, F] pre-activations stay in cache for the selection and
        # never take B·F floats; one block on GPU
        rows = CPU_BLOCK_ROWS if dtype != torch.bfloat16 else max(256, min(1024, BF16_BLOCK_BYTES // (2 * F)))
        rows = B if xc_BD.device.type == "cuda" else min(B, rows)
        ws = None if xc_BD.device.type == "cpu" and onednn_enabled() else _workspace((rows, F), dtype, xc_BD.device)
        val_BK, idx_BK = (
            xc_BD.new_empty((B, k), dtype=dtype),
            torch.empty((B, k), dtype=torch.long, device=xc_BD.device),
        )
        A = aux_k if dead_F is not None else 0
        aval_BA, aidx_BA = val_BK.new_empty((B, A)), idx_BK.new_empty((B, A))
        for lo in range(0, B, rows):
            hi = min(lo + rows, B)
            pre_bF = linear(xs_BD[lo:hi], W_FD, b_F, out=None if ws is None else ws[: hi - lo])
            val_BK[lo:hi], idx_BK[lo:hi] = topk_rows(pre_bF, k)
            if A and masked:  # in place: the block's pre-activations are not used again
                aval_BA[lo:hi], aidx_BA[lo:hi] = pre_bF.masked_fill_(~dead_F, float("-inf")).topk(A, dim=1)
            elif A:
                aval_BA[lo:hi], apos = pre_bF.index_select(1, dead_idx).topk(A, dim=1)
                aidx_BA[lo:hi] = dead_idx[apos]
        if select_dtype is not None:
            val_BK, idx_BK = _exact_sorted(xc_BD, W_enc_DF, b_enc_F, idx_BK)
            if A:
                aval_BA, aidx_BA = _exact_sorted(xc_BD, W_enc_DF, b_enc_F, aidx_BA)
        val_BK = val_BK.clamp_min(0)
        aval_BA = aval_BA.clamp_min(0)
        ctx.save_for_backward(xc_BD, W_enc_DF, torch.cat([idx_BK, aidx_BA], 1), torch.cat([val_BK, aval_BA], 1) > 0)
        ctx.mark_non_differentiable(idx_BK, aidx_BA)
        ctx.k = k
        return idx_BK, val_BK, aidx_BA, aval_BA

    @staticmethod
    def backward(ctx, _g_idx, g_val_BK, _g_aidx, g_aval_BA):
        xc_BD, W_enc_DF, idx_BJ, live_BJ = ctx.saved_tensors
        g_BJ = _joint_grad(g_val_BK, g_aval_BA, live_BJ, ctx.k)
        rows_N = torch.arange(len(idx_BJ), device=idx_BJ.device).repeat_interleave(idx_BJ.shape[1])
        return (
            *encoder_grads(ctx.needs_input_grad[:4], xc_BD, W_enc_DF, rows_N, idx_BJ.reshape(-1), g_BJ.reshape(-1)),
            None,
            None,
            None,
            None,
            None,
        )


class _BatchTopKEncode(torch.autograd.Function):
    """BatchTopK: the n largest ReLU'd pre-activations of the whole batch (variable per row)."""

    @staticmethod
    def forward(ctx, x_BD, W_enc_DF, b_enc_F, b_dec_D, n: int, dead_F, aux_k: int):
        xc_BD = x_BD - b_dec_D
        B, F = len(xc_BD), len(b_enc_F)
        pre_BF = linear(xc_BD, W_enc_DF.T, b_enc_F, out=_workspace((B, F), xc_BD.dtype, xc_BD.device)).clamp_min_(0)
        rows_N, cols_N, vals_N = batch_top_n(pre_BF, n)  # by row, latents ascending within a row (CSR order)
        if dead_F is not None and aux_k > 0:  # (the ReLU above does not change the AuxK choice's values)
            dead_idx = dead_F.nonzero().squeeze(1)
            aval_BA, apos_BA = pre_BF.index_select(1, dead_idx).topk(aux_k, dim=1)
            aidx_BA = dead_idx[apos_BA]
        else:
            aidx_BA, aval_BA = cols_N.new_zeros((B, 0)), vals_N.new_zeros((B, 0))
        arows = torch.arange(B, device=x_BD.device).repeat_interleave(aidx_BA.shape[1])
        ctx.save_for_backward(
            xc_BD,
            W_enc_DF,
            torch.cat([rows_N, arows]),
            torch.cat([cols_N, aidx_BA.reshape(-1)]),
            aval_BA.reshape(-1) > 0,
        )
        ctx.mark_non_differentiable(rows_N, cols_N, aidx_BA)
        return rows_N, cols_N, vals_N, aidx_BA, aval_BA

    @staticmethod
    def backward(ctx, _g_rows, _g_cols, g_vals_N, _g_aidx, g_aval_BA):
        xc_BD, W_enc_DF, rows_N, cols_N, alive_M = ctx.saved_tensors
        n = len(rows_N) - len(alive_M)
        g_main = g_vals_N if g_vals_N is not None else xc_BD.new_zeros(n)
        g_aux = g_aval_BA.reshape(-1) * alive_M if g_aval_BA is not None else xc_BD.new_zeros(len(alive_M))
        return (
            *encoder_grads(ctx.needs_input_grad[:4], xc_BD, W_enc_DF, rows_N, cols_N, torch.cat([g_main, g_aux])),
            None,
            None,
            None,
        )


class _ReLUEncode(torch.autograd.Function):
    """Every positive pre-activation (a ReLU SAE's codes) as (row, latent, value) pairs in row order,
    latents ascending within a row, with the same sparse backward: worth it once codes are sparse."""

    @staticmethod
    def forward(ctx, x_BD, W_enc_DF, b_enc_F, b_dec_D):
        xc_BD = x_BD - b_dec_D
        B = len(xc_BD)
        W_FD = W_enc_DF.T.contiguous()
        rows = max(1, B if xc_BD.device.type == "cuda" else min(B, CPU_BLOCK_ROWS))
        parts = []
        for lo in range(0, B, rows):
            pre_bF = linear(xc_BD[lo : lo + rows], W_FD, b_enc_F)
            r, c = (pre_bF > 0).nonzero(as_tuple=True)
            parts.append((r + lo, c, pre_bF[r, c]))
        if not parts:  # no rows
            empty = torch.zeros(0, dtype=torch.long, device=xc_BD.device)
            parts = [(empty, empty, xc_BD.new_zeros(0))]
        rows_N, cols_N, vals_N = (torch.cat(t) for t in zip(*parts, strict=True))
        ctx.save_for_backward(xc_BD, W_enc_DF, rows_N, cols_N)
        ctx.mark_non_differentiable(rows_N, cols_N)
        return rows_N, cols_N, vals_N

    @staticmethod
    def backward(ctx, _g_rows, _g_cols, g_vals_N):
        xc_BD, W_enc_DF, rows_N, cols_N = ctx.saved_tensors
        return encoder_grads(ctx.needs_input_grad[:4], xc_BD, W_enc_DF, rows_N, cols_N, g_vals_N)


def relu_encode(x_BD, W_enc_DF, b_enc_F, b_dec_D):
    """(rows_N, cols_N, vals_N): the positive entries of (x − b_dec) W_enc + b_enc, row by row,
    latents ascending, with a backward that touches only them."""
    return _ReLUEncode.apply(x_BD, W_enc_DF, b_enc_F, b_dec_D)


def encoder_grads(needs: tuple[bool, ...], xc_BD, W_enc_DF, rows_N, cols_N, g_N):
    """Gradients of (x, W_enc, b_enc, b_dec) given ∂L/∂pre at the N selected (row, latent) pairs."""
    D, F = W_enc_DF.shape
    grad_b_enc = torch.zeros(F, dtype=g_N.dtype, device=g_N.device).index_add_(0, cols_N, g_N)
    # each latent's gradient is a weighted sum of the rows that selected it
    grad_W_enc = grouped_row_sum(cols_N, rows_N, g_N, xc_BD, F).T if needs[1] else None
    grad_b_dec = -(W_enc_DF @ grad_b_enc) if needs[3] else None
    grad_x = None
    if needs[0]:  # one embedding_bag over the pairs in row order, not an [N, D] gather
        order = torch.argsort(rows_N, stable=True)
        offsets_B = group_offsets(rows_N[order], len(xc_BD))[:-1]
        grad_x = torch.nn.functional.embedding_bag(
            cols_N[order], W_enc_DF.T.contiguous(), offsets_B, mode="sum", per_sample_weights=g_N[order]
        )
    return grad_x, grad_W_enc, grad_b_enc if needs[2] else None, grad_b_dec


def _exact_sorted(xc_BD, W_enc_DF, b_enc_F, idx_BK):
    """Full-precision pre-activations of the selected latents, re-sorted largest first (so prefixes
    stay TopK selections for Matryoshka). A sampled matrix product (SDDMM over a CSR pattern of
    the selection): O(B·K·D) without materialising the [B, K, D] gather, which is 20× slower."""
    import warnings

    B, K = idx_BK.shape
    cols_BK = idx_BK.sort(dim=1).values  # CSR needs ascending columns within a row
    crow = torch.arange(0, B * K + 1, K, device=idx_BK.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        pattern = torch.sparse_csr_tensor(
            crow, cols_BK.reshape(-1), torch.zeros(B * K, dtype=xc_BD.dtype, device=xc_BD.device), (B, len(b_enc_F))
        )
        val_BK = torch.sparse.sampled_addmm(pattern, xc_BD, W_enc_DF, beta=0.0).values().reshape(B, K)
    val_BK = val_BK + b_enc_F[cols_BK]
    val_BK, order = val_BK.sort(dim=1, descending=True)
    return val_BK, cols_BK.gather(1, order)


def _joint_grad(g_val_BK, g_aval_BA, live_BJ, k: int) -> torch.Tensor:
    """Gradients w.r.t. the selected pre-activations, zero where ReLU clamped them; a None
    gradient (that output was unused) counts as zeros."""
    B, J = live_BJ.shape
    g_val = g_val_BK if g_val_BK is not None else live_BJ.new_zeros((B, k), dtype=g_aval_BA.dtype)
    g_aux = g_aval_BA if g_aval_BA is not None else g_val.new_zeros((B, J - k))
    return torch.cat([g_val, g_aux], 1) * live_BJ


def topk_encode(
    x_BD: torch.Tensor,
    W_enc_DF: torch.Tensor,
    b_enc_F: torch.Tensor,
    b_dec_D: torch.Tensor,
    k: int,
    dead_F: torch.Tensor | None = None,
    aux_k: int = 0,
    select_dtype: torch.dtype | None = None,
    masked: bool | None = None,
):
    """(idx_BK, val_BK, aux_idx_BA, aux_val_BA): the k largest ReLU'd pre-activations of each row
    (largest first) and, when `dead_F` has dead latents and aux_k > 0, the top min(aux_k, n_dead)
    dead ones, with the sparse backward described in the module docstring.

    `select_dtype` (e.g. torch.bfloat16) runs the encoder GEMM in that precision (fp32
    accumulation inside the kernel) to *choose* the latents; their values, and every gradient,
    are then computed in the input's precision. Only near-ties at the k-th place can differ.

    The AuxK selection has min(aux_k, n_dead) columns: counting the dead latents is the one read
    on the host here, made before any of the step's work (on a GPU it waits only for the step
    before; sparsify's step makes the same read). On CPU they are chosen among the dead columns
    (their ids read too, then gathered); elsewhere among all columns with the live ones masked,
    which reads nothing more. `masked` forces either (None: by device)."""
    if masked is None:
        masked = not reads_are_free(x_BD)
    A = 0
    if dead_F is not None and aux_k > 0:
        A = min(aux_k, int(dead_F.sum()))
    return _TopKEncode.apply(x_BD, W_enc_DF, b_enc_F, b_dec_D, k, dead_F if A else None, A, select_dtype, masked)


def batch_topk_encode(
    x_BD: torch.Tensor,
    W_enc_DF: torch.Tensor,
    b_enc_F: torch.Tensor,
    b_dec_D: torch.Tensor,
    n: int,
    dead_F: torch.Tensor | None = None,
    aux_k: int = 0,
):
    """(rows_N, cols_N, vals_N, aux_idx_BA, aux_val_BA): the n largest positive pre-activations of
    the whole batch, ordered by row (BatchTopK, Bussmann et al. 2024), and the per-row AuxK
    selection, with the same sparse backward as `topk_encode`."""
    A = 0
    if dead_F is not None and aux_k > 0:
        A = min(aux_k, int(dead_F.sum()))
    return _BatchTopKEncode.apply(x_BD, W_enc_DF, b_enc_F, b_dec_D, n, dead_F if A else None, A)
