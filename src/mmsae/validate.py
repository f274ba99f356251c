"""Checks shared by the configs' `__post_init__`: every option is refused where it is defined, so
the CLI, config files and the Python API get the same one-line errors.

A config file can say `batch_size = true` or `lr = "fast"`, and Python would take both (True is
an int); `check_types` holds each field to its annotation first, then each config checks ranges.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mmsae.errors import MmsaeError

_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _matches(value: Any, annotation: str) -> bool:
    for alt in (a.strip() for a in annotation.split("|")):
        if alt == "None":
            if value is None:
                return True
        elif alt.startswith("tuple["):
            inner = alt[len("tuple[") :].split(",")[0].strip()
            if isinstance(value, tuple) and all(_matches(v, inner) for v in value):
                return True
        elif alt in _SCALARS:
            if isinstance(value, bool) and alt != "bool":
                continue  # True is an int to Python, not to a user
            if alt == "float" and isinstance(value, int):
                return True
            if isinstance(value, _SCALARS[alt]):
                return True
        else:
            return True  # a type this checker does not know: the config checks it itself
    return False


def check_types(cfg: Any) -> None:
    """Each field's value against its annotation (ints are accepted where floats are wanted)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if not _matches(value, annotation):
            raise MmsaeError(f"option {f.name} must be {annotation.replace('|', 'or')}, got {value!r}")


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_all(checks: list[tuple[bool, str]]) -> None:
    for ok, msg in checks:
        if not ok:
            raise MmsaeError(msg)
