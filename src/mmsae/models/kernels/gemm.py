"""The encoder's dense GEMM, on CPU through oneDNN rather than MKL.

PyTorch's CPU `addmm` calls MKL, which runs its AVX2 kernels on AMD processors. On this project's
CI machine (AMD EPYC with AVX-512) one 1024-row block of issue 8's encoder forward
(1024 × 512 → 4096, fp32) took 20 ms through MKL and 9.5 ms through oneDNN's matmul, the kernel
PyTorch itself uses for CPU linear layers under torch.compile (`torch.ops.mkldnn._linear_pointwise`).
Both are IEEE fp32 with fp32 accumulation: against float64 the largest error on that block was
2.4e-6 (MKL) and 6.0e-6 (oneDNN), where bfloat16 would give 3e-2; tests/models/kernels/test_gemm.py.

The op is private and has no autograd formula, so it is used only where no gradient flows through
it (the sparse encoders' forward, inference), and any failure falls back to addmm for the rest of
the process. `MMSAE_CPU_GEMM=mkl` forces addmm everywhere (to compare the two).
"""

from __future__ import annotations

import os
import warnings

import torch

_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)
_broken = False
BLOCK_BYTES = 16 << 20
"""Size of one block's output where `linear` writes into a buffer through oneDNN."""


def onednn_enabled() -> bool:
    """Whether CPU GEMMs without autograd go through oneDNN in this process."""
    return (
        not _broken
        and os.environ.get("MMSAE_CPU_GEMM", "auto").lower() != "mkl"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def linear(
    x_BD: torch.Tensor, W_FD: torch.Tensor, b_F: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x_BD @ W_FDᵀ + b_F, [B, F], with W in nn.Linear's [out, in] layout (x may have other
    leading dims than B; those take the addmm path).

    With `out` (a [B, F] buffer reused across calls) the result is written there: a fresh [B, F]
    output of tens of MB costs page faults on every call. oneDNN cannot write into a given
    buffer, so it then runs in blocks of rows (16 MB outputs that the allocator reuses), each
    copied in: 41 ms against 53 ms for one fresh 4096 × 4096 output, measured."""
    tensors = (x_BD, W_FD) if b_F is None else (x_BD, W_FD, b_F)
    if (
        x_BD.device.type == "cpu"
        and x_BD.dim() == 2
        and x_BD.dtype in _ONEDNN_DTYPES
        and all(t.dtype == x_BD.dtype for t in tensors)
        and (out is None or out.dtype == x_BD.dtype)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and onednn_enabled()
    ):
        try:
            W_FD = W_FD.contiguous()
            if out is None:
                return torch.ops.mkldnn._linear_pointwise(x_BD, W_FD, b_F, "none", [], "")
            rows = max(1, BLOCK_BYTES // (W_FD.shape[0] * x_BD.element_size()))
            for lo in range(0, len(x_BD), rows):
                out[lo : lo + rows].copy_(
                    torch.ops.mkldnn._linear_pointwise(x_BD[lo : lo + rows], W_FD, b_F, "none", [], "")
                )
            return out
        except RuntimeError as exc:  # a build or CPU where the op does not run: MKL from now on
            global _broken
            _broken = True
            warnings.warn(f"oneDNN matmul failed ({exc}); using addmm", RuntimeWarning, stacklevel=2)
    if out is None:
        return torch.nn.functional.linear(x_BD, W_FD, b_F)  # any leading dims, autograd
    if b_F is None:
        return torch.mm(x_BD, W_FD.T, out=out)
    return torch.addmm(b_F, x_BD, W_FD.T, out=out)
