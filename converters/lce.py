"""Convert a Larq Keras model to an LCE-optimized TFLite flatbuffer, inspect it, verify it.

Three parts, each usable from Python and from the ``adambnn`` command line:

- `convert_model` runs the Larq Compute Engine converter and audits the result: the op census
  read from the flatbuffer, the file size, and whether every binary conv of the Keras model
  became an ``LceBconv2d``. Binary layers LCE does not accelerate (binary Dense, depthwise,
  multi-bit, a binary kernel without binary inputs, ...) are named in warnings
  (`ConversionError` under ``strict``).
- `op_census` / `io_details` read a ``.tflite`` file with TensorFlow's flatbuffer schema.
- `verify_conversion` runs the LCE interpreter and Keras on the same inputs and compares them.

Two conversion routes produce the same flatbuffer ops:

- ``"keras"``: `larq_compute_engine.convert_keras_model`, LCE's public API. It exports a
  SavedModel first, which traces every layer several times; on this stack (pure-Python
  protobuf 3.20) that takes minutes even for a small network.
- ``"graphdef"``: one trace of the inference function (without AutoGraph), frozen, then LCE's
  GraphDef converter: the route `convert_keras_model` itself falls back to, 10-20x faster here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adambnn_larq.logs import quiet_native_stderr

if TYPE_CHECKING:  # TensorFlow is imported lazily so that `adambnn --help` stays fast.
    import tensorflow as tf

CONVERSION_ROUTES = ("keras", "graphdef")
INTERPRETER_KERNELS = ("default", "indirect_bgemm", "reference")
TARGETS = ("arm", "xcore")

#: Default tolerances of `verify_conversion` (LCE's end-to-end test criterion): elementwise
#: ``|tflite - keras| <= atol + rtol * |keras|``.
DEFAULT_ATOL = 1e-3
DEFAULT_RTOL = 1e-3

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

_QUANTIZER_ATTRIBUTES = (
    "input_quantizer",
    "kernel_quantizer",
    "depthwise_quantizer",
    "pointwise_quantizer",
)

# TFLite tensor type enum -> NumPy dtype name, for the types a converted model can have at its
# inputs and outputs.
_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}


class ConversionError(ValueError):
    """The model cannot be converted as asked (bad input, or a `strict` audit failed)."""


# --------------------------------------------------------------------------------------------
# Progress


@contextmanager
def heartbeat(
    message: str, *, every: float = 10.0, stream=None, enabled: bool = True
) -> Iterator[None]:
    """Print ``message`` now and the elapsed time every ``every`` seconds until the block ends.

    The LCE converter is a single opaque call that can take minutes; this shows it is alive.

    Arguments:
        message: what is running.
        every: seconds between progress lines.
        stream: where to print (default: ``sys.stderr``).
        enabled: False makes this a no-op (quiet mode).
    """
    if not enabled:
        yield
        return

    def say(text: str) -> None:
        # sys.stderr is looked up each time: `quiet_native_stderr` may have replaced it.
        print(text, file=stream or sys.stderr, flush=True)

    start = time.monotonic()
    say(f"{message} ...")
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            say(f"  ... {time.monotonic() - start:.0f} s")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    say(f"  done in {time.monotonic() - start:.1f} s")


# --------------------------------------------------------------------------------------------
# Reading flatbuffers


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _read_flatbuffer(flatbuffer: bytes):
    schema = _schema()
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (missing the 'TFL3' file identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    except Exception as error:  # a truncated or corrupt buffer fails anywhere inside
        raise ValueError(f"corrupt TFLite flatbuffer ({type(error).__name__}: {error})") from error


def _op_names(model) -> list[str]:
    """Name of every operator of the main subgraph, in execution order."""
    schema = _schema()
    names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")
    }
    codes = []
    for code in model.operatorCodes:
        # Builtin codes above 127 live in `builtinCode`; older files only set the deprecated one.
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(code.customCode.decode())
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return [codes[op.opcodeIndex] for op in model.subgraphs[0].operators]


def op_census(flatbuffer: bytes) -> Counter[str]:
    """Count the operators of a TFLite model's main subgraph.

    Custom ops appear under their custom code (``LceBconv2d``, ``LceQuantize``, ...), builtin
    ops under their TFLite name (``CONV_2D``, ``ADD``, ...).

    Arguments:
        flatbuffer: the ``.tflite`` file's bytes.

    Returns:
        A `collections.Counter` from op name to count.

    Raises:
        ValueError: the bytes are not a TFLite model.
    """
    return Counter(_op_names(_read_flatbuffer(flatbuffer)))


def io_details(flatbuffer: bytes) -> dict[str, list[dict[str, Any]]]:
    """Shapes, dtypes and quantization of a TFLite model's inputs and outputs.

    Returns:
        ``{"inputs": [...], "outputs": [...]}``, each entry with ``shape``, ``dtype`` and, for
        quantized tensors, ``scale`` and ``zero_point``.
    """
    model = _read_flatbuffer(flatbuffer)
    graph = model.subgraphs[0]

    def describe(index: int) -> dict[str, Any]:
        tensor = graph.tensors[index]
        entry = {
            "name": tensor.name.decode(),
            "shape": [int(d) for d in tensor.shape],
            "dtype": _TFLITE_TYPES.get(tensor.type, f"type{tensor.type}"),
        }
        q = tensor.quantization
        if q is not None and q.scale is not None and len(q.scale):
            entry["scale"] = float(q.scale[0])
            entry["zero_point"] = int(q.zeroPoint[0])
        return entry

    return {
        "inputs": [describe(i) for i in graph.inputs],
        "outputs": [describe(i) for i in graph.outputs],
    }


def _conv_signatures(flatbuffer: bytes) -> dict[str, Counter]:
    """(kh, kw, in, out, stride_h, stride_w) of every LceBconv2d and float CONV_2D."""
    from flatbuffers import flexbuffers

    model = _read_flatbuffer(flatbuffer)
    graph = model.subgraphs[0]
    found: dict[str, Counter] = {"LceBconv2d": Counter(), "CONV_2D": Counter()}
    for op, name in zip(graph.operators, _op_names(model)):
        if name not in found:
            continue
        # Filters are OHWI; an LceBconv2d filter is bitpacked along I, so its options say C_in.
        out, kh, kw, packed_in = (int(d) for d in graph.tensors[op.inputs[1]].shape)
        if name == "LceBconv2d":
            options = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8)))
            signature = (
                kh,
                kw,
                int(options["channels_in"]),
                out,
                int(options["stride_height"]),
                int(options["stride_width"]),
            )
        else:
            # The object API unpacks the options union into a Conv2DOptionsT.
            options = op.builtinOptions
            signature = (kh, kw, packed_in, out, options.strideH, options.strideW)
        found[name][signature] += 1
    return found


# --------------------------------------------------------------------------------------------
# Auditing the Keras model


@dataclasses.dataclass(frozen=True)
class LayerFinding:
    """What LCE will do with one quantized Keras layer.

    Attributes:
        name: the Keras layer name.
        kind: ``"binary_conv"`` (a QuantConv2D with 1-bit inputs and weights, which should
            become an ``LceBconv2d``) or ``"unaccelerated"`` (any other quantized layer).
        reason: why the layer will not be accelerated; empty when it should be.
        signature: (kh, kw, in, out, stride_h, stride_w) for convs, else None.
    """

    name: str
    kind: str
    reason: str = ""
    signature: tuple[int, ...] | None = None


def _precision(quantizer) -> int | None:
    """Bits of a larq quantizer (1 for sign-like ones); None if unquantized or unknown."""
    if quantizer is None:
        return None
    return getattr(quantizer, "precision", None)


def audit_binary_layers(model: tf.keras.Model, *, target: str = "arm") -> list[LayerFinding]:
    """Classify every quantized layer of ``model`` by what LCE will make of it.

    Rules (larq-compute-engine 0.16, checked by the tests of this module):

    - a ``QuantConv2D`` with 1-bit input *and* kernel quantizers (kind ``"binary_conv"``)
      becomes ``LceBconv2d``; on ``target="xcore"`` only without zero padding (a
      ``"same"``/``pad_values=0`` one gets a reason and stays float: measured, not documented);
    - binary ``QuantDense``, ``QuantDepthwiseConv2D`` and every other quantized layer type run
      as float ops;
    - a binary kernel with real-valued inputs, binary inputs with real-valued weights (the
      step-1 network) and multi-bit quantizers run as float ops.

    Arguments:
        model: a Keras model built from larq layers.
        target: ``"arm"`` or ``"xcore"``.

    Returns:
        One `LayerFinding` per layer with any 1-bit or multi-bit quantizer, in model order.
    """
    import larq as lq

    findings = []
    for layer in _all_layers(model):
        quantizers = {
            attribute: getattr(layer, attribute)
            for attribute in _QUANTIZER_ATTRIBUTES
            if getattr(layer, attribute, None) is not None
        }
        precisions = {attribute: _precision(q) for attribute, q in quantizers.items()}
        low_bit = {a: p for a, p in precisions.items() if p is not None and p < 32}
        if not low_bit:
            continue
        multi_bit = {a: p for a, p in low_bit.items() if p > 1}
        kind_name = type(layer).__name__
        if multi_bit:
            details = ", ".join(f"{a}={p}-bit" for a, p in multi_bit.items())
            findings.append(
                LayerFinding(
                    layer.name,
                    "unaccelerated",
                    f"{kind_name} with a multi-bit quantizer ({details}): LCE accelerates "
                    "1-bit layers only, this one runs in float",
                )
            )
            continue
        if type(layer) is not lq.layers.QuantConv2D:
            what = {
                "QuantDense": "binary Dense: LCE has no binary fully-connected kernel (it "
                "becomes LceDequantize + float FULLY_CONNECTED); a 1x1 QuantConv2D is the "
                "accelerated equivalent",
                "QuantDepthwiseConv2D": "binary depthwise conv: LCE has no binary depthwise "
                "kernel, it runs as a float DEPTHWISE_CONV_2D",
            }.get(kind_name, f"{kind_name}: LCE accelerates only QuantConv2D, this runs in float")
            findings.append(LayerFinding(layer.name, "unaccelerated", what))
            continue
        signature = (*layer.kernel.shape, *layer.strides)
        input_bits = precisions.get("input_quantizer")
        kernel_bits = precisions.get("kernel_quantizer")
        if input_bits != 1:
            findings.append(
                LayerFinding(
                    layer.name,
                    "unaccelerated",
                    "binary kernel but real-valued inputs (no 1-bit input_quantizer): runs "
                    "as a float CONV_2D",
                    signature,
                )
            )
        elif kernel_bits != 1:
            findings.append(
                LayerFinding(
                    layer.name,
                    "unaccelerated",
                    "binary inputs but real-valued weights (a step-1 model?): runs as "
                    "LceDequantize + float CONV_2D",
                    signature,
                )
            )
        elif (
            target == "xcore"
            and layer.padding == "same"
            and float(getattr(layer, "pad_values", 0.0)) == 0.0
        ):
            findings.append(
                LayerFinding(
                    layer.name,
                    "binary_conv",
                    "zero-padded ('same', pad_values=0) binary conv: LCE's xcore target "
                    "supports one-padding only, this runs as a float CONV_2D",
                    signature,
                )
            )
        else:
            findings.append(LayerFinding(layer.name, "binary_conv", "", signature))
    return findings


def _all_layers(model) -> Iterator:
    for layer in model.layers:
        if isinstance(layer, type(model)) or hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def _float_conv_signatures(model) -> Counter:
    """Convs of the Keras model that are float by design (no quantizer at all, e.g. a stem)."""
    import tensorflow as tf

    found: Counter = Counter()
    for layer in _all_layers(model):
        if type(layer).__name__ in ("Conv2D", "QuantConv2D") and isinstance(
            layer, tf.keras.layers.Conv2D
        ):
            quantizers = [getattr(layer, a, None) for a in ("input_quantizer", "kernel_quantizer")]
            if all(_precision(q) in (None, 32) for q in quantizers):
                found[(*layer.kernel.shape, *layer.strides)] += 1
    return found


def check_dtype_policy(model: tf.keras.Model) -> None:
    """Raise `ConversionError` unless every layer computes in float32 (LCE's requirement)."""
    offending = []
    for layer in _all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        name = getattr(policy, "name", "float32")
        if name != "float32":
            offending.append(f"{layer.name} ({name})")
    if offending:
        shown = ", ".join(offending[:5]) + (" ..." if len(offending) > 5 else "")
        raise ConversionError(
            f"unsupported dtype policy: {len(offending)} layer(s) do not compute in float32: "
            f"{shown}. LCE converts float32 models only; rebuild the model under the "
            "'float32' policy and copy the weights (model.get_weights/set_weights)."
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
        for message in self.warnings:
            lines.append(f"warning: {message}")
        return "\n".join(lines)


def _describe_io(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['dtype']}{e['shape']}" for e in entries)


def _has_fake_quant(graph_def) -> bool:
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return any(node.op in _FAKE_QUANT_OPS for node in nodes)


def _convert_graphdef(
    model: tf.keras.Model, *, target: str, int8_io: bool, default_int8_range
) -> bytes:
    import tensorflow as tf
    from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer
    from larq_compute_engine.mlir.python.util import modify_integer_quantized_model_io_type
    from tensorflow.core.framework.types_pb2 import DataType
    from tensorflow.lite.python.util import get_tensor_name
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

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

    def inference(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    try:
        # AutoGraph rewrites every layer's Python source; larq models have no data-dependent
        # Python control flow, and skipping it makes tracing several times faster.
        concrete = tf.function(inference, autograph=False).get_concrete_function(*specs)
    except Exception:  # noqa: BLE001 - a model that needs AutoGraph still converts
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
    model: tf.keras.Model, *, target: str, int8_io: bool, default_int8_range
) -> tuple[bytes, list[str]]:
    import larq_compute_engine as lce
    import tensorflow as tf

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

    Returns:
        A `ConversionResult`.

    Raises:
        ConversionError: no binary layers, a non-float32 dtype policy, int8 I/O impossible,
            or (with ``strict``) a binary layer LCE does not accelerate.

    References:
        - Bannink et al., "Larq Compute Engine: Design, Benchmark, and Deploy State-of-the-Art
          Binarized Neural Networks", MLSys 2021, arXiv 2011.09398.
    """
    if target not in TARGETS:
        raise ConversionError(f"target must be one of {TARGETS}, got {target!r}")
    if route not in CONVERSION_ROUTES:
        raise ConversionError(f"route must be one of {CONVERSION_ROUTES}, got {route!r}")
    if default_int8_range is not None:
        low, high = (float(v) for v in default_int8_range)
        if not low < 0 < high:
            raise ConversionError(
                f"default_int8_range must be (min, max) with min < 0 < max, got {(low, high)}"
            )
        default_int8_range = (low, high)
    check_dtype_policy(model)
    findings = audit_binary_layers(model, target=target)
    if not any(
        _precision(getattr(layer, attribute, None)) == 1
        for layer in _all_layers(model)
        for attribute in _QUANTIZER_ATTRIBUTES
    ):
        raise ConversionError(
            f"model '{model.name}' has no binary layers (no larq quantizer of 1 bit): LCE would "
            "produce an ordinary float TFLite model. Convert float models with "
            "tf.lite.TFLiteConverter, or pass the binary (step-1/step-2) model."
        )
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
    census = op_census(flatbuffer)
    io = io_details(flatbuffer)
    if int8_io and not all(e["dtype"] == "int8" for e in io["inputs"] + io["outputs"]):
        raise ConversionError(
            "int8 input/output requested, but the model is not int8-quantized (no fake-quant "
            "ops from quantization-aware training), so LCE kept float32 I/O. Pass a default "
            "int8 range (--default-int8-range MIN,MAX; latency tests only) or train with "
            "fake quantization."
        )

    messages = list(notes)
    for finding in findings:
        if finding.kind == "unaccelerated":
            messages.append(f"layer '{finding.name}' will not be accelerated: {finding.reason}")
    missing = _missing_bconvs(findings, _conv_signatures(flatbuffer)["LceBconv2d"])
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
    float_by_design = sum(_float_conv_signatures(model).values())
    extra_float = max(0, census.get("CONV_2D", 0) - float_by_design)
    if default_int8_range is not None:
        messages.append(
            f"dummy int8 quantization with range {default_int8_range}: for latency tests only, "
            "outputs will differ from the Keras model"
        )
    result = ConversionResult(
        flatbuffer=flatbuffer,
        census=census,
        findings=findings,
        missing_bconvs=missing,
        extra_float_convs=extra_float,
        warnings=messages,
        seconds=seconds,
        route=route,
        target=target,
        io=io,
    )
    unaccelerated = [f for f in findings if f.kind == "unaccelerated"] or missing
    if strict and unaccelerated:
        raise ConversionError(
            "strict mode: binary layers that LCE does not accelerate:\n  "
            + "\n  ".join(m for m in messages if "accelerated" in m or "LceBconv2d" in m)
        )
    return result


def _missing_bconvs(findings: list[LayerFinding], converted: Counter) -> list[str]:
    """Binary convs without a matching LceBconv2d, matched by (kernel, channels, strides).

    When k of n same-shaped convs are missing, the k cannot be told apart by shape: the
    message then names the whole group.
    """
    groups: dict[tuple, list[str]] = {}
    for finding in findings:
        if finding.kind == "binary_conv":
            groups.setdefault(finding.signature, []).append(finding.name)
    missing = []
    for signature, names in groups.items():
        shortfall = len(names) - converted.get(signature, 0)
        if shortfall <= 0:
            continue
        if shortfall == len(names):
            missing.extend(names)
        else:
            missing.append(f"{shortfall} of [{', '.join(names)}]")
    return missing


# --------------------------------------------------------------------------------------------
# Verification


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
        lines.append(
            f"tolerance: |diff| <= {self.atol:g} + {self.rtol:g} * |keras| elementwise on "
            f">= {self.min_within:.0%} of the samples and top-1 agreement >= "
            f"{self.min_agreement:.0%}: {'PASS' if self.passed else 'FAIL'}"
        )
        if not self.passed and self.top1_agreement > 0:
            lines.append(
                "hint: in an untrained model (BatchNorm statistics at their initial values) one "
                "activation within rounding of zero that takes the other sign grows through "
                "the unnormalized blocks; verify a trained model, or compare with a "
                "--target xcore conversion (float convs on the same binary inputs) to tell "
                "this apart from a conversion error"
            )
        return "\n".join(lines)


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
    from larq_compute_engine import testing

    if kernel not in INTERPRETER_KERNELS:
        raise ValueError(f"kernel must be one of {INTERPRETER_KERNELS}, got {kernel!r}")
    with quiet_native_stderr():  # TFLite's "INFO: Created ... delegate" lines
        interpreter = testing.Interpreter(
            flatbuffer,
            num_threads=num_threads,
            use_reference_bconv=kernel == "reference",
            use_indirect_bgemm=kernel == "indirect_bgemm",
            use_xnnpack=use_xnnpack,
        )
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
        raise ValueError(
            f"inputs have shape {tuple(inputs.shape[1:])}, the model expects {expected_shape}"
        )
    keras_outputs = keras_predict(model, inputs)
    tflite_outputs = run_interpreter(flatbuffer, inputs, kernel=kernel)
    if tflite_outputs.shape != keras_outputs.shape:
        raise ValueError(
            f"the TFLite model outputs {tflite_outputs.shape[1:]}, the Keras model "
            f"{keras_outputs.shape[1:]}: the two files are not the same model"
        )
    atol = output_tolerance(flatbuffer) if atol is None else float(atol)
    diff = np.abs(keras_outputs - tflite_outputs)
    excess = diff - (atol + rtol * np.abs(keras_outputs))
    flat_keras = keras_outputs.reshape(len(inputs), -1)
    flat_tflite = tflite_outputs.reshape(len(inputs), -1)
    keras_top1, tflite_top1 = flat_keras.argmax(axis=1), flat_tflite.argmax(axis=1)
    result = VerificationResult(
        samples=len(inputs),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        worst_excess=float(excess.max()),
        top1_agreement=float(np.mean(keras_top1 == tflite_top1)),
        atol=atol,
        rtol=float(rtol),
        min_agreement=float(min_agreement),
        within_share=float(np.mean(excess.reshape(len(inputs), -1).max(axis=1) <= 0.0)),
        min_within=float(min_within),
        source=source,
        per_sample_max_abs_diff=[float(d) for d in diff.reshape(len(inputs), -1).max(axis=1)],
        kernel=kernel,
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


def random_inputs(shape: Sequence[int], samples: int, seed: int = 0) -> np.ndarray:
    """Uniform [-1, 1) float32 inputs, as in LCE's own end-to-end tests."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(samples, *shape)).astype(np.float32)


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
    from adambnn_larq import data

    if split is None:
        split = data.dataset_info(name, data_dir=data_dir).eval_split
    options = {"channels": channels}
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
        raise ValueError(f"dataset {name!r} split {split!r} gave no examples")
    return np.concatenate(images)[:samples], np.concatenate(labels)[:samples], split


# --------------------------------------------------------------------------------------------
# Command line


def _command_error(message: str):
    from adambnn_larq.cli import CommandError

    return CommandError(message)


def load_keras_model(path: str | os.PathLike) -> tf.keras.Model:
    """Load a Keras model file with `adambnn_larq.saving.load_model` (no code from the file).

    Raises:
        ConversionError: missing file, not a Keras model, weights only, Lambda layers.
    """
    # Importing the models module also silences larq's advice to clip binary latent weights,
    # which the reference deliberately does not (one log line per binary conv otherwise).
    import adambnn_larq.models  # noqa: F401
    from adambnn_larq.saving import load_model

    try:
        return load_model(path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        # Keras raises all of these for files that are models of something else.
        raise ConversionError(f"cannot load Keras model {path}: {error}") from error


def _check_writable(path: Path) -> None:
    """Fail before a minute-long conversion if ``path`` cannot be written."""
    from adambnn_larq.saving import OutputError, check_writable_file

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
    from adambnn_larq.saving import atomic_write_bytes

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


def _convert_command(args: argparse.Namespace) -> int:
    import json

    from adambnn_larq.saving import OutputError, atomic_write_text, check_writable_file

    output = Path(args.output)
    if args.report:
        try:
            check_writable_file(args.report, what="--report")
        except OutputError as error:
            raise _command_error(str(error)) from error
    try:
        result = convert_file(
            args.model,
            output,
            progress=not args.quiet,
            target=args.target,
            int8_io=args.int8_io,
            default_int8_range=args.default_int8_range,
            route=args.route,
            strict=args.strict,
        )
    except ConversionError as error:
        raise _command_error(str(error)) from error
    if args.report:
        report = {
            "model": str(args.model),
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
        }
        try:
            atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
        except OSError as error:
            # The report was asked for: no half result (a .tflite without it) is left behind.
            output.unlink(missing_ok=True)
            raise _command_error(
                f"cannot write --report {args.report}: {error.strerror or error}; "
                f"{output} was removed"
            ) from error
    print(f"wrote {output}")
    print(result.summary())
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    import json

    from adambnn_larq.saving import OutputError, atomic_write_text, check_writable_file

    tflite_path = Path(args.tflite)
    if not tflite_path.is_file():
        raise _command_error(f"TFLite file not found: {tflite_path}")
    if args.report:
        try:
            check_writable_file(args.report, what="--report")
        except OutputError as error:
            raise _command_error(str(error)) from error
    flatbuffer = tflite_path.read_bytes()
    try:
        io = io_details(flatbuffer)
    except ValueError as error:
        raise _command_error(f"{tflite_path}: {error}") from error
    try:
        model = load_keras_model(args.model)
    except ConversionError as error:
        raise _command_error(str(error)) from error
    shape = tuple(model.input_shape[1:])
    tflite_shape = tuple(io["inputs"][0]["shape"][1:])
    if shape != tflite_shape:
        raise _command_error(
            f"{args.model} takes inputs of shape {shape}, {tflite_path} of shape {tflite_shape}: "
            "they are not the same model"
        )
    labels = None
    if args.dataset:
        try:
            inputs, labels, split = dataset_inputs(
                args.dataset,
                args.samples,
                split=args.split,
                data_dir=args.data_dir,
                channels=shape[-1],
                image_size=shape[0] if shape[0] == shape[1] else None,
            )
        except (ValueError, FileNotFoundError, KeyError) as error:
            raise _command_error(f"dataset {args.dataset}: {error}") from error
        if tuple(inputs.shape[1:]) != shape:
            raise _command_error(
                f"dataset {args.dataset} gives images of shape {tuple(inputs.shape[1:])}, the "
                f"model expects {shape}"
            )
        source = f"{args.dataset}/{split}"
    else:
        inputs = random_inputs(shape, args.samples, seed=args.seed)
        source = f"random uniform[-1, 1), seed {args.seed}"
    with heartbeat(f"running Keras and the LCE interpreter on {len(inputs)} inputs"):
        try:
            result = verify_conversion(
                model,
                flatbuffer,
                inputs,
                labels=labels,
                atol=args.atol,
                rtol=args.rtol,
                min_agreement=args.min_agreement,
                min_within=args.min_within,
                source=source,
                kernel=args.kernel,
            )
        except ValueError as error:
            raise _command_error(str(error)) from error
    print(result.summary())
    if args.report:
        atomic_write_text(
            args.report, json.dumps(dataclasses.asdict(result) | {"passed": result.passed}) + "\n"
        )
    return 0 if result.passed else 1


def _int8_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. -3,3), got {text!r}") from error
    return low, high


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``adambnn convert`` and ``adambnn verify``."""
    from adambnn_larq.cli import non_negative_float, positive_int

    parser = subparsers.add_parser(
        "convert",
        help="convert a Keras BNN (.h5/.keras) to an LCE-optimized .tflite",
        description="Convert with the Larq Compute Engine, then report the op census, the file "
        "size and whether every binary conv became an LceBconv2d. Binary layers LCE does not "
        "accelerate are named in warnings (errors with --strict).",
    )
    parser.add_argument("model", help="Keras model file (.h5 or .keras)")
    parser.add_argument("--output", "-o", required=True, help="destination .tflite")
    parser.add_argument("--target", choices=TARGETS, default="arm")
    parser.add_argument(
        "--int8-io",
        action="store_true",
        help="int8 input/output tensors; needs fake-quant ops in the model or --default-int8-range",
    )
    parser.add_argument(
        "--default-int8-range",
        type=_int8_range,
        metavar="MIN,MAX",
        help="dummy int8 quantization of every tensor (latency tests only: outputs change)",
    )
    parser.add_argument(
        "--route",
        choices=CONVERSION_ROUTES,
        default="keras",
        help="keras: lce.convert_keras_model (via SavedModel); graphdef: one frozen trace, "
        "same ops, much faster",
    )
    parser.add_argument("--strict", action="store_true", help="fail on unaccelerated layers")
    parser.add_argument("--report", help="also write the census and audit as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=_convert_command)

    parser = subparsers.add_parser(
        "verify",
        help="compare a .tflite (LCE interpreter) with its Keras model",
        description="Run the LCE interpreter and Keras on the same inputs (dataset images or "
        "random) and report the max absolute difference and top-1 agreement. Exit status 1 "
        "beyond the tolerance.",
    )
    parser.add_argument("model", help="Keras model file (.h5 or .keras)")
    parser.add_argument("tflite", help="the converted .tflite")
    parser.add_argument("--dataset", help="mnist, fashion_mnist, cifar10, imagenet2012, ...")
    parser.add_argument("--split", help="dataset split (default: its evaluation split)")
    parser.add_argument("--data-dir", help="dataset directory (see adambnn_larq.data)")
    parser.add_argument(
        "--samples", type=positive_int, default=32, help="inputs to compare (default 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument(
        "--atol",
        type=non_negative_float,
        default=None,
        help=f"absolute tolerance (default {DEFAULT_ATOL}; plus one quantization step for "
        "int8 outputs)",
    )
    parser.add_argument(
        "--rtol",
        type=non_negative_float,
        default=DEFAULT_RTOL,
        help=f"relative tolerance ({DEFAULT_RTOL})",
    )
    parser.add_argument(
        "--min-agreement",
        type=non_negative_float,
        default=1.0,
        help="top-1 agreement required (default 1)",
    )
    parser.add_argument(
        "--min-within",
        type=non_negative_float,
        default=1.0,
        help="share of samples that must be within the elementwise tolerance (default 1)",
    )
    parser.add_argument(
        "--kernel",
        choices=INTERPRETER_KERNELS,
        default="default",
        help="LCE binary-conv kernel of the interpreter",
    )
    parser.add_argument("--report", help="also write the result as JSON here")
    parser.set_defaults(func=_verify_command)


__all__ = [
    "CONVERSION_ROUTES",
    "ConversionError",
    "ConversionResult",
    "LayerFinding",
    "VerificationResult",
    "add_commands",
    "audit_binary_layers",
    "check_dtype_policy",
    "convert_file",
    "convert_model",
    "dataset_inputs",
    "heartbeat",
    "io_details",
    "keras_predict",
    "load_keras_model",
    "op_census",
    "output_tolerance",
    "random_inputs",
    "run_interpreter",
    "verify_conversion",
]
