"""The teacher of a distilled run: a model file, or the small teacher, trained once per
`teacher_identity` and cached beside the runs that share it; and, for a run without
augmentation, its logits of every training image."""

from __future__ import annotations

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import data
from adambnn_larq.config import SMALL_TEACHER, TrainConfig
from adambnn_larq.data import DatasetInfo
from adambnn_larq.errors import MissingFileError
from adambnn_larq.optim import learning_rate_schedule, make_optimizer
from adambnn_larq.rundir import FINAL_MODEL, TEACHERS_DIR, dir_lock, remove_stale_temporaries
from adambnn_larq.saving import load_model
from adambnn_larq.teachers import SmallTeacher
from adambnn_larq.trainer import BNNTrainer
from adambnn_larq.training.schedule import _input_shape
from adambnn_larq.training.stage import _train_split, run_stage
from adambnn_larq.training.strategy import _is_chief


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


def _teacher_cache_key(config: TrainConfig, info: DatasetInfo) -> str:
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
    config: TrainConfig,
    info: DatasetInfo,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
    verbose: int,
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
    cache_dir: Path,
    config: TrainConfig,
    info: DatasetInfo,
    strategy: tf.distribute.Strategy,
    verbose: int,
) -> dict[str, Any]:
    def optimizer_factory(steps_per_epoch: int) -> tf.keras.optimizers.Optimizer:
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
    teacher: tf.keras.Model, config: TrainConfig, info: DatasetInfo, *, batch_size: int = 512
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
