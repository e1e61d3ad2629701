"""Accuracy of a model file over a whole dataset split: top-1, top-5 and the image count, for
a Keras model (``.h5``/``.keras``) and its LCE conversion (``.tflite``) alike.

The images come from the library's own evaluation pipeline (`adambnn_larq.data.make_dataset`
with ``training=False``): the preprocessing training evaluated with for that dataset and the
model's input size (Fashion-MNIST normalized and zero-padded to the input; ImageNet resized
and center-cropped, 256 -> 224 at 224). Batches stream through the model one at a time and
only the hit counts are kept, so memory does not grow with the split.

In the deployment layer because a ``.tflite`` file needs LCE's interpreter.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import data
from adambnn_larq.data.catalog import split_slice
from adambnn_larq.data.preprocessing import NORMALIZATION, SMALL_AUGMENTATION
from adambnn_larq.errors import (
    AdambnnError,
    ConfigError,
    MissingFileError,
    ModelFileError,
    ModelMismatchError,
    OutputError,
)
from adambnn_larq.rundir import atomic_write_text, check_distinct, check_writable_file

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
TFLITE_SUFFIX = ".tflite"
#: Seconds between progress lines of a long evaluation.
PROGRESS_SECONDS = 10.0

Say = Callable[[str], None]


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Accuracy of one model file on one dataset split.

    Attributes:
        model: the model file.
        format: ``"keras"`` or ``"tflite"``.
        dataset / split: what was evaluated.
        images: how many images (the split, or the first ``limit``).
        top1 / top5: shares of images whose label is the arg-max / among the 5 largest
            outputs; ``top5`` is None for a model with fewer than 5 classes.
        top1_correct / top5_correct: the counts behind them.
        num_classes: outputs of the model.
        input_shape: its input (H, W, C).
        preprocessing: what was done to the images.
        kernel: the LCE binary-conv kernel (``.tflite`` only).
        seconds / images_per_second: wall time of the pass, data pipeline included.
        limit: the ``limit`` asked for (None: the whole split).
    """

    model: str
    format: str
    dataset: str
    split: str
    images: int
    top1: float
    top5: float | None
    top1_correct: int
    top5_correct: int | None
    num_classes: int
    input_shape: list[int]
    preprocessing: str
    kernel: str | None
    seconds: float
    images_per_second: float
    limit: int | None

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line: the accuracies, the image count, the speed."""
        top5 = "n/a (fewer than 5 classes)" if self.top5 is None else f"{self.top5:.2%}"
        engine = f"LCE {self.kernel} kernel" if self.kernel else "Keras"
        return (
            f"{Path(self.model).name} on {self.dataset}/{self.split}: top-1 {self.top1:.2%}, "
            f"top-5 {top5} over {self.images:,} images ({engine}, "
            f"{self.images_per_second:.1f} img/s)"
        )

    def markdown(self) -> str:
        """A one-row markdown table."""
        top5 = "-" if self.top5 is None else f"{self.top5:.2%}"
        return (
            "| model | data | images | top-1 | top-5 | engine | img/s |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {Path(self.model).name} | {self.dataset}/{self.split} | {self.images:,} | "
            f"{self.top1:.2%} | {top5} | {'LCE ' + self.kernel if self.kernel else 'Keras'} "
            f"| {self.images_per_second:.1f} |\n"
        )


def top_k_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows of ``logits`` have their label among the ``k`` largest values.

    A label counts when fewer than ``k`` classes score strictly higher (ties with the label go
    its way, as in ``tf.math.in_top_k``); a row with a non-finite label score never counts.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    label_scores = logits[np.arange(len(labels)), labels]
    better = (logits > label_scores[:, None]).sum(axis=1)
    return int(np.sum((better < k) & np.isfinite(label_scores)))


@dataclasses.dataclass
class _Model:
    """What evaluation needs of a model file, whatever its format."""

    input_shape: tuple[int, ...]
    num_classes: int
    predict: Callable[[np.ndarray], np.ndarray]
    format: str
    kernel: str | None = None


def _keras_model(path: Path) -> _Model:
    from adambnn_larq.saving import load_model

    try:
        model = load_model(path)  # checks the file names no code before Keras reads it
    except AdambnnError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as error:
        # Keras raises all of these for files that are models of something else.
        raise ModelFileError(f"cannot load Keras model {path}: {error}") from error
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.output_shape) != 2:
        raise ModelMismatchError(
            f"{path}: one image input and one (batch, classes) output expected; the model has "
            f"{len(model.inputs)} input(s) and outputs {model.output_shape}"
        )

    # Eager calls: the same arithmetic as a traced predict, without tracing the whole network
    # first (a minute for ReActNet-A with AutoGraph, see verify.keras_predict).
    def predict(images: np.ndarray) -> np.ndarray:
        return np.asarray(model(images, training=False), np.float32)

    return _Model(tuple(model.input_shape[1:]), int(model.output_shape[-1]), predict, "keras")


def _tflite_model(path: Path, kernel: str, threads: int) -> _Model:
    from adambnn_larq.deploy.flatbuffer import io_details
    from adambnn_larq.deploy.interpreter import lce_interpreter
    from adambnn_larq.deploy.verify import interpreter_predict

    flatbuffer = path.read_bytes()
    try:
        io = io_details(flatbuffer)
    except ValueError as error:
        raise ModelFileError(f"{path}: not a TFLite model ({error})") from error
    inputs, outputs = io["inputs"], io["outputs"]
    if len(inputs) != 1 or len(outputs) != 1 or len(outputs[0]["shape"]) != 2:
        raise ModelMismatchError(
            f"{path}: one image input and one (batch, classes) output expected; the file has "
            f"{len(inputs)} input(s) and outputs {[o['shape'] for o in outputs]}"
        )
    interpreter = lce_interpreter(flatbuffer, kernel=kernel, threads=threads)
    return _Model(
        tuple(inputs[0]["shape"][1:]),
        int(outputs[0]["shape"][-1]),
        lambda images: interpreter_predict(interpreter, images),
        "tflite",
        kernel,
    )


def open_model(path: str | os.PathLike, *, kernel: str = "default", threads: int = 1) -> _Model:
    """A Keras (``.h5``/``.hdf5``/``.keras``) or LCE (``.tflite``) model file, ready to predict
    batches of float images.

    Raises:
        MissingFileError: no such file.
        ModelFileError: another extension, or a file that is not such a model.
        UnsafeModelError: a Keras file naming code to run.
        ModelMismatchError: not one image input and one (batch, classes) output.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    if path.suffix == TFLITE_SUFFIX:
        return _tflite_model(path, kernel, threads)
    if path.suffix in KERAS_SUFFIXES:
        return _keras_model(path)
    raise ModelFileError(
        f"{path}: unknown model format {path.suffix or '(no extension)'!r}; evaluate takes "
        f"{', '.join(KERAS_SUFFIXES)} (Keras) or {TFLITE_SUFFIX} (LCE)"
    )


@dataclasses.dataclass(frozen=True)
class _Data:
    dataset: tf.data.Dataset
    split: str
    total: int
    preprocessing: str


def _pipeline_options(
    name: str, native: tuple[int, int, int], shape: tuple[int, ...]
) -> tuple[int | None, int | None, str]:
    """(channels, image_size) that make `make_dataset` give ``shape``, and the description of
    the preprocessing; ModelMismatchError when no option does."""
    if len(shape) != 3 or shape[0] != shape[1]:
        raise ModelMismatchError(
            f"the model takes inputs of shape {shape}; {name}'s pipeline gives square images "
            "(H, H, C)"
        )
    size, channels = shape[0], shape[2]
    mean, std = NORMALIZATION[name]
    normalize = f"normalized with mean {mean} and std {std} of [0, 1] pixels"
    if name not in SMALL_AUGMENTATION:
        if channels != 3:
            raise ModelMismatchError(
                f"the model takes {channels}-channel inputs; {name} has RGB images (3)"
            )
        resize = data.eval_resize_size(size)
        return None, size, f"resized to {resize} (shorter side), center crop {size}, {normalize}"
    height, _, own_channels = native
    if size < height or (size - height) % 2:
        raise ModelMismatchError(
            f"the model takes {size}x{size} inputs; {name}'s {height}x{height} images can only "
            f"be zero-padded symmetrically to {height}, {height + 2}, {height + 4}, ..."
        )
    if channels != own_channels and not (own_channels == 1 and channels == 3):
        raise ModelMismatchError(
            f"the model takes {channels}-channel inputs; {name} has {own_channels}-channel images"
        )
    steps = [normalize]
    if size != height:
        steps.append(f"zero-padded from {height}x{height} to {size}x{size}")
    if channels != own_channels:
        steps.append("grey repeated to 3 channels")
    return (
        channels if channels != own_channels else None,
        size if size != height else None,
        ", ".join(steps),
    )


def _split_size(name: str, info: data.DatasetInfo, split: str) -> int:
    base, part = split_slice(split)
    if base not in info.num_examples:
        raise ConfigError(
            f"{name} has no split {base!r}; its splits: {', '.join(sorted(info.num_examples))}"
        )
    if part != slice(None) and name not in SMALL_AUGMENTATION:
        raise ConfigError(
            f"{name} takes a plain split name ({', '.join(sorted(info.num_examples))}), not "
            f"{split!r}; use --limit for the first N images"
        )
    return len(range(info.num_examples[base])[part])


def evaluation_data(
    name: str,
    model: _Model,
    *,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 32,
    limit: int | None = None,
) -> _Data:
    """The evaluation pipeline of ``name`` for ``model``'s input shape, after checking that the
    model fits the dataset (input shape, class count) and the split exists.

    Raises:
        ConfigError: unknown dataset or split.
        ModelMismatchError: the model's input or class count does not fit the dataset.
        DataNotFoundError: the data is not there (the message says where to put it).
    """
    info = data.dataset_info(name, data_dir=data_dir)
    if model.num_classes != info.num_classes:
        raise ModelMismatchError(
            f"the model has {model.num_classes} classes, {name} has {info.num_classes}: "
            "not a model of this dataset (choose it with --dataset)"
        )
    channels, image_size, preprocessing = _pipeline_options(
        name, info.input_shape, model.input_shape
    )
    split = split or info.eval_split
    total = _split_size(name, info, split)
    if limit is not None:
        total = min(total, limit)
    dataset = data.make_dataset(
        name,
        split,
        batch_size=batch_size,
        training=False,
        data_dir=data_dir,
        limit=limit,
        channels=channels,
        image_size=image_size,
    )
    given = tuple(dataset.element_spec[0].shape[1:])
    if given != tuple(model.input_shape):  # a guard on _pipeline_options, not a user error
        raise RuntimeError(f"{name}'s pipeline gives {given}, the model takes {model.input_shape}")
    return _Data(dataset, split, total, preprocessing)


class _Progress:
    """A line every `PROGRESS_SECONDS`: images done of the total, speed, time left."""

    def __init__(self, total: int, say: Say | None, every: float) -> None:
        self.total, self.say, self.every = total, say, every
        self.started = self.last = time.perf_counter()

    def update(self, done: int, top1_correct: int) -> None:
        now = time.perf_counter()
        if self.say is None or now - self.last < self.every or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        left = (self.total - done) / max(rate, 1e-9)
        self.say(
            f"  {done:,} / {self.total:,} images ({done / self.total:.0%}), {rate:.1f} img/s, "
            f"top-1 so far {top1_correct / done:.2%}, about {left / 60:.1f} min left"
        )


def evaluate_model(
    model_path: str | os.PathLike,
    *,
    dataset: str = "imagenet2012",
    split: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    kernel: str = "default",
    threads: int = 1,
    say: Say | None = _to_stderr,
    progress_seconds: float = PROGRESS_SECONDS,
) -> EvaluationResult:
    """Top-1 and top-5 accuracy of a model file over a dataset split.

    Arguments:
        model_path: ``.h5``/``.hdf5``/``.keras`` (Keras) or ``.tflite`` (LCE interpreter).
        dataset: a dataset of `adambnn_larq.data` (its class count must be the model's).
        split: default: the dataset's evaluation split.
        data_dir: see `adambnn_larq.data.make_dataset`.
        limit: only the first ``limit`` images of the split.
        batch_size: images per batch.
        kernel / threads: the LCE interpreter's binary-conv kernel and threads (``.tflite``).
        say: where the start and progress lines go (None: silent).
        progress_seconds: seconds between progress lines.

    Returns:
        The `EvaluationResult`.

    Raises:
        MissingFileError, ModelFileError, UnsafeModelError, ModelMismatchError, ConfigError,
        DataNotFoundError (see `open_model` and `evaluation_data`).
    """
    model = open_model(model_path, kernel=kernel, threads=threads)
    source = evaluation_data(
        dataset, model, split=split, data_dir=data_dir, batch_size=batch_size, limit=limit
    )
    if say is not None:
        say(
            f"evaluating {model_path} on {dataset}/{source.split}: {source.total:,} images "
            f"({source.preprocessing})"
        )
    top5 = model.num_classes >= 5
    progress = _Progress(source.total, say, progress_seconds)
    images = top1_correct = top5_correct = 0
    started = time.perf_counter()
    for batch_images, batch_labels in source.dataset:
        logits = model.predict(batch_images.numpy())
        labels = batch_labels.numpy()
        top1_correct += top_k_hits(logits, labels, 1)
        top5_correct += top_k_hits(logits, labels, 5) if top5 else 0
        images += len(labels)
        progress.update(images, top1_correct)
    seconds = time.perf_counter() - started
    if images == 0:
        raise ConfigError(f"{dataset} split {source.split!r} gave no images")
    return EvaluationResult(
        model=str(model_path),
        format=model.format,
        dataset=dataset,
        split=source.split,
        images=images,
        top1=top1_correct / images,
        top5=top5_correct / images if top5 else None,
        top1_correct=top1_correct,
        top5_correct=top5_correct if top5 else None,
        num_classes=model.num_classes,
        input_shape=list(model.input_shape),
        preprocessing=source.preprocessing,
        kernel=model.kernel,
        seconds=seconds,
        images_per_second=images / max(seconds, 1e-9),
        limit=limit,
    )


def evaluate_to_file(
    model_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    **options: Any,
) -> EvaluationResult:
    """`evaluate_model`, its result written as JSON to ``output``; the output is checked
    before the evaluation starts and written only when it succeeded.

    Raises:
        OutputError: ``output`` cannot be written, or is the model file; as `evaluate_model`.
    """
    if output is not None:
        check_distinct({"--output": output}, {"MODEL": model_path})
        check_writable_file(output, what="--output", suffixes=(".json",))
    result = evaluate_model(model_path, **options)
    if output is not None:
        content = result.to_json() | {"markdown": result.markdown()}
        try:
            atomic_write_text(output, json.dumps(content, indent=2) + "\n")
        except OSError as error:
            raise OutputError(
                f"cannot write --output {output}: {error.strerror or error}"
            ) from error
    return result
