"""What each dataset is: its splits and their sizes (`DatasetInfo`), split slicing."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from adambnn_larq.errors import ConfigError

FIXED_SPLITS = {
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion_mnist": {"train": 60_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    # ILSVRC2012 as distributed; a prepared TFDS copy reports its own counts instead.
    "imagenet2012": {"train": 1_281_167, "validation": 50_000},
}


EVAL_SPLIT_NAMES = ("val", "validation", "test")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a recipe needs to know about a dataset before reading it.

    Attributes:
        name: dataset name as given to `make_dataset`.
        num_classes: number of labels.
        input_shape: shape (H, W, C) of one preprocessed image.
        num_examples: split name -> number of examples.
        train_split: the split to train on.
        eval_split: the split to evaluate on ("test" or "validation").
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    num_examples: dict[str, int]
    train_split: str
    eval_split: str


def split_slice(split: str) -> tuple[str, slice]:
    """``"train[-5000:]"`` -> ``("train", slice(-5000, None))``: TFDS's slicing syntax.

    MNIST, Fashion-MNIST and CIFAR-10 accept it, e.g. to hold a validation set out of the
    training split (``train[:-5000]`` to train, ``train[-5000:]`` to validate); a plain name
    gives the whole split.
    """
    match = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", split)
    if match is None:
        raise ConfigError(f"split {split!r} is not NAME or NAME[start:stop]")
    name, start, stop = match.groups()
    return name, slice(int(start) if start else None, int(stop) if stop else None)


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")
