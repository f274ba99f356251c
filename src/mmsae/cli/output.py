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


def positive_int(text: str) -> int:
    v = _number(int, text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive (at least 1), got {v}")
    return v


def nonneg_int(text: str) -> int:
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def finite_float(text: str) -> float:
    return _number(float, text)


def nonneg_float(text: str) -> float:
    v = _number(float, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def positive_float(text: str) -> float:
    v = _number(float, text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def fraction(text: str) -> float:
    """A share strictly between 0 and 1."""
    v = _number(float, text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {v}")
    return v


def unit_float(text: str) -> float:
    """A number in [0, 1]."""
    v = _number(float, text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {v}")
    return v
