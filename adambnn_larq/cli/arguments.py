"""What the command groups share: argparse types for numbers, the error of a bad option."""

from __future__ import annotations

import argparse
import math

from adambnn_larq.errors import AdambnnError


class CommandError(AdambnnError):
    """A mistake only the command line can make (e.g. two options that exclude each other)."""


def _number(text: str, kind: type, minimum: float | None, strict: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _number(text, int, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _number(text, int, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _number(text, float, 0, strict=True)


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _number(text, float, 0)


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan, no inf)."""
    return _number(text, float, None)
