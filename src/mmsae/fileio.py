"""Writing files so that a crash, a kill or a full disk never leaves a half-written one, and JSON
that every parser reads.

Every file mmsae writes in place of an older one goes through `atomic_write`: the bytes go to a
temporary file beside the target (same filesystem, so the rename is atomic), are fsynced, then
renamed over the target. A reader sees the old file or the new one, never a mix; a failed write
removes its temporary file and raises a one-line `MmsaeError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from mmsae.errors import MmsaeError

TMP_MARK = ".tmp-"
"""Part of every temporary file's name (`.NAME.tmp-PID`); a writer's clean-up removes stale ones."""


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], None]) -> Path:
    """Replace `path` with `data` (bytes, text, or a function that writes the given temporary path)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        if callable(data):
            data(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MmsaeError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def atomic_write_stream(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """`atomic_write` for writers that take an open binary file (torch.save, np.save). Some of
    them turn a failed write into their own error (torch's zip writer: "unexpected pos"); the
    file they get remembers the OS error, so a full disk still reads as a full disk."""

    def _to(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            rec = _Recording(f)
            try:
                write(rec)
            except Exception:
                if rec.error is not None:
                    raise rec.error from None
                raise

    return atomic_write(path, _to)


class _Recording:
    def __init__(self, f: BinaryIO):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float as None and numpy/torch scalars and arrays as Python values:
    strict JSON (RFC 8259 has no NaN or Infinity), which `json.dumps` alone does not give."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return json_safe(obj.tolist())
    if isinstance(obj, os.PathLike):
        return str(obj)
    try:
        return json_safe(float(obj))
    except (TypeError, ValueError):
        return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, dumps(obj))


def remove_stale_tmp(folder: Path) -> None:
    """Temporary files a killed writer left in `folder` (call only while no other writer can run)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name:
                p.unlink(missing_ok=True)
