"""Convert a Larq Keras model to an LCE-optimized TFLite flatbuffer, and audit the result.

`convert_model` runs the Larq Compute Engine converter and audits the result: the op census
read from the flatbuffer, the file size, and whether every binary conv of the Keras model
became an ``LceBconv2d``. Binary layers LCE does not accelerate (binary Dense, depthwise,
multi-bit, a binary kernel without binary inputs, ...) are named in warnings
(`ConversionError` under ``strict``). `convert_file` does the same from file to file. The
audit of the Keras model is `adambnn_larq.deploy.audit`.

Two conversion routes produce the same flatbuffer ops:

- ``"keras"``: `larq_compute_engine.convert_keras_model`, LCE's public API. It exports a
  SavedModel first, which traces every layer several times; on this stack (pure-Python
  protobuf 3.20) that takes minutes even for a small network.
- ``"graphdef"``: one trace of the inference function (without AutoGraph), frozen, then LCE's
  GraphDef converter: the route `convert_keras_model` itself falls back to, 10-20x faster here.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import larq_compute_engine as lce
import tensorflow as tf
from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer
from larq_compute_engine.mlir.python.util import modify_integer_quantized_model_io_type
from tensorflow.core.framework.types_pb2 import DataType
from tensorflow.lite.python.util import get_tensor_name
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from adambnn_larq.config import CONVERSION_ROUTES, TARGETS, WEIGHT_STORAGES
from adambnn_larq.deploy.audit import (
    LayerFinding,
    audit_binary_layers,
    check_dtype_policy,
    float_convs_by_design,
    has_binary_layers,
    missing_bconvs,
)
from adambnn_larq.deploy.compress import CompressionResult, compress_weights
from adambnn_larq.deploy.flatbuffer import conv_signatures, io_details, op_census
from adambnn_larq.deploy.fold import NotFoldableError, fold_for_deployment
from adambnn_larq.errors import ConversionError, OutputError
from adambnn_larq.logs import heartbeat, quiet_native_stderr
from adambnn_larq.rundir import atomic_write_bytes, check_writable_file
from adambnn_larq.saving import load_model

# TensorFlow ops that carry quantization-aware-training statistics (what lets LCE make int8).
_FAKE_QUANT_OPS = frozenset(
    {
        "FakeQuantWithMinMaxVars",
        "FakeQuantWithMinMaxVarsPerChannel",
        "FakeQuantWithMinMaxArgs",
        "FakeQuantWithMinMaxArgsPerChannel",
        "QuantizeAndDequantizeV2",
        "QuantizeAndDequantizeV3",
    }
)


# --------------------------------------------------------------------------------------------
# Conversion


@dataclasses.dataclass
class ConversionResult:
    """A converted model and the audit of the conversion.

    Attributes:
        flatbuffer: the ``.tflite`` bytes.
        census: op name -> count in the main subgraph.
        findings: `audit_binary_layers` of the Keras model.
        missing_bconvs: Keras binary convs that did not become ``LceBconv2d``.
        extra_float_convs: float ``CONV_2D`` ops beyond the model's float-by-design convs.
        warnings: human-readable problems (the strict mode raises on any of them).
        seconds: wall time of the converter call.
        route: ``"keras"`` or ``"graphdef"``.
        target: ``"arm"`` or ``"xcore"``.
        io: `io_details` of the flatbuffer.
        folded: whether `fold_for_deployment` rewrote the model before conversion.
        compression: what ``weights="int8"|"float16"`` stored in fewer bits, or None.
    """

    flatbuffer: bytes
    census: Counter
    findings: list[LayerFinding]
    missing_bconvs: list[str]
    extra_float_convs: int
    warnings: list[str]
    seconds: float
    route: str
    target: str
    io: dict[str, list[dict[str, Any]]]
    folded: bool = False
    compression: CompressionResult | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.flatbuffer)

    @property
    def binary_convs(self) -> list[str]:
        return [f.name for f in self.findings if f.kind == "binary_conv"]

    @property
    def all_binary_convs_converted(self) -> bool:
        return not self.missing_bconvs and self.census.get("LceBconv2d", 0) == len(
            self.binary_convs
        )

    def summary(self) -> str:
        """A multi-line human-readable report of the conversion."""
        expected = len(self.binary_convs)
        got = self.census.get("LceBconv2d", 0)
        lines = [
            f"target {self.target}, route {self.route}, {self.seconds:.1f} s",
            f"file size: {self.size_bytes:,} bytes ({self.size_bytes / 1e6:.2f} MB)",
            f"inputs: {_describe_io(self.io['inputs'])}; "
            f"outputs: {_describe_io(self.io['outputs'])}",
            "op census (ops and counts):",
        ]
        for name, count in sorted(self.census.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {name:<24} {count}")
        lines.append(
            f"binary convs -> LceBconv2d: {got} of {expected}"
            + (" (all converted)" if self.all_binary_convs_converted else " (NOT all converted)")
        )
        float_convs = self.census.get("CONV_2D", 0)
        lines.append(
            f"float CONV_2D: {float_convs} ({float_convs - self.extra_float_convs} float by "
            f"design, e.g. the stem; {self.extra_float_convs} unexpected)"
        )
        if self.folded:
            lines.append("folded: RPReLU/RSign constants folded (adambnn_larq.deploy.fold)")
        if self.compression is not None:
            lines.append(self.compression.summary())
        for message in self.warnings:
            lines.append(f"warning: {message}")
        return "\n".join(lines)

    def to_json(
        self, *, model: str | os.PathLike, output: str | os.PathLike, weights: str
    ) -> dict[str, Any]:
        """The report ``adambnn convert --report`` writes (JSON-ready)."""
        return conversion_report(self, model=model, output=output, weights=weights)


def conversion_report(
    result: ConversionResult, *, model: str | os.PathLike, output: str | os.PathLike, weights: str
) -> dict[str, Any]:
    """`ConversionResult.to_json`, for anything with a conversion result's attributes."""
    compressed = result.compression.tensors if result.compression else []
    return {
        "model": str(model),
        "output": str(output),
        "target": result.target,
        "route": result.route,
        "size_bytes": result.size_bytes,
        "census": dict(result.census),
        "binary_convs": len(result.binary_convs),
        "lce_bconv2d": result.census.get("LceBconv2d", 0),
        "all_binary_convs_converted": result.all_binary_convs_converted,
        "missing_bconvs": result.missing_bconvs,
        "warnings": result.warnings,
        "io": result.io,
        "seconds": round(result.seconds, 2),
        "folded": result.folded,
        "weights": weights,
        "compressed_tensors": [dataclasses.asdict(t) for t in compressed],
    }


def _describe_io(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['dtype']}{e['shape']}" for e in entries)


def _has_fake_quant(graph_def: Any) -> bool:
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return any(node.op in _FAKE_QUANT_OPS for node in nodes)


def _convert_graphdef(
    model: tf.keras.Model,
    *,
    target: str,
    int8_io: bool,
    default_int8_range: tuple[float, float] | None,
) -> bytes:
    specs = []
    for tensor in model.inputs:
        shape = tensor.shape.as_list()
        if None in shape[1:]:
            raise ConversionError(
                f"input '{tensor.name}' has shape {shape}: TFLite needs every dimension but the "
                "batch fixed; rebuild the model with a fixed input_shape"
            )
        # LCE fixes the batch to 1, as convert_keras_model does.
        specs.append(tf.TensorSpec([1, *shape[1:]], tensor.dtype))

    def inference(*inputs: tf.Tensor) -> tf.Tensor:
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    try:
        # AutoGraph rewrites every layer's Python source; larq models have no data-dependent
        # Python control flow, and skipping it makes tracing several times faster.
        concrete = tf.function(inference, autograph=False).get_concrete_function(*specs)
    except Exception:  # a model that needs AutoGraph still converts
        concrete = tf.function(inference).get_concrete_function(*specs)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    should_quantize = default_int8_range is not None or _has_fake_quant(graph_def)
    flatbuffer = convert_graphdef_to_tflite_flatbuffer(
        graph_def.SerializeToString(),
        [get_tensor_name(t) for t in inputs],
        [DataType.Name(t.dtype.as_datatype_enum) for t in inputs],
        [t.shape.as_list() for t in inputs],
        [get_tensor_name(t) for t in frozen.outputs],
        should_quantize,
        target,
        tuple(default_int8_range) if default_int8_range is not None else None,
    )
    if int8_io and should_quantize:
        flatbuffer = modify_integer_quantized_model_io_type(
            flatbuffer, inference_input_type=tf.int8, inference_output_type=tf.int8
        )
    return bytes(flatbuffer)


def _convert_keras(
    model: tf.keras.Model,
    *,
    target: str,
    int8_io: bool,
    default_int8_range: tuple[float, float] | None,
) -> tuple[bytes, list[str]]:
    io_type = tf.int8 if int8_io else tf.float32
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flatbuffer = lce.convert_keras_model(
            model,
            inference_input_type=io_type,
            inference_output_type=io_type,
            target=target,
            experimental_default_int8_range=(
                tuple(default_int8_range) if default_int8_range is not None else None
            ),
        )
    notes = []
    for warning in caught:
        text = str(warning.message)
        if "falling back to graphdef" in text:
            notes.append(
                "LCE's SavedModel conversion failed and convert_keras_model fell back to its "
                "graphdef route"
            )
    return bytes(flatbuffer), notes


def convert_model(
    model: tf.keras.Model,
    *,
    target: str = "arm",
    int8_io: bool = False,
    default_int8_range: Sequence[float] | None = None,
    route: str = "keras",
    strict: bool = False,
    progress: bool = False,
    fold: bool = False,
    weights: str = "float32",
) -> ConversionResult:
    """Convert a Larq Keras model with the Larq Compute Engine and audit the result.

    Arguments:
        model: the Keras model (float32 policy, fixed input size).
        target: ``"arm"`` (Raspberry Pi, Android; the optimized kernels) or ``"xcore"``.
        int8_io: int8 input and output tensors. Needs an int8-quantized model: either
            fake-quant ops in the graph (quantization-aware training) or
            ``default_int8_range``. LCE silently keeps float I/O otherwise; this raises.
        default_int8_range: (min, max) assumed for every tensor without quantization
            statistics: "dummy quantization", for latency experiments only; the model then
            does not compute what the Keras model computes.
        route: ``"keras"`` (`larq_compute_engine.convert_keras_model`) or ``"graphdef"``
            (one trace, frozen, LCE's GraphDef converter; same ops, much faster here).
        strict: raise `ConversionError` if any binary layer is not accelerated.
        progress: print progress to stderr while the converter runs.
        fold: convert `fold_for_deployment(model)` (a ReActNet of this package): the same
            function with RPReLU/RSign constants folded and fewer float ops.
        weights: ``"float32"`` (as converted), ``"int8"`` or ``"float16"``: store large float
            weights (the classifier) in fewer bits (`compress_weights`); outputs then differ
            from Keras by the rounding of those weights.

    Returns:
        A `ConversionResult`.

    Raises:
        ConversionError: no binary layers, a non-float32 dtype policy, int8 I/O impossible,
            or (with ``strict``) a binary layer LCE does not accelerate.

    References:
        - Bannink et al., "Larq Compute Engine: Design, Benchmark, and Deploy State-of-the-Art
          Binarized Neural Networks", MLSys 2021, arXiv 2011.09398.
    """
    default_int8_range = _check_options(target, weights, route, default_int8_range)
    check_dtype_policy(model)
    findings = audit_binary_layers(model, target=target)
    if not has_binary_layers(model):
        raise ConversionError(
            f"model '{model.name}' has no binary layers (no larq quantizer of 1 bit): LCE would "
            "produce an ordinary float TFLite model. Convert float models with "
            "tf.lite.TFLiteConverter, or pass the binary (step-1/step-2) model."
        )
    trained = model
    if fold:
        try:
            model = fold_for_deployment(model)
        except NotFoldableError as error:
            raise ConversionError(f"cannot fold: {error}") from error
    start = time.monotonic()
    notes: list[str] = []
    with (
        heartbeat(f"converting '{model.name}' with LCE ({route} route)", enabled=progress),
        quiet_native_stderr(),  # the MLIR converter's absl lines
    ):
        if route == "keras":
            flatbuffer, notes = _convert_keras(
                model, target=target, int8_io=int8_io, default_int8_range=default_int8_range
            )
        else:
            flatbuffer = _convert_graphdef(
                model, target=target, int8_io=int8_io, default_int8_range=default_int8_range
            )
    seconds = time.monotonic() - start
    compression = None
    if weights != "float32":
        compression = compress_weights(flatbuffer, weights)
        flatbuffer = compression.flatbuffer
    io = io_details(flatbuffer)
    if int8_io and not all(e["dtype"] == "int8" for e in io["inputs"] + io["outputs"]):
        raise ConversionError(
            "int8 input/output requested, but the model is not int8-quantized (no fake-quant "
            "ops from quantization-aware training), so LCE kept float32 I/O. Pass a default "
            "int8 range (--default-int8-range MIN,MAX; latency tests only) or train with "
            "fake quantization."
        )
    census = op_census(flatbuffer)
    missing = missing_bconvs(findings, conv_signatures(flatbuffer)["LceBconv2d"])
    messages = _warnings(notes, findings, missing, default_int8_range)
    unaccelerated = [f for f in findings if f.kind == "unaccelerated"] or missing
    if strict and unaccelerated:
        raise ConversionError(
            "strict mode: binary layers that LCE does not accelerate:\n  "
            + "\n  ".join(m for m in messages if "accelerated" in m or "LceBconv2d" in m)
        )
    return ConversionResult(
        flatbuffer=flatbuffer,
        census=census,
        findings=findings,
        missing_bconvs=missing,
        extra_float_convs=max(0, census.get("CONV_2D", 0) - float_convs_by_design(trained)),
        warnings=messages,
        seconds=seconds,
        route=route,
        target=target,
        io=io,
        folded=fold,
        compression=compression,
    )


def _check_options(
    target: str, weights: str, route: str, default_int8_range: Sequence[float] | None
) -> tuple[float, float] | None:
    """`convert_model`'s choices checked before any work; the int8 range as two floats."""
    if target not in TARGETS:
        raise ConversionError(f"target must be one of {TARGETS}, got {target!r}")
    if weights not in WEIGHT_STORAGES:
        raise ConversionError(f"weights must be one of {WEIGHT_STORAGES}, got {weights!r}")
    if route not in CONVERSION_ROUTES:
        raise ConversionError(f"route must be one of {CONVERSION_ROUTES}, got {route!r}")
    if default_int8_range is None:
        return None
    low, high = (float(v) for v in default_int8_range)
    if not low < 0 < high:
        raise ConversionError(
            f"default_int8_range must be (min, max) with min < 0 < max, got {(low, high)}"
        )
    return low, high


def _warnings(
    notes: list[str],
    findings: list[LayerFinding],
    missing: list[str],
    default_int8_range: tuple[float, float] | None,
) -> list[str]:
    """The conversion's warnings: the converter's notes, the unaccelerated layers, the binary
    convs that did not become LceBconv2d (grouped by the audit's reason), dummy int8."""
    messages = list(notes)
    for finding in findings:
        if finding.kind == "unaccelerated":
            messages.append(f"layer '{finding.name}' will not be accelerated: {finding.reason}")
    reasons = {f.name: f.reason for f in findings if f.kind == "binary_conv" and f.reason}
    unexplained = [name for name in missing if name not in reasons]
    by_reason: dict[str, list[str]] = {}
    for name in missing:
        if name in reasons:
            by_reason.setdefault(reasons[name], []).append(name)
    for reason, names in by_reason.items():
        quoted = ", ".join(f"'{name}'" for name in names)
        messages.append(
            f"{len(names)} binary conv(s) did not become LceBconv2d: {reason}: {quoted}"
        )
    if unexplained:
        messages.append(
            f"{len(unexplained)} binary conv(s) did not become LceBconv2d: "
            + ", ".join(unexplained)
            + " (LCE needs the sign directly before the conv: no pad, reshape or other op "
            "between them)"
        )
    if default_int8_range is not None:
        messages.append(
            f"dummy int8 quantization with range {default_int8_range}: for latency tests only, "
            "outputs will differ from the Keras model"
        )
    return messages


def load_keras_model(path: str | os.PathLike) -> tf.keras.Model:
    """Load a Keras model file with `adambnn_larq.saving.load_model` (no code from the file).

    Raises:
        ConversionError: missing file, not a Keras model, weights only, Lambda layers.
    """
    # Importing the models module also silences larq's advice to clip binary latent weights,
    # which the reference deliberately does not (one log line per binary conv otherwise).

    try:
        return load_model(path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        # Keras raises all of these for files that are models of something else.
        raise ConversionError(f"cannot load Keras model {path}: {error}") from error


def _check_writable(path: Path) -> None:
    """Fail before a minute-long conversion if ``path`` cannot be written."""
    try:
        check_writable_file(path, what="output", suffixes=(".tflite",))
    except OutputError as error:
        raise ConversionError(str(error)) from error


def convert_file(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    progress: bool = False,
    **options: Any,
) -> ConversionResult:
    """`convert_model` from a model file to a ``.tflite`` file, as ``adambnn convert`` does.

    The output is checked for writability before the (long) conversion and written
    atomically: after an error there is no output file, complete or partial.

    Arguments:
        model_path: a ``.h5``/``.keras`` file saved by this project (or any larq model).
        output_path: the destination, ending in ``.tflite``.
        progress: print progress to stderr.
        **options: `convert_model` keyword arguments (target, int8_io, route, strict, ...).

    Returns:
        The `ConversionResult`.

    Raises:
        ConversionError: any problem with the input, the output or the conversion.
    """
    output = Path(output_path)
    _check_writable(output)
    if progress:
        print(f"loading {model_path}", file=sys.stderr, flush=True)
    model = load_keras_model(model_path)
    result = convert_model(model, progress=progress, **options)
    try:
        atomic_write_bytes(output, result.flatbuffer)
    except OSError as error:
        raise ConversionError(f"cannot write output {output}: {error}") from error
    return result
