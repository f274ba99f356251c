"""The encoder GEMM: oneDNN and addmm agree with a float64 reference, autograd keeps addmm."""

import pytest
import torch

from mmsae.models.kernels import gemm
from mmsae.models.kernels.gemm import linear, onednn_enabled


def _ref(x, W, b):
    out = x.double() @ W.double().T
    return out if b is None else out + b.double()


@pytest.mark.parametrize("backend", ["auto", "mkl"])
@pytest.mark.parametrize("shape", [(1, 3, 5), (7, 33, 65), (300, 512, 100)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_float64(monkeypatch, backend, shape, bias):
    monkeypatch.setenv("MMSAE_CPU_GEMM", backend)
    B, D, F = shape
    g = torch.Generator().manual_seed(B + D + F)
    x, W, b = torch.randn(B, D, generator=g), torch.randn(F, D, generator=g) / D**0.5, torch.randn(F, generator=g)
    b = b if bias else None
    out = linear(x, W, b)
    assert out.shape == (B, F) and out.dtype == torch.float32
    # fp32 accumulation: errors of order D·eps·|x||w|, far below bfloat16's 2^-8
    torch.testing.assert_close(out.double(), _ref(x, W, b), rtol=1e-5, atol=1e-5 * D**0.5)


def test_noncontiguous_operands_and_out_buffer(monkeypatch):
    x = torch.randn(64, 1024)[:, ::2]  # strided rows
    W_DF = torch.randn(48, 512).T  # a [D, F] view of [F, D] storage, as SAEs store W_enc
    ref = _ref(x, W_DF.T, None)
    for backend in ("auto", "mkl"):
        monkeypatch.setenv("MMSAE_CPU_GEMM", backend)
        buf = torch.empty(64, 48)
        out = linear(x, W_DF.T, None, out=buf)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
        assert out.data_ptr() == buf.data_ptr()


def test_bfloat16():
    g = torch.Generator().manual_seed(0)
    x, W, b = torch.randn(32, 64, generator=g), torch.randn(16, 64, generator=g), torch.randn(16, generator=g)
    out = linear(x.bfloat16(), W.bfloat16(), b.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), _ref(x.bfloat16(), W.bfloat16(), b.bfloat16()), rtol=2e-2, atol=0.2)


def test_autograd_takes_addmm():
    x = torch.randn(8, 16)
    W = torch.randn(4, 16, requires_grad=True)
    out = linear(x, W, None)
    assert out.grad_fn is not None
    out.sum().backward()
    torch.testing.assert_close(W.grad, x.sum(0).expand(4, 16))


def test_failure_falls_back_to_addmm(monkeypatch):
    if not onednn_enabled():
        pytest.skip("oneDNN is not available in this torch build")

    def broken(*args):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    monkeypatch.setattr(gemm, "_broken", False)
    x, W = torch.randn(5, 7), torch.randn(3, 7)
    with pytest.warns(RuntimeWarning, match="oneDNN matmul failed"):
        out = linear(x, W)
    torch.testing.assert_close(out, x @ W.T)
    assert not onednn_enabled()  # for the rest of the process (restored by monkeypatch)


def test_out_buffer_in_blocks(monkeypatch):
    """Into a buffer, oneDNN runs block by block: every block lands where it belongs."""
    monkeypatch.setattr(gemm, "BLOCK_BYTES", 7 * 4 * 10)  # 7 rows of F = 10 floats per block
    x, W, b = torch.randn(30, 6), torch.randn(10, 6), torch.randn(10)
    buf = torch.full((30, 10), float("nan"))
    out = linear(x, W, b, out=buf)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(out.double(), _ref(x, W, b), rtol=1e-5, atol=1e-5)
