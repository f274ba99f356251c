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
