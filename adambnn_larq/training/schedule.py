"""The steps of a schedule (two-step, one-step, or the weights-first ablation) and the student
network each step trains."""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf

from adambnn_larq.config import TrainConfig
from adambnn_larq.data import DatasetInfo
from adambnn_larq.models import ReActNetA, ReActNetSmall


@dataclasses.dataclass(frozen=True)
class Step:
    """One training step of a schedule."""

    name: str
    binary_weights: bool
    binary_activations: bool
    weight_decay: float
    init_from: str | None  # name of the step whose best weights start this one
    learning_rate: float
    epochs: int


def schedule_steps(config: TrainConfig) -> list[Step]:
    """The steps of ``config.schedule``: two-step (activations first), one-step, or the
    weights-first ablation of the paper (binary weights first, then activations)."""
    first = (config.weight_decay, None, config.learning_rate, config.epochs)
    if config.schedule == "one-step":
        return [Step("step1", True, True, *first)]
    if config.schedule == "two-step":
        step1 = Step("step1", False, True, *first)
    else:
        step1 = Step("step1", True, False, *first)
    # The *_step2 fields apply to the second step of any two-step schedule; unset, they
    # repeat step 1's value (the validation allows them with schedule=two-step only).
    step2 = Step(
        "step2",
        True,
        True,
        config.weight_decay_step2,
        "step1",
        _or(config.learning_rate_step2, config.learning_rate),
        _or(config.epochs_step2, config.epochs),
    )
    return [step1, step2]


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _input_shape(config: TrainConfig, info: DatasetInfo) -> tuple[int, int, int]:
    height, width, channels = info.input_shape
    if config.input_size is not None:
        height = width = config.input_size
    return (height, width, channels)


def build_student(config: TrainConfig, info: DatasetInfo, step: Step) -> tf.keras.Model:
    """The network of ``step`` for ``config`` and the dataset ``info``."""
    common: dict[str, Any] = {
        "input_shape": _input_shape(config, info),
        "num_classes": info.num_classes,
        "binary_weights": step.binary_weights,
        "binary_activations": step.binary_activations,
        "kernel_initializer": config.kernel_initializer,
    }
    if config.model == "reactnet_a":
        return ReActNetA(**common)
    return ReActNetSmall(
        width_multiplier=config.width_multiplier,
        num_downsamplings=config.num_downsamplings,
        **common,
    )
