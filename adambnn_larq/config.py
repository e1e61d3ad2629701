"""The training configuration: every knob of a recipe, with types, defaults and validation.

Recipes (files in ``recipes/``) return a dict of overrides of `TrainConfig`; command-line
``key=value`` overrides are applied on top and parsed by the field's type. Finding and running
recipe and study files is `adambnn_larq.recipe_files`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from adambnn_larq.errors import ConfigError

# Re-exported for the modules that still import them from here (training, study, cli.train,
# demo; tests/test_untrusted_input.py); their home is adambnn_larq.recipe_files. TODO (issue
# 23): import them from there and drop these.
from adambnn_larq.recipe_files import RECIPES as RECIPES
from adambnn_larq.recipe_files import STUDIES as STUDIES
from adambnn_larq.recipe_files import find_recipe as find_recipe
from adambnn_larq.recipe_files import is_explicit_path as is_explicit_path
from adambnn_larq.recipe_files import is_study as is_study
from adambnn_larq.recipe_files import load_recipe as load_recipe

# Every choice a run is made of, once: `TrainConfig` validates its fields against these, the
# command line offers them as ``choices``, and the messages list them (`choices`).
Dataset = Literal["mnist", "fashion_mnist", "cifar10", "imagenet2012", "image_folder"]
ModelName = Literal["reactnet_small", "reactnet_a"]
Schedule = Literal["two-step", "one-step", "two-step-weights-first"]
Optimizer = Literal["adam", "sgd"]
#: "linear": the official per-epoch schedule (lr constant within an epoch, the last epoch at 0);
#: "cosine": per-epoch cosine; "step-linear": per-iteration linear decay with optional warm-up,
#: still learning in the last iteration (for short runs).
LrSchedule = Literal["linear", "cosine", "step-linear"]
WeightDecayMode = Literal["coupled", "decoupled"]
#: tf.distribute strategies of ``adambnn train --strategy``.
Strategy = Literal["default", "mirrored", "multiworker", "tpu"]
#: The teacher trained first and cached per dataset; any other ``teacher`` is a Keras model file.
SMALL_TEACHER = "small_teacher"
#: The largest seed a run may have: numpy and TensorFlow take seeds below 2**32, and the step
#: of index i seeds with ``seed + i`` (step 2: seed + 1).
MAX_SEED = 2**32 - 2


def choices(alias: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` alias of this module, in their order."""
    return typing.get_args(alias)


# Deployment: conversion, verification, benchmark and checkpoint import (`adambnn_larq.deploy`).
ConversionRoute = Literal["keras", "graphdef"]
Target = Literal["arm", "xcore"]
#: LCE binary-conv kernels of the interpreter (``reference`` is for verification only).
InterpreterKernel = Literal["default", "indirect_bgemm", "reference"]
BenchmarkKernel = Literal["default", "indirect_bgemm"]
#: Networks a PyTorch checkpoint can hold (``adambnn import-pytorch --arch``).
Architecture = Literal["reactnet_a", "resnet34"]
#: Default tolerances of `adambnn_larq.deploy.verify.verify_conversion` (LCE's end-to-end test
#: criterion): elementwise ``|tflite - keras| <= atol + rtol * |keras|``.
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3
#: Top-1 agreement verify requires of a file whose weights are stored int8/float16 (unless
#: given): their rounding moves every logit, so the elementwise tolerance is reported instead.
COMPRESSED_MIN_AGREEMENT = 0.99
#: A sign input at least this far from zero in Keras takes the same sign in the LCE interpreter
#: and under any other CPU's rounding: the largest difference of a sign input measured between
#: LCE and Keras was 1.9e-5 (docs/deployment.md, "Rounding and sign flips"). Closer samples can
#: differ by a flipped sign: rounding, not the conversion.
SIGN_MARGIN = 1e-4

DATASET_NAMES = choices(Dataset)
#: The datasets held in memory as arrays, whose augmentation can be switched off.
SMALL_IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10")
MODELS = choices(ModelName)
SCHEDULES = choices(Schedule)
OPTIMIZERS = choices(Optimizer)
LR_SCHEDULES = choices(LrSchedule)
WEIGHT_DECAY_MODES = choices(WeightDecayMode)
STRATEGIES = choices(Strategy)
CONVERSION_ROUTES = choices(ConversionRoute)
#: How `adambnn convert --weights` stores large float weights (`deploy.compress`).
WeightStorage = Literal["float32", "int8", "float16"]
TARGETS = choices(Target)
WEIGHT_STORAGES = choices(WeightStorage)
INTERPRETER_KERNELS = choices(InterpreterKernel)
KERNELS = choices(BenchmarkKernel)
ARCHITECTURES = choices(Architecture)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run. Defaults are the paper's official AdamBNN recipe (docs/method.md §3)."""

    # Data
    dataset: Dataset = "imagenet2012"
    data_dir: str | None = None
    train_limit: int | None = None  # use only the first N training examples
    eval_limit: int | None = None
    # Hold the last N training examples out as a validation split: it is then the split every
    # epoch is evaluated on (best checkpoint, step 2's start), never trained on.
    validation_size: int = 0
    evaluate_test: bool = True  # False: the test split is never read (choosing hyperparameters)
    # Small-image datasets' pad-and-crop / flip. Off, every epoch sees the same images, so a
    # distillation teacher's outputs are computed once and cached instead of every step.
    augment: bool = True
    # Network
    model: ModelName = "reactnet_a"
    input_size: int | None = None  # default: the dataset's
    width_multiplier: float = 0.25  # reactnet_small only
    num_downsamplings: int = 2  # reactnet_small only
    kernel_initializer: str = "reference"
    # Schedule: two-step = binary activations first, then binary weights (the paper's order)
    schedule: Schedule = "two-step"
    epochs: int = 256  # per step
    epochs_step2: int | None = None  # two-step only; None: epochs
    batch_size: int = 256  # global batch over all replicas
    # Optimizer
    optimizer: Optimizer = "adam"
    learning_rate: float = 1.25e-3  # used as given; scale it yourself for other batch sizes
    learning_rate_step2: float | None = None  # two-step only; None: learning_rate
    lr_schedule: LrSchedule = "linear"
    warmup_epochs: float = 0.0  # step-linear only: linear warm-up at the start of each step
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-8
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-6  # step 1 (or the only step)
    weight_decay_step2: float = 0.0
    weight_decay_mode: WeightDecayMode = "coupled"
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
        for key, allowed in _literal_fields().items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} is not one of {', '.join(allowed)}"
                )
        for key in ("epochs", "batch_size", "teacher_epochs", "probe_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.learning_rate < 0:
            raise ConfigError(f"learning_rate must be >= 0, got {self.learning_rate}")
        for key in ("learning_rate_step2", "epochs_step2"):
            if getattr(self, key) is not None and self.schedule != "two-step":
                raise ConfigError(
                    f"{key}={getattr(self, key)} needs schedule=two-step "
                    f"(schedule={self.schedule} has no second step)"
                )
        if self.epochs_step2 is not None and self.epochs_step2 < 1:
            raise ConfigError(f"epochs_step2 must be at least 1, got {self.epochs_step2}")
        if self.learning_rate_step2 is not None and self.learning_rate_step2 < 0:
            raise ConfigError(f"learning_rate_step2 must be >= 0, got {self.learning_rate_step2}")
        if self.lr_schedule == "linear" and 1 in (self.epochs, self.epochs_step2):
            key = "epochs" if self.epochs == 1 else "epochs_step2"
            raise ConfigError(
                f"lr_schedule=linear with {key}=1 would train nothing: the official per-epoch "
                "schedule runs its last (here only) epoch at learning rate 0. Use "
                "lr_schedule=step-linear (per-iteration decay) for short runs."
            )
        if self.warmup_epochs and self.lr_schedule != "step-linear":
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs} needs lr_schedule=step-linear (the "
                "per-epoch schedules have no warm-up)"
            )
        if not self.augment and self.dataset not in SMALL_IMAGE_DATASETS:
            raise ConfigError(
                f"augment=false is supported for {', '.join(SMALL_IMAGE_DATASETS)} (in-memory "
                f"small images), not {self.dataset}"
            )
        if self.validation_size < 0:
            raise ConfigError(f"validation_size must be >= 0, got {self.validation_size}")
        if not self.evaluate_test and not self.validation_size:
            raise ConfigError(
                "evaluate_test=false needs validation_size > 0: some split must be evaluated"
            )
        shortest = min(self.epochs, self.epochs_step2 or self.epochs)
        if not 0 <= self.warmup_epochs < shortest:
            raise ConfigError(
                f"warmup_epochs must be in [0, {shortest}) (the shortest step's epochs), got "
                f"{self.warmup_epochs}"
            )
        self._check_values()

    def _check_values(self) -> None:
        """Values of the right type that could never train: refused before anything runs."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name}={value!r}: must be a finite number")
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
        for key in ("adam_epsilon", "teacher_learning_rate"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.momentum <= 1:
            raise ConfigError(f"momentum must be in [0, 1], got {self.momentum}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(
                f"seed must be in [0, {MAX_SEED}] (numpy's range; step 2 uses seed + 1), got "
                f"{self.seed}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _literal_fields() -> dict[str, tuple[str, ...]]:
    """The fields typed with a ``Literal`` alias, and their allowed values."""
    return {
        key: choices(annotation)
        for key, annotation in _field_types().items()
        if typing.get_origin(annotation) is Literal
    }


def _plain_type(annotation: Any) -> Any:
    """``str`` for a ``Literal`` of strings (its values are checked in `TrainConfig`)."""
    return str if typing.get_origin(annotation) is Literal else annotation


def _parse_value(key: str, text: str, annotation: Any) -> Any:
    optional = isinstance(annotation, types.UnionType) and type(None) in annotation.__args__
    if optional:
        if text.lower() in ("none", "null"):
            return None
        annotation = next(a for a in annotation.__args__ if a is not type(None))
    annotation = _plain_type(annotation)
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


def _check_keys(keys: Iterable[str], where: str) -> None:
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
    allowed = tuple(_plain_type(a) for a in allowed)
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
