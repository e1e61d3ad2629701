"""What the command groups share: argparse types for numbers, the error of a bad option."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from adambnn_larq.errors import AdambnnError


class CommandError(AdambnnError):
    """A mistake only the command line can make (e.g. two options that exclude each other)."""


#: Upper bounds of counts on the command line: far above any sensible use, low enough that a
#: typo (an extra digit or two) is refused at once instead of running for days.
MAX_RUNS = 100_000  # timed or warm-up runs of a benchmark
MAX_SAMPLES = 100_000  # inputs to verify (ImageNet's validation split has 50,000)
MAX_IMAGES = 100_000_000  # images to evaluate (ImageNet's training split has 1.3 million)
MAX_BATCH = 65_536
MAX_THREADS = 1024
MAX_JOBS = 256  # processes or logical devices
MAX_STEPS = 1_000_000
MAX_SIZE = 8192  # pixels of a square input
MAX_CLASSES = 1_000_000
#: numpy's and TensorFlow's seeds are 32-bit.
MAX_SEED = 2**32 - 1


def _number(
    text: str,
    kind: type,
    minimum: float | None,
    strict: bool = False,
    maximum: float | None = None,
) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be <= {maximum:,}, got {text}")
    return value


def int_in(minimum: int, maximum: int) -> Callable[[str], int]:
    """argparse type: an int in [minimum, maximum]."""

    def parse(text: str) -> int:
        return _number(text, int, minimum, maximum=maximum)

    parse.__name__ = "int"
    return parse


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    return _number(text, float, 0, maximum=1)


def seed(text: str) -> int:
    """argparse type: a seed numpy and TensorFlow accept, in [0, 2**32 - 1]."""
    return _number(text, int, 0, maximum=MAX_SEED)


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
