"""Run a recipe: the optional teacher (stage 0), then the one or two steps of AdamBNN training.

A run directory holds everything a run produces and is what makes it resumable; its layout
and file names are `adambnn_larq.rundir`'s.

Killed at any moment, the same command continues from the last finished epoch: the
checkpoint holds the model, the optimizer state (moments, iteration count, hence the
learning-rate schedule) and the epoch; the data order and augmentation of every epoch are a
pure function of (seed, epoch). A step with a ``result.json`` is never rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import callbacks as analysis_callbacks
from adambnn_larq import data
from adambnn_larq.config import SMALL_TEACHER, STRATEGIES, TrainConfig
from adambnn_larq.errors import (
    CheckpointUnreadable,
    ConfigError,
    MissingFileError,
    ReportError,
    RunDirError,
    TrainingDiverged,
)
from adambnn_larq.models import ReActNetA, ReActNetSmall
from adambnn_larq.optim import (
    create_optimizer_variables,
    idle_epochs_warning,
    learning_rate_schedule,
    make_optimizer,
)
from adambnn_larq.rundir import (
    ANALYSIS_DIR,
    BEST_MODEL,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DIVERGED_FILE,
    FINAL_MODEL,
    INITIAL_SIGNS_FILE,
    INPUTS_FILE,
    LOG_FILE,
    MARKER_FILE,
    REPORT_DIR,
    RESULT_FILE,
    SUMMARY_FILE,
    TEACHERS_DIR,
    TRAIN_LOG,
    atomic_write_text,
    check_writable_dir,
    claim_dir,
    dir_lock,
    read_json,
    remove_stale_temporaries,
    replace_durably,
)
from adambnn_larq.saving import load_model, save_model
from adambnn_larq.teachers import SmallTeacher
from adambnn_larq.trainer import BNNTrainer


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


def make_strategy(name: str) -> tf.distribute.Strategy:
    """TensorFlow's distribution strategy by name (``default`` is the single-device one)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0)


def _input_shape(config: TrainConfig, info) -> tuple[int, int, int]:
    height, width, channels = info.input_shape
    if config.input_size is not None:
        height = width = config.input_size
    return (height, width, channels)


def build_student(config: TrainConfig, info, step: Step) -> tf.keras.Model:
    """The network of ``step`` for ``config`` and the dataset ``info``."""
    common = {
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


class _EpochReport(tf.keras.callbacks.Callback):
    """Stops on a non-finite loss, naming where; ends each fit after one epoch; measures
    throughput and where an epoch's time goes (training batches, validation)."""

    def __init__(self, stage: str, batch_size: int):
        super().__init__()
        self.stage = stage
        self.batch_size = batch_size
        self.epoch = 0
        self.started = 0.0
        self.batches = 0
        self.training_seconds = 0.0
        self.evaluation_seconds = 0.0
        self._evaluation_started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches, self.started = epoch, 0, time.perf_counter()
        self.training_seconds = self.evaluation_seconds = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1
        self.training_seconds = time.perf_counter() - self.started
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"{self.stage}: loss became {float(loss)} at epoch {self.epoch + 1}, step "
                f"{batch + 1}; the last good checkpoint is kept. Lower the learning rate or "
                "check the data."
            )

    def on_test_begin(self, logs=None):
        self._evaluation_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.evaluation_seconds += time.perf_counter() - self._evaluation_started

    def on_epoch_end(self, epoch, logs=None):
        # run_stage checkpoints between epochs: each fit trains one (Keras still counts to E).
        self.model.stop_training = True

    @property
    def images_per_second(self) -> float:
        """Training images per second of the last epoch (its validation not counted)."""
        return self.batches * self.batch_size / max(self.training_seconds, 1e-9)


def _train_split(config: TrainConfig, info) -> str:
    held_out = config.validation_size
    return f"{info.train_split}[:-{held_out}]" if held_out else info.train_split


def _datasets(config: TrainConfig, info):
    def make(
        split: str, *, training: bool, epoch: int = 0, limit=None, soft_targets=None
    ) -> tf.data.Dataset:
        # augment is passed only when off, so that every dataset keeps its own default.
        options = {} if config.augment else {"augment": False}
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

    def train_dataset(epoch: int, soft_targets=None) -> tf.data.Dataset:
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


def _steps_per_epoch(config: TrainConfig, info) -> int:
    examples = info.num_examples[info.train_split] - config.validation_size
    if config.train_limit is not None:
        examples = min(examples, config.train_limit)
    steps = examples // config.batch_size
    if steps < 1:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the {examples} training examples"
        )
    return steps


def _probe_images(config: TrainConfig, info) -> np.ndarray:
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


def run_stage(
    stage_dir: Path,
    *,
    name: str,
    build: Callable[[], tf.keras.Model],
    make_trainer: Callable[[tf.keras.Model], BNNTrainer],
    optimizer_factory: Callable[[int], tf.keras.optimizers.Optimizer],
    epochs: int,
    config: TrainConfig,
    info,
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
    chief = _is_chief(strategy)
    # Non-chief workers of a multi-worker run must write their checkpoints elsewhere.
    work_dir = stage_dir if chief else stage_dir / f".worker-{os.getpid()}"
    work_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = _steps_per_epoch(config, info)
    train_dataset, eval_dataset, test_dataset = _datasets(config, info)
    monitored = _monitored(config)

    with strategy.scope():
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
    # Two are kept, so a checkpoint damaged on disk (or cut short by a crash) still leaves the
    # one before it.
    manager = tf.train.CheckpointManager(checkpoint, work_dir / CHECKPOINTS_DIR, max_to_keep=2)
    # Every worker resumes from the chief's checkpoint (the run directory is shared).
    if restore_checkpoint(checkpoint, stage_dir / CHECKPOINTS_DIR, name):
        print(f"[{name}] resuming after epoch {int(epoch_var.numpy())} of {epochs}")
    elif init_weights is not None:
        copy_weights(load_model(init_weights), network)
        print(f"[{name}] initialized from {init_weights}")
    _settle_best_model(work_dir, int(epoch_var.numpy()), name)

    # Analysis callbacks first: the epoch logs they add must reach the CSV and TensorBoard.
    # They write files, so in a multi-worker run only the chief has them.
    callbacks = extra_callbacks(network) if extra_callbacks is not None and chief else []
    report = _EpochReport(name, config.batch_size)
    tensorboard = tf.keras.callbacks.TensorBoard(str(work_dir / "tensorboard"), profile_batch=0)
    callbacks += [
        tf.keras.callbacks.CSVLogger(str(work_dir / LOG_FILE), append=True),
        tensorboard,
        report,
    ]

    evaluation = None
    for epoch in range(int(epoch_var.numpy()), epochs):
        started = time.perf_counter()
        history = trainer.fit(
            train_dataset(epoch, teacher_logits),
            epochs=epochs,
            initial_epoch=epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=eval_dataset,
            callbacks=callbacks,
            verbose=verbose,
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

    if evaluation is None:  # every epoch was done before this process started
        evaluation = trainer.evaluate(eval_dataset, verbose=0, return_dict=True)
    result = {
        f"{monitored}_accuracy": float(evaluation["accuracy"]),
        f"{monitored}_loss": float(evaluation["loss"]),
        f"best_{monitored}_accuracy": float(best_var.numpy()),
        "epochs": epochs,
        "images_per_second": report.images_per_second,
        "wall_time_s": float(seconds_var.numpy()),
    }
    if monitored == "validation":
        result["test_accuracy"] = result["test_loss"] = None  # never read (evaluate_test=False)
        if test_dataset is not None:
            test = trainer.evaluate(test_dataset, verbose=0, return_dict=True)
            result["test_accuracy"], result["test_loss"] = test["accuracy"], test["loss"]
            print(f"[{name}] final model: test accuracy {result['test_accuracy']:.4f}")
    if not (work_dir / BEST_MODEL).exists():
        save_model(network, work_dir / BEST_MODEL)
    save_model(network, work_dir / FINAL_MODEL)
    if chief:
        atomic_write_text(result_path, json.dumps(result, indent=2))
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _pending_best_model(work_dir: Path, epoch: int) -> Path:
    """Where the best model of ``epoch`` waits for its checkpoint (see `run_stage`)."""
    return work_dir / f".best-epoch-{epoch:04d}{Path(BEST_MODEL).suffix}"


def _settle_best_model(work_dir: Path, epochs_done: int, name: str) -> None:
    """Finish the best-model update a kill interrupted: the pending model of the restored
    checkpoint's epoch was recorded by it and takes best.h5's place; any other pending model
    belongs to an epoch no checkpoint recorded (trained again) and is dropped."""
    for pending in work_dir.glob(".best-epoch-*"):
        if epochs_done and pending == _pending_best_model(work_dir, epochs_done):
            replace_durably(pending, work_dir / BEST_MODEL)
            print(f"[{name}] best model of epoch {epochs_done} put in place (a kill had left it)")
        else:
            pending.unlink()


def checkpoint_prefixes(directory: Path) -> list[str]:
    """The checkpoints ``ckpt-N`` in ``directory``, newest first.

    Found from their index files rather than from TensorFlow's ``checkpoint`` state file,
    which may itself be the damaged file.
    """
    numbered = {}
    for index in Path(directory).glob("ckpt-*.index"):
        match = re.fullmatch(r"ckpt-(\d+)", index.stem)
        if match:
            numbered[int(match.group(1))] = str(index.with_suffix(""))
    return [numbered[number] for number in sorted(numbered, reverse=True)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def restore_checkpoint(checkpoint: tf.train.Checkpoint, directory: Path, name: str) -> str | None:
    """Restore the newest readable checkpoint of ``directory``, falling back to older ones.

    Arguments:
        checkpoint: what to restore.
        directory: the stage's ``checkpoints/`` directory.
        name: the stage, for messages.

    Returns:
        The restored checkpoint's prefix, or None if there is no checkpoint (a fresh start).

    Raises:
        CheckpointUnreadable: there are checkpoints but none can be read; the message names the
            files and the command that restarts the stage.
    """
    failures = []
    for prefix in checkpoint_prefixes(directory):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways
            # (IndexError for a short data file, DataLossError, OpError, AssertionError...)
            failures.append((prefix, error))
            continue
        for bad, error in failures:
            print(
                f"[{name}] checkpoint {bad} cannot be read ({_first_line(error)}); falling "
                f"back to the previous one, {Path(prefix).name}: its epoch is trained again"
            )
        return prefix
    if not failures:
        return None
    prefix, error = failures[0]
    files = ", ".join(sorted(p.name for p in Path(prefix).parent.glob(Path(prefix).name + ".*")))
    raise CheckpointUnreadable(
        f"[{name}] cannot resume: checkpoint {prefix} ({files}) cannot be read "
        f"({_first_line(error)})"
        + (f", nor can the {len(failures) - 1} older one(s)" if len(failures) > 1 else "")
        + f". To restart {name} from its first epoch, delete its checkpoints and rerun the same "
        f"command: rm -r {shlex.quote(str(directory))}"
    )


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    """Copy every variable of ``source`` into ``target`` by name; shapes and names must agree."""
    source_vars = {v.name: v for v in source.variables}
    target_names = [v.name for v in target.variables]
    missing = sorted(set(target_names) - set(source_vars))
    extra = sorted(set(source_vars) - set(target_names))
    if missing or extra:
        raise ValueError(f"weights do not match: missing {missing[:5]}, unexpected {extra[:5]}")
    for variable in target.variables:
        value = source_vars[variable.name]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{variable.name}: shape {value.shape} != {variable.shape}")
        variable.assign(value.numpy())


def teacher_identity(config: TrainConfig) -> tuple:
    """The settings that decide which small teacher a run distills from: runs with equal
    identities share one cached teacher (`prepare_teacher`), so a caller may train the first
    of them alone and the rest side by side."""
    return (
        config.dataset,
        config.teacher_width,
        config.teacher_epochs,
        config.batch_size,
        config.teacher_learning_rate,
        config.train_limit,
        config.validation_size,
        config.evaluate_test,
        config.input_size,
        config.seed,
        config.augment,
        None if config.data_dir is None else os.path.abspath(config.data_dir),
    )


def _teacher_cache_key(config: TrainConfig, info) -> str:
    *fields, augment, data_dir = teacher_identity(config)
    fields = ["small_teacher v3", *fields, info.input_shape]  # bump v3 when the teacher changes
    if not augment:  # appended only when off: earlier caches keep their keys
        fields.append("no augmentation")
    # Which data: a data_dir (e.g. two image folders) and the class count make another
    # teacher. Appended only when they can differ, so the fixed datasets' caches keep their keys.
    if data_dir is not None:
        fields.append(("data_dir", data_dir))
    if config.dataset == "image_folder":
        fields.append(("classes", info.num_classes))
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:12]


def prepare_teacher(
    config: TrainConfig, info, run_dir: Path, strategy: tf.distribute.Strategy, verbose: int
) -> tuple[tf.keras.Model, dict[str, Any]]:
    """Load the teacher named by ``config.teacher``, training the small one first if needed.

    ``small_teacher`` is trained once per `teacher_identity` (and input shape and class count)
    and cached in ``RUN_DIR/../teachers/``, so the runs of a study share it; a run that finds
    another process training it waits for that one.
    """
    if config.teacher != SMALL_TEACHER:
        path = Path(config.teacher)
        _check_teacher_file(config)
        with strategy.scope():
            return load_model(path), {"teacher": str(path)}
    cache_key = f"{config.dataset}-{_teacher_cache_key(config, info)}"
    cache_dir = run_dir.parent / TEACHERS_DIR / cache_key
    # Runs under one parent may start side by side (a study's --jobs, two shells): the first
    # trains the teacher, the others wait for it and then find it finished.
    cache_dir.mkdir(parents=True, exist_ok=True)
    chief = _is_chief(strategy)  # a multi-worker run's other workers train with their chief
    with dir_lock(cache_dir, what="teacher cache", wait=True) if chief else nullcontext():
        if chief:
            remove_stale_temporaries(cache_dir)
        result = _train_small_teacher(cache_dir, config, info, strategy, verbose)
    with strategy.scope():
        teacher = load_model(cache_dir / FINAL_MODEL)
    return teacher, {
        "teacher": str(cache_dir / FINAL_MODEL),
        "teacher_test_accuracy": result.get("test_accuracy"),
        "teacher_validation_accuracy": result.get("validation_accuracy"),
    }


def _train_small_teacher(
    cache_dir: Path, config: TrainConfig, info, strategy: tf.distribute.Strategy, verbose: int
) -> dict[str, Any]:
    def optimizer_factory(steps_per_epoch: int):
        # Per-iteration decay: a per-epoch schedule wastes much of a 2-4 epoch run.
        schedule = learning_rate_schedule(
            "step-linear",
            config.teacher_learning_rate,
            epochs=config.teacher_epochs,
            steps_per_epoch=steps_per_epoch,
        )
        return make_optimizer("adam", schedule)

    return run_stage(
        cache_dir,
        name="teacher",
        build=lambda: SmallTeacher(
            input_shape=_input_shape(config, info),
            num_classes=info.num_classes,
            width=config.teacher_width,
        ),
        make_trainer=lambda network: BNNTrainer(network, label_smoothing=0.0),
        optimizer_factory=optimizer_factory,
        epochs=config.teacher_epochs,
        config=config,
        info=info,
        strategy=strategy,
        verbose=verbose,
    )


def cache_teacher_logits(
    teacher: tf.keras.Model, config: TrainConfig, info, *, batch_size: int = 512
) -> np.ndarray:
    """The teacher's logits of every training image, in the split's order, for a run without
    augmentation (``augment=false``): its images are the same every epoch and in both steps,
    so the teacher runs once per image instead of once per image, epoch and step.

    Returns:
        float32 (N, classes), row i for the split's image i (after ``train_limit``).
    """
    if config.augment:
        raise ValueError("teacher logits can be cached only with augment=false")
    dataset = data.make_dataset(
        config.dataset,
        _train_split(config, info),
        batch_size=batch_size,
        training=False,
        data_dir=config.data_dir,
        limit=config.train_limit,
        image_size=config.input_size,
        augment=False,
    )
    forward = tf.function(lambda images: teacher(images, training=False))
    return np.concatenate([forward(images).numpy() for images, _ in dataset]).astype(np.float32)


def _check_teacher_file(config: TrainConfig) -> None:
    if not config.distillation or config.teacher == SMALL_TEACHER:
        return
    path = Path(config.teacher)
    if not path.is_file():
        what = "is a directory, not a model file" if path.is_dir() else "not found"
        raise MissingFileError(
            f"teacher model {path} {what}. For ImageNet, import torchvision's ResNet-34: "
            f"`adambnn import-pytorch resnet34-333f7ec4.pth --arch resnet34 --output {path}` "
            "(see docs/pretrained.md); or set teacher=small_teacher or distillation=false."
        )


def check_config(config: TrainConfig):
    """Check what `TrainConfig` cannot check by itself, before anything is written or trained:
    the teacher file, the dataset's sizes against the batch.

    Returns:
        The dataset's `DatasetInfo`.

    Raises:
        FileNotFoundError: no teacher file.
        ValueError: a dataset that cannot be used this way (e.g. batch larger than the data).
    """
    _check_teacher_file(config)
    info = data.dataset_info(config.dataset, data_dir=config.data_dir)
    _steps_per_epoch(config, info)
    return info


def _has_finished_epoch(run_dir: Path) -> bool:
    """Whether any step of the run finished an epoch (has a checkpoint or its result)."""
    for step_dir in _step_dirs(run_dir):
        if (step_dir / RESULT_FILE).exists() or checkpoint_prefixes(step_dir / CHECKPOINTS_DIR):
            return True
    return False


def _step_dirs(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.glob("step*") if p.is_dir() and re.fullmatch(r"step\d+", p.name)]


#: What a step directory of a run holds (`earlier_run`).
_STEP_CONTENTS = {RESULT_FILE, CHECKPOINTS_DIR, LOG_FILE, BEST_MODEL, FINAL_MODEL, ANALYSIS_DIR,
                  "tensorboard"}  # fmt: skip


def earlier_run(run_dir: Path) -> str | None:
    """Why ``run_dir`` (no marker) is a run directory an earlier version of this project wrote,
    or None: its config.json is a `TrainConfig`, its step folders are that schedule's, and it
    holds nothing else."""
    names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".tmp-")}
    steps = {n for n in names if re.fullmatch(r"step\d+", n) and (run_dir / n).is_dir()}
    if names == {TRAIN_LOG}:  # a study's run whose process never wrote its configuration
        return f"a study run of an earlier adambnn-larq that never started ({TRAIN_LOG})"
    if CONFIG_FILE not in names or names - steps - {
        CONFIG_FILE, SUMMARY_FILE, REPORT_DIR, DIVERGED_FILE, TRAIN_LOG
    }:  # fmt: skip
        return None
    try:
        previous = TrainConfig(**read_json(run_dir / CONFIG_FILE, error=RunDirError))
    except (RunDirError, ConfigError, TypeError):  # TypeError: a key TrainConfig does not have
        return None
    if steps - {step.name for step in schedule_steps(previous)}:
        return None
    for step in steps:
        contents = {p.name for p in (run_dir / step).iterdir()}
        extra = {n for n in contents if not n.startswith((".tmp-", ".worker-", ".best-"))}
        if extra - _STEP_CONTENTS:
            return None
    listed = ", ".join([CONFIG_FILE, *sorted(steps)])
    return f"a run directory of an earlier adambnn-larq ({listed})"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_inputs(config: TrainConfig, info) -> dict[str, Any]:
    """The identity of what a run reads besides its configuration, compared on resume.

    - The teacher file by content (sha256; a ResNet-34 file hashes in about a second), not by
      path: the same path holding another model is another run.
    - The data by what is cheap to know on every resume: the dataset's class count, image
      shape and split sizes (a different image folder or a truncated file changes them), not
      by content (hashing ImageNet on every resume is not cheap). ``data_dir`` itself is part
      of the configuration.
    """
    teacher = None
    if config.distillation and config.teacher != SMALL_TEACHER:
        teacher = _file_sha256(Path(config.teacher))
    return {
        "teacher_sha256": teacher,
        "data": {
            "classes": info.num_classes,
            "input_shape": list(info.input_shape),
            "examples": dict(info.num_examples),
        },
    }


def _describe_input_change(key: str, before: Any, now: Any, config: TrainConfig) -> str:
    if key == "teacher_sha256":
        return (
            f"the teacher file {config.teacher} has changed since the run started (sha256 "
            f"{str(before)[:12]}… then, {str(now)[:12]}… now)"
        )
    return f"the data has changed since the run started ({key}: {before} then, {now} now)"


def _check_run_dir(
    config: TrainConfig, run_dir: Path, inputs: dict[str, Any] | None = None
) -> bool:
    """Whether ``run_dir`` may hold ``config``: an existing run must have the same
    configuration and inputs (`run_inputs`), unless it never finished an epoch (then it is
    started again, and True is returned).

    Raises:
        RunDirError: the run directory holds another (or an unreadable, or no) configuration,
            or was trained on other inputs, and finished epochs.
    """
    config_path = run_dir / CONFIG_FILE
    finished = _has_finished_epoch(run_dir)
    if not config_path.exists():
        if finished:
            steps = ", ".join(sorted(p.name for p in _step_dirs(run_dir)))
            raise RunDirError(
                f"{run_dir} has trained steps ({steps}) but no {CONFIG_FILE}: the configuration "
                "that trained them is unknown, so they cannot be resumed with this one; restore "
                f"{config_path} or choose another --run-dir"
            )
        return bool(_step_dirs(run_dir))  # logs of an unfinished first epoch: start again
    try:
        previous = read_json(config_path, error=RunDirError)
    except RunDirError as error:
        reason = str(error).removeprefix(f"{config_path}: ")
        problem = f"{config_path} is not a readable configuration ({reason})"
        fix = f"restore it, choose another --run-dir or delete {run_dir}"
    else:
        current = json.loads(config.to_json())
        # A field added after the run was written counts as its default value.
        defaults = json.loads(TrainConfig().to_json())
        changed = sorted(k for k in current if previous.get(k, defaults[k]) != current[k])
        stored = _stored_inputs(run_dir)
        moved = [
            _describe_input_change(key, stored[key], inputs[key], config)
            for key in sorted(inputs or {})
            if key in stored and stored[key] != inputs[key]
        ]
        if not changed and not moved:
            return False
        if changed:
            problem = (
                f"{run_dir} holds a run with a different configuration (changed: "
                f"{', '.join(changed)})"
            )
        else:
            problem = f"{run_dir} cannot be resumed: {'; '.join(moved)}"
        fix = "choose another --run-dir or delete it"
    if finished:
        raise RunDirError(f"{problem}; {fix}")
    print(f"{problem}, but it never finished an epoch: starting it again with this configuration")
    return True


def _stored_inputs(run_dir: Path) -> dict[str, Any]:
    """The inputs recorded when the run started ({} for a run written before they were)."""
    path = run_dir / INPUTS_FILE
    return read_json(path, error=RunDirError) if path.exists() else {}


def _analysis_callbacks(
    config, info, step_dir: Path, run_dir: Path, first_step: bool, gradients: bool
):
    if not config.analysis:
        return None
    probe = _probe_images(config, info)
    run_start = run_dir / "step1" / ANALYSIS_DIR / INITIAL_SIGNS_FILE

    def factory(network):
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
    info,
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

    # Gradient statistics read per-replica gradients; they are defined for one replica only.
    single_replica = strategy.num_replicas_in_sync == 1
    for index, step in enumerate(steps):
        step_dir = run_dir / step.name
        tf.keras.utils.set_random_seed(config.seed + index)

        def optimizer_factory(steps_per_epoch: int, step=step):
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

        def make_trainer(network, step=step):
            return BNNTrainer(
                network,
                teacher=teacher,
                weight_decay=step.weight_decay,
                weight_decay_mode=config.weight_decay_mode,
                label_smoothing=config.label_smoothing,
                track_gradients=config.analysis and single_replica,
            )

        init = run_dir / step.init_from / BEST_MODEL if step.init_from else None
        result = run_stage(
            step_dir,
            name=step.name,
            build=lambda step=step: build_student(config, info, step),
            make_trainer=make_trainer,
            optimizer_factory=optimizer_factory,
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


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into ``count`` logical devices (to try MirroredStrategy on one machine)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
