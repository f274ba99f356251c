"""The sparse decode's gradients against autograd through embedding_bag."""

import pytest
import torch
import torch.nn.functional as F

from mmsae.models.kernels.sparse_decode import decode_csr, decode_topk


def test_decode_topk_gradients_match_embedding_bag():
    g = torch.Generator().manual_seed(0)
    B, D, Fd, K = 37, 11, 64, 5
    W = torch.randn(Fd, D, generator=g, requires_grad=True)
    idx = torch.rand(B, Fd, generator=g).topk(K, dim=1).indices  # unsorted within rows
    val = torch.rand(B, K, generator=g, requires_grad=True)
    target = torch.randn(B, D, generator=g)
    ours = decode_topk(idx, val, W)
    (ours - target).pow(2).sum().backward()
    gW, gv = W.grad.clone(), val.grad.clone()
    W.grad = val.grad = None
    ref = F.embedding_bag(idx, W, per_sample_weights=val, mode="sum")
    (ref - target).pow(2).sum().backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(gW, W.grad)
    torch.testing.assert_close(gv, val.grad)


def test_decode_csr_ragged_rows_match_dense():
    g = torch.Generator().manual_seed(1)
    B, D, Fd = 6, 4, 9
    counts = torch.tensor([0, 3, 1, 0, 5, 2])
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    cols = torch.cat([torch.randperm(Fd, generator=g)[:c].sort().values for c in counts.tolist()])
    vals = torch.rand(len(cols), generator=g, requires_grad=True)
    W = torch.randn(Fd, D, generator=g, requires_grad=True)
    out = decode_csr(crow, cols, vals, W)
    out.square().sum().backward()
    rows = torch.repeat_interleave(torch.arange(B), counts)
    vals2 = vals.detach().clone().requires_grad_(True)
    W2 = W.detach().clone().requires_grad_(True)
    dense = torch.zeros(B, Fd).index_put((rows, cols), vals2)
    ref = dense @ W2
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(W.grad, W2.grad)
    torch.testing.assert_close(vals.grad, vals2.grad)


def _grouped_row_sum_dense(group_N, rows_N, weights_N, src_BD, n_groups):
    """The definition: a [G, B] matrix of summed weights times the rows."""
    M = torch.zeros(n_groups, len(src_BD), dtype=src_BD.dtype)
    M.index_put_((group_N, rows_N), weights_N.to(src_BD.dtype), accumulate=True)
    return M @ src_BD


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grouped_row_sum_compiled_and_torch_paths_match_the_definition(monkeypatch, dtype):
    from mmsae.models.kernels import sparse_decode

    g = torch.Generator().manual_seed(0)
    G, B, N = 50, 30, 400  # many repeats per group, some groups empty
    group_N = torch.randint(0, G - 10, (N,), generator=g)
    rows_N = torch.randint(0, B, (N,), generator=g)
    weights_N = torch.randn(N, generator=g, dtype=dtype)
    src_BD = torch.randn(B, 7, generator=g, dtype=dtype)
    want = _grouped_row_sum_dense(group_N, rows_N, weights_N, src_BD, G)
    if sparse_decode.compiled_kernel("_group_kernel", "group_pairs") is not None:
        torch.testing.assert_close(sparse_decode.grouped_row_sum(group_N, rows_N, weights_N, src_BD, G), want)
    monkeypatch.setattr(sparse_decode, "compiled_kernel", lambda module, name: None)
    torch.testing.assert_close(sparse_decode.grouped_row_sum(group_N, rows_N, weights_N, src_BD, G), want)


def test_grouped_row_sum_rejects_groups_out_of_range():
    from mmsae.models.kernels.sparse_decode import grouped_row_sum

    src = torch.randn(3, 4)
    with pytest.raises(RuntimeError):
        grouped_row_sum(torch.tensor([0, 5]), torch.tensor([0, 1]), torch.ones(2), src, 4)
