"""The two-step driver: `train` checks and claims the run directory, then trains the teacher
(if the run distills) and each step of the schedule as a stage, and writes the summary."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import callbacks as analysis_callbacks
from adambnn_larq import data
from adambnn_larq.config import TrainConfig
from adambnn_larq.data import DatasetInfo
from adambnn_larq.errors import RunDirError
from adambnn_larq.optim import idle_epochs_warning, learning_rate_schedule, make_optimizer
from adambnn_larq.rundir import (
    ANALYSIS_DIR,
    BEST_MODEL,
    CONFIG_FILE,
    FINAL_MODEL,
    INITIAL_SIGNS_FILE,
    INPUTS_FILE,
    MARKER_FILE,
    SUMMARY_FILE,
    atomic_write_text,
    check_writable_dir,
    claim_dir,
    dir_lock,
    remove_stale_temporaries,
)
from adambnn_larq.trainer import BNNTrainer
from adambnn_larq.training.checks import (
    _check_run_dir,
    _step_dirs,
    check_config,
    earlier_run,
    run_inputs,
)
from adambnn_larq.training.schedule import Step, build_student, schedule_steps
from adambnn_larq.training.stage import run_stage
from adambnn_larq.training.strategy import _is_chief
from adambnn_larq.training.teacher import cache_teacher_logits, prepare_teacher


def _probe_images(config: TrainConfig, info: DatasetInfo) -> np.ndarray:
    dataset = data.make_dataset(
        config.dataset,
        info.train_split,
        batch_size=config.probe_size,
        training=False,
        data_dir=config.data_dir,
        limit=config.probe_size,
        image_size=config.input_size,
    )
    return next(iter(dataset))[0].numpy()


def _analysis_callbacks(
    config: TrainConfig,
    info: DatasetInfo,
    step_dir: Path,
    run_dir: Path,
    first_step: bool,
    gradients: bool,
) -> Callable[[tf.keras.Model], list[tf.keras.callbacks.Callback]] | None:
    if not config.analysis:
        return None
    probe = _probe_images(config, info)
    run_start = run_dir / "step1" / ANALYSIS_DIR / INITIAL_SIGNS_FILE

    def factory(network: tf.keras.Model) -> list[tf.keras.callbacks.Callback]:
        return analysis_callbacks.paper_callbacks(
            log_dir=step_dir,
            probe_images=probe,
            run_start_signs=None if first_step else run_start,
            gradients=gradients,
        )

    return factory


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    recipe: str = "custom",
    strategy: tf.distribute.Strategy | None = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Run ``config`` in ``run_dir`` (resuming what is there) and return the summary.

    Arguments:
        config: the resolved configuration.
        run_dir: the run directory: new, empty, or one this project made (its marker,
            `adambnn_larq.rundir.MARKER_FILE`) holding the same configuration and inputs;
            locked while the run writes it.
        recipe: the recipe's name, recorded in the summary.
        strategy: distribution strategy (default: the current one).
        verbose: Keras progress bar mode (1 bar, 2 one line per epoch, 0 silent).

    Returns:
        The summary dict also written to ``run_dir/summary.json``.
    """
    run_dir = Path(run_dir)
    strategy = strategy or tf.distribute.get_strategy()
    # Everything is checked before anything is written: a corrected command must not meet a
    # config.json left by a command that could never have run.
    info = check_config(config)
    check_writable_dir(run_dir, what="run directory")
    if not _is_chief(strategy):
        # The chief owns, locks and checks the shared run directory; the other workers only
        # read its checkpoints and write into scratch directories, once the chief has made it
        # (a scratch folder made first would make the chief refuse a non-empty directory).
        deadline = time.monotonic() + _CHIEF_WAIT_SECONDS
        while not (run_dir / MARKER_FILE).exists():
            if time.monotonic() > deadline:
                raise RunDirError(
                    f"the chief did not create the run directory {run_dir} within "
                    f"{_CHIEF_WAIT_SECONDS} s; do all workers share it (one file system)?"
                )
            time.sleep(0.5)
        return _train(config, run_dir, info, recipe=recipe, strategy=strategy, verbose=verbose)
    inputs = run_inputs(config, info)
    claim_dir(run_dir, kind="train", adopt=earlier_run)
    with dir_lock(run_dir):
        removed = remove_stale_temporaries(run_dir)
        if removed:
            print(f"{run_dir}: removed {len(removed)} temporary file(s) a killed run left")
        if _check_run_dir(config, run_dir, inputs):
            for step_dir in _step_dirs(run_dir):  # logs of the unfinished first epoch
                shutil.rmtree(step_dir)
        atomic_write_text(run_dir / CONFIG_FILE, config.to_json())
        atomic_write_text(run_dir / INPUTS_FILE, json.dumps(inputs, indent=2) + "\n")
        return _train(config, run_dir, info, recipe=recipe, strategy=strategy, verbose=verbose)


_CHIEF_WAIT_SECONDS = 600


def _train(
    config: TrainConfig,
    run_dir: Path,
    info: DatasetInfo,
    *,
    recipe: str,
    strategy: tf.distribute.Strategy,
    verbose: int,
) -> dict[str, Any]:
    tf.keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    summary: dict[str, Any] = {
        "recipe": recipe,
        "schedule": config.schedule,
        "optimizer": config.optimizer,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "weight_decay_step2": config.weight_decay_step2,
        "weight_decay_mode": config.weight_decay_mode,
        "dataset": config.dataset,
        "model": config.model,
        "num_replicas": strategy.num_replicas_in_sync,
        "steps": [],
    }
    steps = schedule_steps(config)
    for warning in dict.fromkeys(idle_epochs_warning(config.lr_schedule, s.epochs) for s in steps):
        if warning:
            print(f"warning: {warning}", flush=True)
    teacher, teacher_logits = _distillation_teacher(
        config, info, run_dir, strategy, verbose, summary
    )

    # Gradient statistics read per-replica gradients; they are defined for one replica only.
    single_replica = strategy.num_replicas_in_sync == 1
    for index, step in enumerate(steps):
        step_dir = run_dir / step.name
        tf.keras.utils.set_random_seed(config.seed + index)
        init = run_dir / step.init_from / BEST_MODEL if step.init_from else None
        result = run_stage(
            step_dir,
            name=step.name,
            # mypy cannot infer the type of a lambda with a default argument.
            build=lambda step=step: build_student(config, info, step),  # type: ignore[misc]
            make_trainer=_trainer_factory(config, step, teacher, single_replica),
            optimizer_factory=_optimizer_factory(config, step),
            epochs=step.epochs,
            config=config,
            info=info,
            strategy=strategy,
            init_weights=init,
            extra_callbacks=_analysis_callbacks(
                config, info, step_dir, run_dir, index == 0, single_replica
            ),
            teacher_logits=teacher_logits,
            verbose=verbose,
        )
        summary["steps"].append(
            {
                "name": step.name,
                "dir": step.name,
                "binary_weights": step.binary_weights,
                "binary_activations": step.binary_activations,
                "weight_decay": step.weight_decay,
                "learning_rate": step.learning_rate,
                **result,
            }
        )
        summary["final_test_accuracy"] = result.get("test_accuracy")
        summary["final_validation_accuracy"] = result.get("validation_accuracy")
        summary["final_model"] = str(step_dir / FINAL_MODEL)
        if _is_chief(strategy):
            atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _distillation_teacher(
    config: TrainConfig,
    info: DatasetInfo,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
    verbose: int,
    summary: dict[str, Any],
) -> tuple[tf.keras.Model | None, np.ndarray | None]:
    """The teacher the students run, or instead (a run without augmentation) its logits, which
    they read; (None, None) for a run without distillation. The teacher goes into ``summary``."""
    teacher = teacher_logits = None
    if config.distillation:
        teacher, teacher_summary = prepare_teacher(config, info, run_dir, strategy, verbose)
        summary.update(teacher_summary)
        if not config.augment:
            started = time.perf_counter()
            teacher_logits = cache_teacher_logits(teacher, config, info)
            print(
                f"[teacher] logits of {len(teacher_logits)} training images cached "
                f"(augment=false) in {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            teacher = None  # the students read the cached logits; the teacher is not run
    return teacher, teacher_logits


def _optimizer_factory(
    config: TrainConfig, step: Step
) -> Callable[[int], tf.keras.optimizers.Optimizer]:
    """``step``'s fresh optimizer for a number of steps per epoch, which `run_stage` knows."""

    def optimizer_factory(steps_per_epoch: int) -> tf.keras.optimizers.Optimizer:
        schedule = learning_rate_schedule(
            config.lr_schedule,
            step.learning_rate,
            epochs=step.epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=config.warmup_epochs,
        )
        return make_optimizer(
            config.optimizer,
            schedule,
            beta_1=config.adam_beta_1,
            beta_2=config.adam_beta_2,
            epsilon=config.adam_epsilon,
            momentum=config.momentum,
        )

    return optimizer_factory


def _trainer_factory(
    config: TrainConfig, step: Step, teacher: tf.keras.Model | None, single_replica: bool
) -> Callable[[tf.keras.Model], BNNTrainer]:
    """Wraps ``step``'s network into its trainer: distilling from ``teacher`` (None: the labels,
    or the cached logits the batches carry), with the step's weight decay."""

    def make_trainer(network: tf.keras.Model) -> BNNTrainer:
        return BNNTrainer(
            network,
            teacher=teacher,
            weight_decay=step.weight_decay,
            weight_decay_mode=config.weight_decay_mode,
            label_smoothing=config.label_smoothing,
            track_gradients=config.analysis and single_replica,
        )

    return make_trainer
