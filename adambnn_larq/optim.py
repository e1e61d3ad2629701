"""Optimizers, learning-rate schedules and the weight-decay variable set of the AdamBNN recipe."""

from __future__ import annotations

import math
from collections.abc import Sequence

import larq as lq
import tensorflow as tf

from adambnn_larq.config import LR_SCHEDULES, OPTIMIZERS
from adambnn_larq.layers import RPReLU, RSign

_PACKAGE = "adambnn_larq"


class _EpochwiseSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate that depends only on the (0-based) epoch of the optimizer step."""

    def __init__(self, initial_learning_rate: float, epochs: int, steps_per_epoch: int):
        if epochs < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"epochs ({epochs}) and steps_per_epoch ({steps_per_epoch}) must be >= 1"
            )
        self.initial_learning_rate = initial_learning_rate
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch

    def epoch(self, step) -> tf.Tensor:
        return tf.math.floordiv(tf.cast(step, tf.int64), self.steps_per_epoch)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class EpochLinearDecay(_EpochwiseSchedule):
    r"""The official schedule: constant within an epoch, \(\eta_e = \eta (1 - (e + 1)/E)\).

    Epoch e is 0-based, so the last epoch runs at learning rate 0 (only BatchNorm statistics
    still move), exactly as the reference's ``LambdaLR(lambda step: 1 - (step + 1) / epochs)``
    stepped once per epoch.

    Arguments:
        initial_learning_rate: \(\eta\).
        epochs: \(E\).
        steps_per_epoch: optimizer steps in one epoch.
    """

    def __call__(self, step):
        fraction = tf.cast(self.epoch(step) + 1, tf.float32) / float(self.epochs)
        return self.initial_learning_rate * tf.maximum(1.0 - fraction, 0.0)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class EpochCosineDecay(_EpochwiseSchedule):
    r"""Cosine decay held constant within an epoch: \(\eta_e = \eta/2 \, (1 + \cos(\pi e / E))\).

    The usual SGD schedule for BNN baselines; epoch e is 0-based.

    Arguments:
        initial_learning_rate: \(\eta\).
        epochs: \(E\).
        steps_per_epoch: optimizer steps in one epoch.
    """

    def __call__(self, step):
        fraction = tf.cast(self.epoch(step), tf.float32) / float(self.epochs)
        return self.initial_learning_rate * 0.5 * (1.0 + tf.cos(math.pi * fraction))


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class StepLinearDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    r"""Per-iteration linear decay with an optional linear warm-up, for short runs.

    With \(T\) optimizer steps in all and \(W\) warm-up steps, step \(t\) (0-based) uses
    \(\eta (t + 1)/W\) while \(t < W\), then \(\eta (1 - (t - W)/(T - W))\): it never
    reaches 0, the last step still learns at \(\eta/(T - W)\). The official per-epoch
    schedule (`EpochLinearDecay`) spends its whole last epoch at 0, which is harmless at 256
    epochs and a third of a 3-epoch run.

    Arguments:
        initial_learning_rate: \(\eta\), the peak.
        total_steps: \(T\), optimizer steps of the whole run.
        warmup_steps: \(W\), 0 for none; less than ``total_steps``.
    """

    def __init__(self, initial_learning_rate: float, total_steps: int, warmup_steps: int = 0):
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"need total_steps >= 1 and 0 <= warmup_steps < total_steps, got "
                f"total_steps={total_steps}, warmup_steps={warmup_steps}"
            )
        self.initial_learning_rate = initial_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        decay = 1.0 - (step - warmup) / float(self.total_steps - self.warmup_steps)
        factor = tf.maximum(decay, 0.0)
        if self.warmup_steps:
            factor = tf.where(step < warmup, (step + 1.0) / warmup, factor)
        return self.initial_learning_rate * factor

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def learning_rate_schedule(
    name: str,
    initial_learning_rate: float,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
) -> tf.keras.optimizers.schedules.LearningRateSchedule:
    """The schedule ``name`` (one of `LR_SCHEDULES`) over ``epochs`` epochs.

    ``"linear"`` is the official AdamBNN/ReActNet schedule (`EpochLinearDecay`), ``"cosine"``
    its cosine counterpart, ``"step-linear"`` `StepLinearDecay` with ``warmup_epochs`` of
    warm-up (the per-epoch schedules take no warm-up).
    """
    if name == "step-linear":
        warmup = int(round(warmup_epochs * steps_per_epoch))
        return StepLinearDecay(initial_learning_rate, epochs * steps_per_epoch, warmup)
    if warmup_epochs:
        raise ValueError(f"lr_schedule {name!r} has no warm-up; use 'step-linear'")
    schedules = {"linear": EpochLinearDecay, "cosine": EpochCosineDecay}
    if name not in schedules:
        raise ValueError(f"unknown lr_schedule {name!r}; choose one of {', '.join(LR_SCHEDULES)}")
    return schedules[name](initial_learning_rate, epochs, steps_per_epoch)


def idle_epochs_warning(name: str, epochs: int) -> str | None:
    """Why ``name`` over ``epochs`` epochs wastes training, or None.

    The official per-epoch linear schedule runs its last epoch at learning rate 0: one epoch
    in 256 on ImageNet, all of a 1-epoch run.
    """
    if name != "linear":
        return None
    if epochs == 1:
        return (
            "lr_schedule=linear with epochs=1 trains nothing: the official per-epoch schedule "
            "runs its last (here only) epoch at learning rate 0; use lr_schedule=step-linear"
        )
    if epochs < 20:
        return (
            f"lr_schedule=linear runs the last of its {epochs} epochs at learning rate 0 "
            f"({1 / epochs:.0%} of each step learns nothing); lr_schedule=step-linear decays "
            "per iteration and still learns in the last one."
        )
    return None


def make_optimizer(
    name: str,
    learning_rate,
    *,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-8,
    momentum: float = 0.9,
) -> tf.keras.optimizers.Optimizer:
    """Adam (the paper) or SGD with momentum (the baseline), without built-in weight decay.

    Weight decay is applied by `adambnn_larq.trainer.BNNTrainer` on exactly the variables of
    `decayed_variables`, coupled (L2 in the gradient, PyTorch ``weight_decay``) or decoupled
    (AdamW-style); Keras' own ``weight_decay`` argument would decay every variable.

    Note: Keras adds ``epsilon`` to \\(\\sqrt{v_t}\\) before bias correction, PyTorch after;
    with 1e-8 the difference is negligible except for weights whose gradients are ~1e-8.
    """
    # The fused (legacy) Keras optimizers trace about twice as fast as the new ones on a
    # 300-variable BNN; their Adam update is the same formula.
    if name == "adam":
        return tf.keras.optimizers.legacy.Adam(
            learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon
        )
    if name == "sgd":
        return tf.keras.optimizers.legacy.SGD(learning_rate, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose {' or '.join(map(repr, OPTIMIZERS))}")


def create_optimizer_variables(
    optimizer: tf.keras.optimizers.Optimizer, variables: Sequence[tf.Variable]
) -> None:
    """Create ``optimizer``'s step counter and slots (Adam's moments) for ``variables`` now.

    Variables created during the first call of a ``tf.function`` make TensorFlow trace it a
    second time; creating them before ``fit`` halves the tracing of the training step (tens of
    seconds for ReActNet on a CPU). Call inside the strategy's scope.
    """
    if isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):
        optimizer._create_all_weights(variables)  # the legacy optimizers' own first-step hook
    else:
        optimizer.build(variables)


def latent_variable(variable: tf.Variable) -> tf.Variable:
    """The trainable tf.Variable behind a larq QuantizedVariable (or the variable itself)."""
    return getattr(variable, "latent_variable", variable)


def decayed_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """The variables the official recipe decays (docs/method.md §3), in layer order.

    PyTorch's recipe decays every 4-D tensor and everything named ``conv``: the stem kernel, all
    binary conv kernels and all RSign/RPReLU shifts (shape (1, C, 1, 1) in PyTorch). Not
    BatchNorm, PReLU slopes, nor the classifier.
    """
    selected = []
    for layer in model.layers:
        if isinstance(layer, lq.layers.QuantConv2D):
            selected.append(latent_variable(layer.kernel))
        elif isinstance(layer, RSign):
            selected.append(layer.bias)
        elif isinstance(layer, RPReLU):
            selected.extend([layer.shift_in, layer.shift_out])
    return selected
