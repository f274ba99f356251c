"""Turning a `--device` value into a torch device, with one message when CUDA is asked for and absent."""

from __future__ import annotations

import torch

from mmsae.errors import MmsaeError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MmsaeError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return torch.device(name)
