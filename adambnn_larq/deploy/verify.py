"""Verify a conversion: run the LCE interpreter and Keras on the same inputs and compare them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq import data
from adambnn_larq.config import (
    COMPRESSED_MIN_AGREEMENT,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    SIGN_MARGIN,
)
from adambnn_larq.deploy.flatbuffer import io_details
from adambnn_larq.deploy.interpreter import lce_interpreter
from adambnn_larq.errors import ConfigError, ConversionError, ModelMismatchError


@dataclasses.dataclass(frozen=True)
class VerifyCriteria:
    """What a verification requires: top-1 agreement and the share of samples within the
    elementwise tolerance, and why (for the message)."""

    min_agreement: float
    min_within: float
    reason: str


def verify_criteria(
    compressed: dict[str, str],
    *,
    min_agreement: float | None = None,
    min_within: float | None = None,
) -> VerifyCriteria:
    """The criteria for a file, from its compressed weights and the user's explicit choices.

    A file with exact weights must match Keras on every sample (agreement and tolerance 1)
    unless told otherwise. A file with int8/float16 weights (``compressed``: tensor name ->
    format, from `compressed_weights`) is judged by top-1 agreement
    (`COMPRESSED_MIN_AGREEMENT`); its elementwise tolerance is reported, and required only
    when ``min_within`` is given.

    Returns:
        The resolved `VerifyCriteria`.
    """
    if not compressed:
        return VerifyCriteria(
            1.0 if min_agreement is None else min_agreement,
            1.0 if min_within is None else min_within,
            "exact weights: compared elementwise",
        )
    agreement = COMPRESSED_MIN_AGREEMENT if min_agreement is None else min_agreement
    formats = "/".join(sorted(set(compressed.values())))
    reason = (
        f"{len(compressed)} weight tensor(s) stored as {formats}: outputs differ from Keras by "
        f"their rounding; judged by top-1 agreement (>= {agreement:.0%}), the elementwise "
        "tolerance is reported"
        + (" and required as given" if min_within is not None else ", not required")
    )
    return VerifyCriteria(agreement, 0.0 if min_within is None else min_within, reason)


@dataclasses.dataclass
class VerificationResult:
    """Interpreter vs Keras on the same inputs.

    The tolerance is LCE's own end-to-end criterion, elementwise
    ``|tflite - keras| <= atol + rtol * |keras|``, on at least ``min_within`` of the samples
    (default all), plus a required top-1 agreement.

    Attributes:
        samples: number of inputs compared.
        max_abs_diff: largest absolute difference of any output element.
        mean_abs_diff: mean absolute difference.
        worst_excess: largest ``|diff| - (atol + rtol |keras|)``; <= 0 within tolerance.
        top1_agreement: share of samples whose arg-max output agrees.
        atol / rtol: the elementwise tolerance.
        min_agreement: the tolerance on ``top1_agreement``.
        within_share: share of samples whose every output is within the elementwise tolerance.
        min_within: the tolerance on ``within_share``.
        source: where the inputs come from.
        per_sample_max_abs_diff: max absolute difference of each sample.
        per_sample_sign_margin: for each sample, the smallest distance from zero of any input
            of a sign in Keras (`sign_margins`); None for a model without signs.
        unexplained: samples outside the tolerance or with another top-1 although every sign
            input lies at least `SIGN_MARGIN` from zero: rounding cannot explain them (a
            conversion error can). None for a model without signs.
        kernel: the LCE binary-conv kernel the interpreter used.
        keras_accuracy / tflite_accuracy: top-1 against labels (datasets only).
    """

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    worst_excess: float
    top1_agreement: float
    atol: float
    rtol: float
    min_agreement: float
    source: str
    per_sample_max_abs_diff: list[float]
    kernel: str = "default"
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    within_share: float = 1.0
    min_within: float = 1.0
    per_sample_sign_margin: list[float] | None = None
    unexplained: int | None = None

    @property
    def passed(self) -> bool:
        return self.within_share >= self.min_within and self.top1_agreement >= self.min_agreement

    def summary(self) -> str:
        """The human-readable report, ending in PASS or FAIL."""
        lines = [
            f"inputs: {self.samples} ({self.source}); LCE kernel: {self.kernel}",
            f"max |keras - tflite|: {self.max_abs_diff:.3g} (mean {self.mean_abs_diff:.3g})",
            f"top-1 agreement: {self.top1_agreement:.2%}",
        ]
        if self.keras_accuracy is not None:
            lines.append(
                f"top-1 accuracy vs labels: keras {self.keras_accuracy:.2%}, "
                f"tflite {self.tflite_accuracy:.2%}"
            )
        within = round(self.within_share * self.samples)
        lines.append(f"samples within tolerance: {within}/{self.samples}")
        if self.unexplained is not None and within < self.samples:
            lines.append(
                f"of the others, with every sign input >= {SIGN_MARGIN:g} from zero (not "
                f"rounding): {self.unexplained}"
            )
        lines.append(
            f"tolerance: |diff| <= {self.atol:g} + {self.rtol:g} * |keras| elementwise on "
            f">= {self.min_within:.0%} of the samples and top-1 agreement >= "
            f"{self.min_agreement:.0%}: {'PASS' if self.passed else 'FAIL'}"
        )
        if not self.passed:
            lines.extend(self._failure_hints())
        return "\n".join(lines)

    def _failure_hints(self) -> list[str]:
        hints = []
        if self.per_sample_sign_margin is not None:
            near = [m for m in self.per_sample_sign_margin if m < SIGN_MARGIN]
            hints.append(
                f"sign margins: {len(near)} of {self.samples} samples have a sign input within "
                f"{SIGN_MARGIN:g} of zero in Keras (closest {min(self.per_sample_sign_margin):.2g})"
                "; there the interpreter's rounding can take the other side of the sign, and one "
                "flipped sign moves the outputs: if only such samples differ, this is rounding, "
                "not the conversion"
            )
        if self.top1_agreement > 0:
            hints.append(
                "hint: in an untrained model (BatchNorm statistics at their initial values) one "
                "activation within rounding of zero that takes the other sign grows through "
                "the unnormalized blocks; verify a trained model, or compare with a "
                "--target xcore conversion (float convs on the same binary inputs) to tell "
                "this apart from a conversion error"
            )
        return hints


def run_interpreter(
    flatbuffer: bytes,
    inputs: np.ndarray,
    *,
    kernel: str = "default",
    num_threads: int = 1,
    use_xnnpack: bool = False,
) -> np.ndarray:
    """Run the LCE interpreter one sample at a time; int8 I/O is (de)quantized here.

    Arguments:
        flatbuffer: the converted model.
        inputs: float32 batch (N, ...) in the Keras model's input layout.
        kernel: LCE's binary-conv kernel: ``"default"``, ``"indirect_bgemm"`` or
            ``"reference"`` (the plain reference implementation).
        num_threads: interpreter threads.
        use_xnnpack: TFLite's XNNPACK delegate for the float ops.

    Returns:
        float32 outputs (N, ...).
    """
    interpreter = lce_interpreter(
        flatbuffer, kernel=kernel, threads=num_threads, use_xnnpack=use_xnnpack
    )
    return interpreter_predict(interpreter, inputs)


def interpreter_predict(interpreter: Any, inputs: np.ndarray) -> np.ndarray:
    """Run an interpreter of `lce_interpreter` on float ``inputs``; int8 I/O (a conversion
    with ``int8_io``) is quantized and dequantized here with the file's own scales.

    Arguments:
        interpreter: from `lce_interpreter`, made once and reused batch after batch.
        inputs: float32 batch (N, ...) in the Keras model's input layout.

    Returns:
        float32 outputs (N, ...).
    """
    x = np.asarray(inputs, np.float32)
    if interpreter.input_types[0] == np.int8:
        scale, zero_point = interpreter.input_scales[0], interpreter.input_zero_points[0]
        x = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    outputs = interpreter.predict(x)
    if interpreter.output_types[0] == np.int8:
        scale, zero_point = interpreter.output_scales[0], interpreter.output_zero_points[0]
        outputs = (outputs.astype(np.float32) - zero_point) * scale
    return np.asarray(outputs, np.float32)


def output_tolerance(flatbuffer: bytes, atol: float = DEFAULT_ATOL) -> float:
    """``atol`` for float outputs; plus one quantization step for int8 outputs."""
    outputs = io_details(flatbuffer)["outputs"]
    if outputs[0]["dtype"] == "int8":
        return atol + outputs[0]["scale"]
    return atol


def verify_conversion(
    model: tf.keras.Model,
    flatbuffer: bytes,
    inputs: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    atol: float | None = None,
    rtol: float = DEFAULT_RTOL,
    min_agreement: float = 1.0,
    min_within: float = 1.0,
    source: str = "random",
    kernel: str = "default",
) -> VerificationResult:
    """Compare the LCE interpreter with Keras on ``inputs``.

    Large binary networks amplify float rounding: a pre-activation within rounding of zero
    can take a different sign in Keras and in LCE (whose fused BatchNorm rounds differently),
    and one flipped bit moves the outputs by an amount that grows with their scale; Keras
    itself moves the same way under a tiny change of its input. Hence the relative term of
    the tolerance, as in LCE's own end-to-end tests (see docs/deployment.md for measurements).

    Arguments:
        model: the Keras model.
        flatbuffer: its conversion.
        inputs: float32 batch in the model's input layout.
        labels: optional integer labels (reports both accuracies).
        atol: absolute tolerance; default `output_tolerance` (1e-3, plus one quantization
            step for int8 outputs).
        rtol: relative tolerance.
        min_agreement: required share of samples with the same arg-max.
        min_within: required share of samples with every output within the elementwise
            tolerance (default 1: all). Over many real images a trained binary network meets
            a pre-activation within rounding of zero now and then; below 1 such samples are
            counted instead of failing the check.
        source: where the inputs come from (for the report).
        kernel: LCE binary-conv kernel of the interpreter (see `run_interpreter`).

    Returns:
        A `VerificationResult`.
    """
    expected_shape = tuple(model.input_shape[1:])
    if tuple(inputs.shape[1:]) != expected_shape:
        raise ModelMismatchError(
            f"inputs have shape {tuple(inputs.shape[1:])}, the model expects {expected_shape}"
        )
    keras_outputs, margins = keras_outputs_and_sign_margins(model, inputs)
    tflite_outputs = run_interpreter(flatbuffer, inputs, kernel=kernel)
    if tflite_outputs.shape != keras_outputs.shape:
        raise ModelMismatchError(
            f"the TFLite model outputs {tflite_outputs.shape[1:]}, the Keras model "
            f"{keras_outputs.shape[1:]}: the two files are not the same model"
        )
    atol = output_tolerance(flatbuffer) if atol is None else float(atol)
    diff = np.abs(keras_outputs - tflite_outputs)
    excess = diff - (atol + rtol * np.abs(keras_outputs))
    flat_keras = keras_outputs.reshape(len(inputs), -1)
    flat_tflite = tflite_outputs.reshape(len(inputs), -1)
    keras_top1, tflite_top1 = flat_keras.argmax(axis=1), flat_tflite.argmax(axis=1)
    within = excess.reshape(len(inputs), -1).max(axis=1) <= 0.0
    differs = ~within | (keras_top1 != tflite_top1)
    result = VerificationResult(
        samples=len(inputs),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        worst_excess=float(excess.max()),
        top1_agreement=float(np.mean(keras_top1 == tflite_top1)),
        atol=atol,
        rtol=float(rtol),
        min_agreement=float(min_agreement),
        within_share=float(np.mean(within)),
        min_within=float(min_within),
        source=source,
        per_sample_max_abs_diff=[float(d) for d in diff.reshape(len(inputs), -1).max(axis=1)],
        kernel=kernel,
        per_sample_sign_margin=None if margins is None else [float(m) for m in margins],
        unexplained=None if margins is None else int(np.sum(differs & (margins >= SIGN_MARGIN))),
    )
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        result.keras_accuracy = float(np.mean(keras_top1 == labels))
        result.tflite_accuracy = float(np.mean(tflite_top1 == labels))
    return result


def keras_predict(model: tf.keras.Model, inputs: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Inference-mode outputs of ``model``, computed eagerly batch by batch.

    ``model.predict`` first traces the whole network with AutoGraph, which costs a minute or
    more for ReActNet on this stack; eager calls compute the same thing without that.
    """
    outputs = [
        np.asarray(model(inputs[start : start + batch_size], training=False), np.float32)
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outputs)


def sign_inputs(model: tf.keras.Model) -> list[tf.Tensor]:
    """The Keras tensors that a sign binarizes: the inputs of every layer of ``model`` whose
    ``input_quantizer`` is a sign (larq's ``ste_sign``, ``approx_sign``, ... ; multi-bit
    quantizers are not signs), each tensor once (the two 1x1 convs of a ReActNet reduction
    block share theirs). Layers of nested models are not searched.
    """
    tensors: dict[int, tf.Tensor] = {}
    for layer in model.layers:
        quantizer = getattr(layer, "input_quantizer", None)
        if quantizer is None:
            continue
        name = getattr(quantizer, "__name__", type(quantizer).__name__)
        if "sign" in name.lower():
            tensors.setdefault(id(layer.input), layer.input)
    return list(tensors.values())


def keras_outputs_and_sign_margins(
    model: tf.keras.Model, inputs: np.ndarray, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray | None]:
    """`keras_predict` and `sign_margins` from one pass of Keras over ``inputs``.

    Returns:
        (outputs, margins): float32 outputs (N, ...); per sample the smallest ``|x|`` over
        every input ``x`` of a sign, or None when the model has no sign.
    """
    signs = sign_inputs(model)
    if not signs:
        return keras_predict(model, inputs, batch_size), None
    probe = tf.keras.Model(model.inputs, [*model.outputs, *signs])
    outputs, margins = [], []
    for start in range(0, len(inputs), batch_size):
        batch = probe(inputs[start : start + batch_size], training=False)
        outputs.append(np.asarray(batch[0], np.float32))
        margins.append(
            np.min(
                [np.abs(np.asarray(x)).reshape(len(batch[0]), -1).min(axis=1) for x in batch[1:]],
                axis=0,
            )
        )
    return np.concatenate(outputs), np.concatenate(margins).astype(np.float32)


def sign_margins(model: tf.keras.Model, inputs: np.ndarray) -> np.ndarray | None:
    """How far each sample's sign inputs stay from zero in Keras.

    A binary network is discontinuous at every sign: where an input of a sign lies within
    rounding of zero, another implementation (the LCE interpreter, Keras on a CPU with other
    vector instructions) can take the other side, and the flipped bit moves the outputs. A
    sample whose margin is at least `adambnn_larq.config.SIGN_MARGIN` is computed alike
    everywhere; comparisons that must not depend on the CPU use such samples.

    Arguments:
        model: a Keras model with larq sign quantizers (see `sign_inputs`).
        inputs: float32 batch in the model's input layout.

    Returns:
        Per sample, the smallest ``|x|`` over every input ``x`` of a sign (N,), or None when the
        model has no sign.
    """
    if not sign_inputs(model):
        return None
    return keras_outputs_and_sign_margins(model, inputs)[1]


def random_inputs(shape: Sequence[int], samples: int, seed: int = 0) -> np.ndarray:
    """Uniform [-1, 1) float32 inputs, as in LCE's own end-to-end tests."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(samples, *shape)).astype(np.float32)


def load_inputs(path: str | Path, shape: Sequence[int]) -> np.ndarray:
    """A user's own inputs for verification: a NumPy ``.npy`` array (N, *shape).

    Read without pickles (an object array is refused, its code never runs); the header is
    checked before any data is read.

    Arguments:
        path: the ``.npy`` file.
        shape: the model's input shape without the batch axis.

    Returns:
        float32 array (N, *shape).

    Raises:
        ConversionError: missing or unreadable file, pickled objects, another shape, no
            samples, non-finite or non-numeric values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"inputs file not found: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # pickled objects, a damaged header
        raise ConversionError(f"{path}: not a plain .npy array ({error})") from error
    except OSError as error:
        raise ConversionError(f"{path}: cannot read ({error})") from error
    if not isinstance(array, np.ndarray):
        raise ConversionError(f"{path}: holds several arrays (.npz); save one with numpy.save")
    expected = tuple(shape)
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
        wanted = ", ".join(str(size) for size in expected)
        raise ConversionError(
            f"{path}: inputs of shape {array.shape}, the model expects (N, {wanted})"
        )
    if len(array) == 0:
        raise ConversionError(f"{path}: no samples")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ConversionError(f"{path}: values of type {array.dtype}, numbers needed")
    inputs = np.asarray(array, np.float32)
    if not np.all(np.isfinite(inputs)):
        raise ConversionError(f"{path}: holds NaN or infinite values")
    return inputs


def dataset_inputs(
    name: str,
    samples: int,
    *,
    split: str | None = None,
    data_dir: str | None = None,
    channels: int | None = None,
    image_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``samples`` evaluation images and labels of a dataset of `adambnn_larq.data`.

    Arguments:
        name: a dataset name of `adambnn_larq.data` (mnist, fashion_mnist, cifar10, ...).
        samples: how many images.
        split: default: the dataset's evaluation split.
        data_dir: see `adambnn_larq.data.make_dataset`.
        channels / image_size: match the model's input (e.g. 3 channels for MNIST).

    Returns:
        (images, labels, split): float32 NHWC normalized images, int labels, the split used.
    """
    if split is None:
        split = data.dataset_info(name, data_dir=data_dir).eval_split
    options: dict[str, Any] = {"channels": channels}
    if image_size is not None:
        options["image_size"] = image_size
    dataset = data.make_dataset(
        name,
        split,
        batch_size=min(samples, 64),
        training=False,
        data_dir=data_dir,
        limit=samples,
        **options,
    )
    images, labels = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    if not images:
        raise ConfigError(f"dataset {name!r} split {split!r} gave no examples")
    return np.concatenate(images)[:samples], np.concatenate(labels)[:samples], split
