"""One stage (the small teacher, step 1 or step 2) trained to completion: epoch by epoch, a
checkpoint after each, resumed from its checkpoint; its datasets and the per-epoch report."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import data
from adambnn_larq.config import TrainConfig
from adambnn_larq.data import DatasetInfo
from adambnn_larq.errors import ConfigError, ReportError, TrainingDiverged
from adambnn_larq.optim import create_optimizer_variables
from adambnn_larq.rundir import (
    BEST_MODEL,
    CHECKPOINTS_DIR,
    FINAL_MODEL,
    LOG_FILE,
    RESULT_FILE,
    atomic_write_text,
    read_json,
    replace_durably,
)
from adambnn_larq.saving import load_model, save_model
from adambnn_larq.trainer import BNNTrainer
from adambnn_larq.training.checkpoints import (
    _pending_best_model,
    _settle_best_model,
    copy_weights,
    restore_checkpoint,
)
from adambnn_larq.training.strategy import _is_chief


class _EpochReport(tf.keras.callbacks.Callback):
    """Stops on a non-finite loss, naming where; ends each fit after one epoch; measures
    throughput and where an epoch's time goes (training batches, validation)."""

    def __init__(self, stage: str, batch_size: int) -> None:
        super().__init__()
        self.stage = stage
        self.batch_size = batch_size
        self.epoch = 0
        self.started = 0.0
        self.batches = 0
        self.training_seconds = 0.0
        self.evaluation_seconds = 0.0
        self._evaluation_started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch, self.batches, self.started = epoch, 0, time.perf_counter()
        self.training_seconds = self.evaluation_seconds = 0.0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches = batch + 1
        self.training_seconds = time.perf_counter() - self.started
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"{self.stage}: loss became {float(loss)} at epoch {self.epoch + 1}, step "
                f"{batch + 1}; the last good checkpoint is kept. Lower the learning rate or "
                "check the data."
            )

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._evaluation_started = time.perf_counter()

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self.evaluation_seconds += time.perf_counter() - self._evaluation_started

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # run_stage checkpoints between epochs: each fit trains one (Keras still counts to E).
        self.model.stop_training = True

    @property
    def images_per_second(self) -> float:
        """Training images per second of the last epoch (its validation not counted)."""
        return self.batches * self.batch_size / max(self.training_seconds, 1e-9)


def _train_split(config: TrainConfig, info: DatasetInfo) -> str:
    held_out = config.validation_size
    return f"{info.train_split}[:-{held_out}]" if held_out else info.train_split


def _datasets(
    config: TrainConfig, info: DatasetInfo
) -> tuple[Callable[..., tf.data.Dataset], tf.data.Dataset, tf.data.Dataset | None]:
    def make(
        split: str,
        *,
        training: bool,
        epoch: int = 0,
        limit: int | None = None,
        soft_targets: np.ndarray | None = None,
    ) -> tf.data.Dataset:
        # augment is passed only when off, so that every dataset keeps its own default.
        options: dict[str, Any] = {} if config.augment else {"augment": False}
        return data.make_dataset(
            config.dataset,
            split,
            batch_size=config.batch_size,
            training=training,
            seed=config.seed,
            epoch=epoch,
            data_dir=config.data_dir,
            limit=limit,
            image_size=config.input_size,
            soft_targets=soft_targets,
            **options,
        )

    # The pipelines are global batches; each worker of a multi-worker run takes its share
    # of every batch (TensorFlow's DATA sharding; these sources are not split into files).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    held_out = config.validation_size
    train_split = _train_split(config, info)

    def train_dataset(epoch: int, soft_targets: np.ndarray | None = None) -> tf.data.Dataset:
        dataset = make(
            train_split,
            training=True,
            epoch=epoch,
            limit=config.train_limit,
            soft_targets=soft_targets,
        )
        return dataset.with_options(options)

    def test() -> tf.data.Dataset:
        return make(info.eval_split, training=False, limit=config.eval_limit).with_options(options)

    if not held_out:
        return train_dataset, test(), None
    # The monitored split chooses the best checkpoint (and hence step 2's start): with a
    # validation split the test split is read only for the final models, or not at all.
    validation = make(f"{info.train_split}[-{held_out}:]", training=False).with_options(options)
    return train_dataset, validation, test() if config.evaluate_test else None


def _monitored(config: TrainConfig) -> str:
    """The split each epoch is evaluated on: "validation" (held out of train) or "test"."""
    return "validation" if config.validation_size else "test"


def _steps_per_epoch(config: TrainConfig, info: DatasetInfo) -> int:
    examples = info.num_examples[info.train_split] - config.validation_size
    if config.train_limit is not None:
        examples = min(examples, config.train_limit)
    steps = examples // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the {examples} training examples"
        )
    return steps


def run_stage(  # noqa: PLR0913 - every part of a stage is the caller's to choose, by keyword
    stage_dir: Path,
    *,
    name: str,
    build: Callable[[], tf.keras.Model],
    make_trainer: Callable[[tf.keras.Model], BNNTrainer],
    optimizer_factory: Callable[[int], tf.keras.optimizers.Optimizer],
    epochs: int,
    config: TrainConfig,
    info: DatasetInfo,
    strategy: tf.distribute.Strategy,
    init_weights: Path | None = None,
    extra_callbacks: Callable[[tf.keras.Model], list] | None = None,
    teacher_logits: np.ndarray | None = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train one stage to completion, resuming from its checkpoint; returns its result.

    Arguments:
        stage_dir: the stage's directory (created).
        name: for messages.
        build: builds the network (called inside the strategy's scope).
        make_trainer: wraps the network into a `BNNTrainer`.
        optimizer_factory: steps_per_epoch -> a fresh optimizer.
        epochs: number of epochs.
        config: the run's configuration (data, batch, seed).
        info: the dataset's `DatasetInfo`.
        strategy: distribution strategy.
        init_weights: a model file whose variables initialize the network (step 2 from step
            1's best), used only when the stage starts fresh.
        extra_callbacks: network -> more Keras callbacks (analysis).
        teacher_logits: the teacher's logits of every training image (see
            `cache_teacher_logits`), carried by the training batches.
        verbose: Keras progress bar mode.

    Returns:
        The stage's result dict (also written to ``stage_dir/result.json``).
    """
    result_path = stage_dir / RESULT_FILE
    if result_path.exists():
        return _finished_result(result_path, config, name)
    chief = _is_chief(strategy)
    # Non-chief workers of a multi-worker run must write their checkpoints elsewhere.
    work_dir = stage_dir if chief else stage_dir / f".worker-{os.getpid()}"
    work_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = _steps_per_epoch(config, info)
    train_dataset, eval_dataset, test_dataset = _datasets(config, info)
    monitored = _monitored(config)

    with strategy.scope():
        stage = _build_stage(
            name, work_dir, build, make_trainer, optimizer_factory, steps_per_epoch, config
        )
    # Two are kept, so a checkpoint damaged on disk (or cut short by a crash) still leaves the
    # one before it.
    manager = tf.train.CheckpointManager(
        stage.checkpoint, work_dir / CHECKPOINTS_DIR, max_to_keep=2
    )
    _resume_or_initialize(stage, stage_dir / CHECKPOINTS_DIR, epochs, init_weights)

    # Analysis callbacks first: the epoch logs they add must reach the CSV and TensorBoard.
    # They write files, so in a multi-worker run only the chief has them.
    callbacks = extra_callbacks(stage.network) if extra_callbacks is not None and chief else []
    report = _EpochReport(name, config.batch_size)
    tensorboard = tf.keras.callbacks.TensorBoard(str(work_dir / "tensorboard"), profile_batch=0)
    callbacks += [
        tf.keras.callbacks.CSVLogger(str(work_dir / LOG_FILE), append=True),
        tensorboard,
        report,
    ]
    fit_options = {
        "steps_per_epoch": steps_per_epoch,
        "validation_data": eval_dataset,
        "callbacks": callbacks,
        "verbose": verbose,
    }
    evaluation = _train_epochs(
        stage,
        manager,
        train_dataset,
        teacher_logits,
        fit_options,
        epochs,
        monitored,
        report,
        tensorboard,
    )

    if evaluation is None:  # every epoch was done before this process started
        evaluation = stage.trainer.evaluate(eval_dataset, verbose=0, return_dict=True)
    result = _stage_result(stage, evaluation, epochs, monitored, report, test_dataset)
    if not (work_dir / BEST_MODEL).exists():
        save_model(stage.network, work_dir / BEST_MODEL)
    save_model(stage.network, work_dir / FINAL_MODEL)
    if chief:
        atomic_write_text(result_path, json.dumps(result, indent=2))
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


@dataclasses.dataclass(frozen=True)
class _Stage:
    """A stage being trained: its name (for messages) and the directory it writes, its network
    and trainer, and what its checkpoint records with them: epochs done, best accuracy, seconds
    trained."""

    name: str
    work_dir: Path
    network: tf.keras.Model
    trainer: BNNTrainer
    checkpoint: tf.train.Checkpoint
    epoch_var: tf.Variable
    best_var: tf.Variable
    seconds_var: tf.Variable


def _finished_result(result_path: Path, config: TrainConfig, name: str) -> dict[str, Any]:
    """The result of a stage an earlier process finished: read back, never trained again."""
    result = read_json(result_path)
    monitored = _monitored(config)
    if not isinstance(result.get(f"{monitored}_accuracy"), (int, float)):
        raise ReportError(
            f"{result_path}: field '{monitored}_accuracy' is missing; delete the file to "
            "evaluate the step again"
        )
    print(
        f"[{name}] already finished: {monitored} accuracy "
        f"{result[f'{monitored}_accuracy']:.4f} (skipped)"
    )
    return result


def _build_stage(
    name: str,
    work_dir: Path,
    build: Callable[[], tf.keras.Model],
    make_trainer: Callable[[tf.keras.Model], BNNTrainer],
    optimizer_factory: Callable[[int], tf.keras.optimizers.Optimizer],
    steps_per_epoch: int,
    config: TrainConfig,
) -> _Stage:
    """The stage's network, compiled trainer and checkpoint, freshly initialized; called inside
    the strategy's scope, which must own every variable."""
    network = build()
    trainer = make_trainer(network)
    optimizer = optimizer_factory(steps_per_epoch)
    trainer.compile(optimizer, jit_compile=config.jit_compile)
    create_optimizer_variables(optimizer, trainer.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_accuracy")
    seconds_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="seconds")
    checkpoint = tf.train.Checkpoint(
        model=network,
        optimizer=optimizer,
        epochs_done=epoch_var,
        best_accuracy=best_var,
        seconds=seconds_var,
    )
    return _Stage(name, work_dir, network, trainer, checkpoint, epoch_var, best_var, seconds_var)


def _resume_or_initialize(
    stage: _Stage, checkpoints: Path, epochs: int, init_weights: Path | None
) -> None:
    """Restore the newest readable checkpoint of ``checkpoints``, or else (a fresh start) copy
    ``init_weights`` in; then finish or drop a best model a kill left pending."""
    name = stage.name
    # Every worker resumes from the chief's checkpoint (the run directory is shared).
    if restore_checkpoint(stage.checkpoint, checkpoints, name):
        print(f"[{name}] resuming after epoch {int(stage.epoch_var.numpy())} of {epochs}")
    elif init_weights is not None:
        copy_weights(load_model(init_weights), stage.network)
        print(f"[{name}] initialized from {init_weights}")
    _settle_best_model(stage.work_dir, int(stage.epoch_var.numpy()), name)


def _train_epochs(
    stage: _Stage,
    manager: tf.train.CheckpointManager,
    train_dataset: Callable[..., tf.data.Dataset],
    teacher_logits: np.ndarray | None,
    fit_options: dict[str, Any],
    epochs: int,
    monitored: str,
    report: _EpochReport,
    tensorboard: tf.keras.callbacks.TensorBoard,
) -> dict[str, Any] | None:
    """Train the epochs the checkpoint has not recorded, one fit each, saving a checkpoint (and
    a new best model) after each; returns the last epoch's evaluation, None if none was left."""
    name, work_dir, network = stage.name, stage.work_dir, stage.network
    epoch_var, best_var, seconds_var = stage.epoch_var, stage.best_var, stage.seconds_var
    evaluation = None
    for epoch in range(int(epoch_var.numpy()), epochs):
        started = time.perf_counter()
        history = stage.trainer.fit(
            train_dataset(epoch, teacher_logits),
            epochs=epochs,
            initial_epoch=epoch,
            **fit_options,
        ).history
        # Each fit would write the same graph again (~2.4 s on a 2-core host).
        tensorboard.write_graph = False
        evaluation = {"accuracy": history["val_accuracy"][-1], "loss": history["val_loss"][-1]}
        accuracy = float(evaluation["accuracy"])
        # Every worker saves (reading BatchNorm's synchronized statistics is a collective);
        # the non-chief ones into their scratch directory. A new best model is written under a
        # pending name first and takes best.h5's place only once the checkpoint that records
        # its accuracy exists: a kill in between never leaves a best.h5 from an epoch that
        # is then trained again (`_settle_best_model` finishes or drops it on resume).
        improved = accuracy > float(best_var.numpy())
        if improved:
            save_model(network, _pending_best_model(work_dir, epoch + 1))
        best_var.assign(max(accuracy, float(best_var.numpy())))
        epoch_var.assign(epoch + 1)
        seconds_var.assign_add(time.perf_counter() - started)
        manager.save()
        if improved:
            replace_durably(_pending_best_model(work_dir, epoch + 1), work_dir / BEST_MODEL)
        elapsed = time.perf_counter() - started
        rest = elapsed - report.training_seconds - report.evaluation_seconds
        print(
            f"[{name}] epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}, "
            f"{monitored} accuracy {accuracy:.4f} (best {float(best_var.numpy()):.4f}), "
            f"{report.images_per_second:.0f} img/s; {elapsed:.0f} s: training "
            f"{report.training_seconds:.0f}, validation {report.evaluation_seconds:.0f}, "
            f"the rest (start of fit, analysis, saving) {rest:.0f}",
            flush=True,
        )
    return evaluation


def _stage_result(
    stage: _Stage,
    evaluation: dict[str, Any],
    epochs: int,
    monitored: str,
    report: _EpochReport,
    test_dataset: tf.data.Dataset | None,
) -> dict[str, Any]:
    """The stage's result (``result.json``): the final and the best evaluation on the monitored
    split, throughput and time trained; with a validation split, the final model's test
    accuracy if the test split is read at all."""
    result: dict[str, Any] = {
        f"{monitored}_accuracy": float(evaluation["accuracy"]),
        f"{monitored}_loss": float(evaluation["loss"]),
        f"best_{monitored}_accuracy": float(stage.best_var.numpy()),
        "epochs": epochs,
        "images_per_second": report.images_per_second,
        "wall_time_s": float(stage.seconds_var.numpy()),
    }
    if monitored == "validation":
        result["test_accuracy"] = result["test_loss"] = None  # never read (evaluate_test=False)
        if test_dataset is not None:
            test = stage.trainer.evaluate(test_dataset, verbose=0, return_dict=True)
            result["test_accuracy"], result["test_loss"] = test["accuracy"], test["loss"]
            print(f"[{stage.name}] final model: test accuracy {result['test_accuracy']:.4f}")
    return result
