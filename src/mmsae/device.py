"""Turning a `--device` value into a torch device, with one message when CUDA is asked for and absent."""

from __future__ import annotations

import torch

from mmsae.errors import MmsaeError


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise MmsaeError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MmsaeError(f"--device {name}: no CUDA device is available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MmsaeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise MmsaeError(f"--device {name}: mmsae runs on cpu or cuda")
    return device


def reads_are_free(where: torch.device | torch.Tensor | str) -> bool:
    """Whether the host may read tensor values there at no cost. On the CPU it may. On a GPU a
    read (`.item()`, `bool(t)`, a shape that depends on values, as `nonzero`'s) waits until the
    device has run every queued kernel, so code run every training step reads nothing there and
    sizes its work without looking (tests/train/test_host_syncs.py counts such reads)."""
    device = where.device if isinstance(where, torch.Tensor) else torch.device(where)
    return device.type == "cpu"
