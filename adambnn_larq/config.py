"""The training configuration: every knob of a recipe, with types, defaults and validation.

Recipes (files in ``recipes/``) return a dict of overrides of `TrainConfig`; command-line
``key=value`` overrides are applied on top and parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any

SCHEDULES = ("two-step", "one-step", "two-step-weights-first")
MODELS = ("reactnet_small", "reactnet_a")
#: "linear": the official per-epoch schedule (lr constant within an epoch, the last epoch at 0);
#: "cosine": per-epoch cosine; "step-linear": per-iteration linear decay with optional warm-up,
#: still learning in the last iteration (for short runs).
LR_SCHEDULES = ("linear", "cosine", "step-linear")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. Defaults are the paper's official AdamBNN recipe (SPEC §3)."""

    # Data
    dataset: str = "imagenet2012"
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training examples
    eval_limit: int | None = None
    # Hold the last N training examples out as a validation split: it is then the split every
    # epoch is evaluated on (best checkpoint, step 2's start), never trained on.
    validation_size: int = 0
    evaluate_test: bool = True  # False: the test split is never read (choosing hyperparameters)
    # Network
    model: str = "reactnet_a"
    input_size: int | None = None  # default: the dataset's
    width_multiplier: float = 0.25  # reactnet_small only
    num_downsamplings: int = 2  # reactnet_small only
    kernel_initializer: str = "reference"
    # Schedule: two-step = binary activations first, then binary weights (the paper's order)
    schedule: str = "two-step"
    epochs: int = 256  # per step
    batch_size: int = 256  # global batch over all replicas
    # Optimizer
    optimizer: str = "adam"
    learning_rate: float = 1.25e-3  # used as given; scale it yourself for other batch sizes
    lr_schedule: str = "linear"
    warmup_epochs: float = 0.0  # step-linear only: linear warm-up at the start of each step
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-8
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-6  # step 1 (or the only step)
    weight_decay_step2: float = 0.0
    weight_decay_mode: str = "coupled"
    # Loss
    distillation: bool = True
    teacher: str = "resnet34.h5"  # "small_teacher" (trained first, cached) or a Keras model file
    teacher_epochs: int = 4
    teacher_learning_rate: float = 2e-3
    teacher_width: int = 32
    label_smoothing: float = 0.1  # label loss only (distillation=False)
    # Run
    seed: int = 0
    deterministic: bool = False  # TF op determinism: bit-identical reruns, somewhat slower
    analysis: bool = True
    probe_size: int = 64
    jit_compile: bool = False

    def __post_init__(self) -> None:
        choices = {
            "schedule": SCHEDULES,
            "model": MODELS,
            "optimizer": ("adam", "sgd"),
            "lr_schedule": LR_SCHEDULES,
            "weight_decay_mode": ("coupled", "decoupled"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}"
                )
        for key in ("epochs", "batch_size", "teacher_epochs", "probe_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.learning_rate < 0:
            raise ConfigError(f"learning_rate must be >= 0, got {self.learning_rate}")
        if self.lr_schedule == "linear" and self.epochs == 1:
            raise ConfigError(
                "lr_schedule=linear with epochs=1 would train nothing: the official per-epoch "
                "schedule runs its last (here only) epoch at learning rate 0. Use "
                "lr_schedule=step-linear (per-iteration decay) for short runs."
            )
        if self.warmup_epochs and self.lr_schedule != "step-linear":
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs} needs lr_schedule=step-linear (the "
                "per-epoch schedules have no warm-up)"
            )
        if self.validation_size < 0:
            raise ConfigError(f"validation_size must be >= 0, got {self.validation_size}")
        if not self.evaluate_test and not self.validation_size:
            raise ConfigError(
                "evaluate_test=false needs validation_size > 0: some split must be evaluated"
            )
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(
                f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}"
            )
        self._check_values()

    def _check_values(self) -> None:
        """Values of the right type that could never train: refused before anything runs."""
        from adambnn_larq.data import DATASET_NAMES

        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name}={value!r}: must be a finite number")
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"dataset={self.dataset!r} is not one of {', '.join(DATASET_NAMES)}")
        for key in ("train_limit", "eval_limit", "input_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be at least 1 (or none: all), got {value}")
        if self.width_multiplier <= 0:
            raise ConfigError(f"width_multiplier must be > 0, got {self.width_multiplier}")
        if self.num_downsamplings < 0 or self.teacher_width < 1:
            raise ConfigError(
                "num_downsamplings must be >= 0 and teacher_width >= 1, got "
                f"{self.num_downsamplings} and {self.teacher_width}"
            )
        for key in ("adam_beta_1", "adam_beta_2", "label_smoothing"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        for key in ("adam_epsilon", "momentum", "teacher_learning_rate"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


class ConfigError(ValueError):
    """An invalid recipe or override."""


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _parse_value(key: str, text: str, annotation: Any) -> Any:
    optional = isinstance(annotation, types.UnionType) and type(None) in annotation.__args__
    if optional:
        if text.lower() in ("none", "null"):
            return None
        annotation = next(a for a in annotation.__args__ if a is not type(None))
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)  # nan, inf
            return value
        return str(text)
    except ValueError:
        name = getattr(annotation, "__name__", str(annotation))
        name = "finite float" if annotation is float else name
        raise ConfigError(f"{key}={text!r}: expected {name}") from None


def _check_keys(keys, where: str) -> None:
    valid = _field_types()
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where}; "
            f"valid keys: {', '.join(sorted(valid))}"
        )


def _check_type(key: str, value: Any) -> Any:
    annotation = _field_types()[key]
    allowed = annotation.__args__ if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not any(
        isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed
    ):
        names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
        raise ConfigError(f"{key}={value!r}: expected {names}")
    return value


def resolve_config(
    recipe: dict[str, Any], overrides: list[str] | None = None, *, where: str = "recipe"
) -> TrainConfig:
    """Apply a recipe's dict and ``key=value`` strings to the defaults, validating both.

    Arguments:
        recipe: overrides of `TrainConfig` fields from a recipe file.
        overrides: command-line ``key=value`` strings, applied last.
        where: the recipe's name, for error messages.

    Returns:
        The resolved, validated `TrainConfig`.

    Raises:
        ConfigError: unknown key (the message lists the valid ones), wrong type, bad value.
    """
    _check_keys(recipe, where)
    values = {key: _check_type(key, value) for key, value in recipe.items()}
    types_ = _field_types()
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        _check_keys([key], "the command line")
        values[key] = _parse_value(key, text, types_[key])
    return TrainConfig(**values)
