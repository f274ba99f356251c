"""The compiled (numba) kernels, loaded on first use: numba's import and cache lookup cost ~0.2 s,
which commands that never train should not pay. Without numba a kernel is None and its caller
takes the PyTorch path."""

from __future__ import annotations

import functools
import importlib


@functools.cache
def compiled_kernel(module: str, name: str):
    """`name` from `mmsae.models.kernels.<module>`, or None where numba cannot be imported."""
    try:
        return getattr(importlib.import_module(f"mmsae.models.kernels.{module}"), name)
    except ImportError:
        return None
