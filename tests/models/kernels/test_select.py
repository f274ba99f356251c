"""The compiled top-k kernel against a direct reference: a stable descending sort, whose first k
columns are the top k with ties broken towards the smaller index (the kernel's rule)."""

import pytest
import torch

from mmsae.models.kernels import select
from mmsae.models.kernels.select import topk_rows


def reference(pre, k):
    order = torch.sort(pre.float(), dim=1, descending=True, stable=True).indices[:, :k]
    return pre.gather(1, order), order


def test_the_kernel_is_compiled_here():
    assert select.available()  # numba is a dependency: the tests below exercise the kernel, not torch.topk


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,k", [((300, 1024), 8), ((64, 4096), 32), ((50, 512), 16), ((7, 256), 8)])
def test_equals_a_stable_sort(dtype, shape, k):
    g = torch.Generator().manual_seed(shape[1] + k)
    pre = (torch.randn(shape, generator=g) * 3 - 1).to(dtype)  # mostly negative rows too
    v, i = topk_rows(pre, k)
    rv, ri = reference(pre, k)
    assert v.dtype == dtype and i.dtype == torch.long
    assert torch.equal(i, ri)
    assert torch.equal(v, rv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ties_infinities_and_constant_rows(dtype):
    g = torch.Generator().manual_seed(3)
    pre = torch.randint(-2, 3, (200, 512), generator=g).to(dtype)  # many ties at the k-th place
    pre[0] = 1.0  # all equal: the first k indices
    pre[1, 5], pre[2, 300], pre[3] = float("inf"), float("-inf"), float("-inf")
    v, i = topk_rows(pre, 16)
    rv, ri = reference(pre, 16)
    assert torch.equal(i, ri) and torch.equal(v, rv)
    assert i[0].tolist() == list(range(16))


def test_nan_rows_follow_torch_topk():
    pre = torch.randn(20, 512)
    pre[4, :500] = float("nan")
    v, i = topk_rows(pre, 16)
    rv, ri = pre.topk(16, dim=1)
    assert torch.equal(i, ri)
    torch.testing.assert_close(v, rv, equal_nan=True)


def test_shapes_the_kernel_does_not_take_fall_back():
    g = torch.Generator().manual_seed(5)
    for pre, k in [
        (torch.randn(10, 1000, generator=g), 4),  # F not a multiple of the chunk
        (torch.randn(10, 256, generator=g), 12),  # k above half the chunks
        (torch.randn(256, 10, generator=g).T, 2),  # not contiguous along rows
        (torch.randn(10, 512, generator=g).double(), 4),
    ]:
        v, i = topk_rows(pre, k)
        assert torch.equal(v, pre.topk(k, dim=1).values)


def test_one_thread_equals_two():
    pre = torch.randn(333, 2048, generator=torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = topk_rows(pre, 32)[1]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, topk_rows(pre, 32)[1])


def batch_reference(pre, n):
    """BatchTopK's selection written out: a stable descending sort of the flattened positive
    entries (ties to the earlier entry), its first n, back in row-major order."""
    flat = pre.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    order = order[flat[order] > 0][:n].sort().values
    F = pre.shape[1]
    return order // F, order % F, flat[order]


def _batch_calls(monkeypatch):
    """The kernel's answer, and whether the kernel gave it (not the PyTorch fallback)."""
    calls = []
    kernel = select.compiled_kernel("_batch_select_kernel", "batch_top_n")

    def counting(*args):
        out = kernel(*args)
        calls.append(int(out[0]))
        return out

    monkeypatch.setattr(select, "compiled_kernel", lambda m, name: counting if name == "batch_top_n" else None)
    return calls


@pytest.mark.parametrize("shape,n", [((4096, 512), 4096 * 8), ((256, 1024), 256 * 32), ((37, 300), 50), ((5, 64), 1)])
def test_batch_top_n_equals_a_stable_sort(monkeypatch, shape, n):
    calls = _batch_calls(monkeypatch)
    g = torch.Generator().manual_seed(shape[0])
    pre = torch.randn(shape, generator=g) * 2 - 0.5
    for got, want in zip(select.batch_top_n(pre, n), batch_reference(pre, n), strict=True):
        assert torch.equal(got, want)
    assert calls == [0]  # the kernel answered


def test_batch_top_n_ties_go_to_earlier_entries(monkeypatch):
    calls = _batch_calls(monkeypatch)
    g = torch.Generator().manual_seed(1)
    pre = torch.randint(-3, 4, (512, 256), generator=g).float()  # thousands of entries tie at the n-th value
    pre[7] = 0.0
    for n in (1000, 20_000, 512 * 256):  # the last: more than there are positive entries
        for got, want in zip(select.batch_top_n(pre, n), batch_reference(pre, n), strict=True):
            assert torch.equal(got, want)
    assert calls == [0, 0, 0]


def test_batch_top_n_falls_back_when_the_sample_misleads(monkeypatch):
    """The sampled rows (every 9th of 512: the stride is odd) are far larger than the rest: the
    bound they give lets too few entries through, so PyTorch answers, with the same selection."""
    calls = _batch_calls(monkeypatch)
    g = torch.Generator().manual_seed(2)
    pre = torch.rand(512, 128, generator=g)
    pre[::9] += 10.0
    n = 57 * 128 + 500
    rows, cols, vals = select.batch_top_n(pre, n)
    want = batch_reference(pre, n)
    assert calls == [1] and torch.equal(vals.sort().values, want[2].sort().values) and len(rows) == n


def test_batch_top_n_never_selects_nan_on_either_path(monkeypatch):
    """NaN is skipped by the kernel and by the fallback (which a misleading sample forces here)."""
    g = torch.Generator().manual_seed(4)
    pre = torch.rand(512, 128, generator=g)
    pre[::9] += 10.0
    pre.view(-1)[1::37] = float("nan")
    n = 57 * 128 + 500
    calls = _batch_calls(monkeypatch)
    want = batch_reference(torch.nan_to_num(pre, nan=0.0), n)
    got = select.batch_top_n(pre, n)
    assert calls == [1] and len(got[0]) == n and not got[2].isnan().any()
    assert torch.equal(got[2].sort().values, want[2].sort().values)
    small = torch.rand(100, 100, generator=g)
    small[0, :5] = float("nan")
    for got, want in zip(select.batch_top_n(small, 10), batch_reference(torch.nan_to_num(small), 10), strict=True):
        assert torch.equal(got, want)
    assert calls == [1, 0]


def test_batch_top_n_one_thread_equals_two():
    """The kernel runs as many blocks as threads (from torch's count); the answer is the same."""
    pre = torch.randint(-2, 6, (777, 300), generator=torch.Generator().manual_seed(5)).float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = select.batch_top_n(pre, 5000)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, select.batch_top_n(pre, 5000), strict=True):
        assert torch.equal(a, b)
