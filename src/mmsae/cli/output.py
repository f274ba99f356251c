"""What every command shares at the edge: JSON on stdout, and argument types that refuse a bad
value while parsing (one line, exit 2) instead of deep inside the work."""

from __future__ import annotations

import argparse
import math

from mmsae.fileio import dumps


def print_json(obj) -> None:
    """Strict JSON: a non-finite number prints as null, never as a bare NaN no parser accepts."""
    print(dumps(obj))


def _number(kind, text: str):
    try:
        v = kind(text)
    except (TypeError, ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _checked(kind, name: str, ok, what: str):
    """An argparse type: a finite number of `kind` for which `ok` holds, else "must be WHAT"."""

    def parse(text: str):
        v = _number(kind, text)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
        return v

    parse.__name__ = name
    return parse


positive_int = _checked(int, "positive_int", lambda v: v > 0, "positive (at least 1)")
nonneg_int = _checked(int, "nonneg_int", lambda v: v >= 0, "0 or more")
finite_float = _checked(float, "finite_float", lambda v: True, "finite")
nonneg_float = _checked(float, "nonneg_float", lambda v: v >= 0, "0 or more")
positive_float = _checked(float, "positive_float", lambda v: v > 0, "positive")
fraction = _checked(float, "fraction", lambda v: 0 < v < 1, "between 0 and 1")
"""A share strictly between 0 and 1."""
unit_float = _checked(float, "unit_float", lambda v: 0 <= v <= 1, "in [0, 1]")
