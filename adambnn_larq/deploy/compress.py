"""Smaller `.tflite` files: large float weights stored as int8 (per output channel) or float16.

LCE already packs binary conv weights into bits; what stays large in a binary network are its
float layers, above all the classifier (ReActNet-A: 1024 x 1000 float32, 4.1 MB of a 7.7 MB
file). `compress_weights` rewrites a converted flatbuffer so that each large constant weight
of a ``FULLY_CONNECTED``, ``CONV_2D`` or ``DEPTHWISE_CONV_2D`` is stored in 8 or 16 bits and
restored by a ``DEQUANTIZE`` op in front of its consumer. TFLite's DEQUANTIZE of a constant
runs once, when the interpreter prepares the model, so inference still computes in float32
with the restored weights ("weight-only quantization", what TFLite's float16 option does).

- ``"int8"``: symmetric per-output-channel quantization, \\(q = \\mathrm{round}(w / s_o)\\) with
  \\(s_o = \\max_i |w_{o,i}| / 127\\), zero point 0: a weight moves by at most \\(s_o / 2\\).
  4x smaller.
- ``"float16"``: IEEE half precision, relative error at most \\(2^{-11}\\). 2x smaller.

The outputs change by the rounding of the weights; ``adambnn verify`` reports by how much
(docs/deployment.md gives the numbers measured on ReActNet-A and the demo model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from adambnn_larq.config import WEIGHT_STORAGES
from adambnn_larq.deploy.flatbuffer import builtin_code, op_type, read_model, write_model

#: The compressed formats ("float32" stores weights as they are).
WEIGHT_FORMATS: tuple[str, ...] = tuple(f for f in WEIGHT_STORAGES if f != "float32")

#: Weights with fewer elements stay float32: a few kB (e.g. the stem) are not worth an op.
DEFAULT_MIN_ELEMENTS = 4096

#: Op -> (input index of its weights, axis of the output channel in that tensor).
_WEIGHT_INPUTS = {
    schema.BuiltinOperator.FULLY_CONNECTED: (1, 0),  # [out, in]
    schema.BuiltinOperator.CONV_2D: (1, 0),  # [out, kh, kw, in]
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: (1, 3),  # [1, kh, kw, out]
}
# DEQUANTIZE versions (TFLite's op_version.cc): 2 = int8 per tensor, 3 = float16,
# 5 = int8 per channel.
_DEQUANTIZE_VERSION = {"int8": 5, "float16": 3}


@dataclass(frozen=True)
class CompressedTensor:
    """One weight tensor that `compress_weights` stored in fewer bits.

    Attributes:
        name: the tensor's name in the flatbuffer.
        op: the op that uses it (``FULLY_CONNECTED``, ...).
        shape: its shape.
        bytes_before: float32 size.
        bytes_after: stored size (for int8 with the per-channel scales and zero points).
        max_abs_error: largest |restored - original| weight.
    """

    name: str
    op: str
    shape: tuple[int, ...]
    bytes_before: int
    bytes_after: int
    max_abs_error: float


@dataclass
class CompressionResult:
    """What `compress_weights` produced.

    Attributes:
        flatbuffer: the rewritten model.
        weight_format: ``"int8"`` or ``"float16"``.
        tensors: every tensor that was compressed.
        size_before: bytes of the input flatbuffer.
    """

    flatbuffer: bytes
    weight_format: str
    tensors: list[CompressedTensor] = field(default_factory=list)
    size_before: int = 0

    @property
    def size_after(self) -> int:
        return len(self.flatbuffer)

    def summary(self) -> str:
        saved = self.size_before - self.size_after
        lines = [
            f"weights stored as {self.weight_format}: {len(self.tensors)} tensor(s), "
            f"{self.size_before:,} -> {self.size_after:,} bytes ({saved:,} saved)"
        ]
        for tensor in self.tensors:
            lines.append(
                f"  {tensor.op} {tensor.name} {list(tensor.shape)}: {tensor.bytes_before:,} -> "
                f"{tensor.bytes_after:,} bytes, max |weight error| {tensor.max_abs_error:.2e}"
            )
        return "\n".join(lines)


def quantize_per_channel(weights: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization with one scale per index of ``axis``.

    Returns:
        ``(q, scales)``: int8 values in [-127, 127] and float32 scales with
        ``q * scales`` (broadcast along ``axis``) approximating ``weights``. An all-zero
        channel gets scale 1 (its values stay exactly 0).
    """
    moved = np.moveaxis(np.asarray(weights, np.float32), axis, 0)
    peak = np.abs(moved.reshape(moved.shape[0], -1)).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (moved.ndim - 1)
    q = np.clip(np.round(moved / scales.reshape(shape)), -127, 127).astype(np.int8)
    return np.moveaxis(q, 0, axis), scales


def dequantize_per_channel(q: np.ndarray, scales: np.ndarray, axis: int) -> np.ndarray:
    """The float32 weights a TFLite DEQUANTIZE op restores from `quantize_per_channel`."""
    shape = [1] * q.ndim
    shape[axis] = -1
    return q.astype(np.float32) * scales.reshape(shape)


def _opcode_index(model: Any, builtin: int, version: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if builtin_code(code) == builtin:
            code.version = max(code.version, version)
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def compress_weights(
    flatbuffer: bytes,
    weight_format: str = "int8",
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
) -> CompressionResult:
    """Store the large float32 weights of a TFLite model in int8 or float16.

    Arguments:
        flatbuffer: a converted model (``.tflite`` bytes, e.g. from LCE).
        weight_format: ``"int8"`` (per output channel, symmetric) or ``"float16"``.
        min_elements: only weights with at least this many elements are compressed.

    Returns:
        A `CompressionResult` (an unchanged copy of the model when nothing qualifies).

    Raises:
        ValueError: not a TFLite flatbuffer, or an unknown ``weight_format``.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(
            f"unknown weight format {weight_format!r}; choose one of {list(WEIGHT_FORMATS)}"
        )
    model = read_model(flatbuffer)
    graph = model.subgraphs[0]
    consumers_of: dict[int, list[int]] = {}
    for position, op in enumerate(graph.operators):
        for tensor_index in op.inputs if op.inputs is not None else []:
            consumers_of.setdefault(int(tensor_index), []).append(position)

    # (position of the first consumer, dequantize op) pairs, inserted at the end.
    inserts: list[tuple[int, object]] = []
    compressed: list[CompressedTensor] = []
    seen: set[int] = set()
    for op in graph.operators:
        found = _weight_input(model, op, min_elements)
        if found is None or found[0] in seen:
            continue
        tensor_index, axis = found
        seen.add(tensor_index)
        tensor = graph.tensors[tensor_index]
        buffer = model.buffers[tensor.buffer]
        shape = tuple(int(d) for d in tensor.shape)
        weights = np.frombuffer(bytes(np.asarray(buffer.data, np.uint8)), np.float32)
        weights = weights.reshape(shape)
        stored, data, restored, bytes_after = _encode(weights, axis, weight_format)
        stored.name = tensor.name + f"_{weight_format}".encode()
        # The original tensor keeps its index (every consumer still reads it) and becomes the
        # DEQUANTIZE output; its bytes move, re-encoded, to the new stored tensor.
        buffer.data = np.frombuffer(data, np.uint8)
        stored.buffer = tensor.buffer
        empty = schema.BufferT()
        model.buffers.append(empty)
        tensor.buffer = len(model.buffers) - 1
        graph.tensors.append(stored)

        dequantize = schema.OperatorT()
        dequantize.opcodeIndex = _opcode_index(
            model, schema.BuiltinOperator.DEQUANTIZE, _DEQUANTIZE_VERSION[weight_format]
        )
        dequantize.inputs = [len(graph.tensors) - 1]
        dequantize.outputs = [tensor_index]
        inserts.append((min(consumers_of[tensor_index]), dequantize))
        compressed.append(
            CompressedTensor(
                name=tensor.name.decode(),
                op=op_type(model, op),
                shape=shape,
                bytes_before=4 * weights.size,
                bytes_after=bytes_after,
                max_abs_error=float(np.abs(restored - weights).max()),
            )
        )
    # Insert from the back so that earlier positions stay valid; each DEQUANTIZE runs right
    # before the first op that reads its output.
    for position, dequantize in sorted(inserts, key=lambda item: item[0], reverse=True):
        graph.operators.insert(position, dequantize)

    return CompressionResult(
        flatbuffer=write_model(model),
        weight_format=weight_format,
        tensors=compressed,
        size_before=len(flatbuffer),
    )


def _weight_input(model: Any, op: Any, min_elements: int) -> tuple[int, int] | None:
    """(tensor index, channel axis) of ``op``'s weights if they are float32 constants worth
    compressing (at least ``min_elements``), else None."""
    builtin = builtin_code(model.operatorCodes[op.opcodeIndex])
    if builtin not in _WEIGHT_INPUTS or op.inputs is None:
        return None
    input_position, axis = _WEIGHT_INPUTS[builtin]
    if len(op.inputs) <= input_position:
        return None
    tensor_index = int(op.inputs[input_position])
    tensor = model.subgraphs[0].tensors[tensor_index]
    buffer = model.buffers[tensor.buffer]
    if (
        tensor.type != schema.TensorType.FLOAT32
        or buffer.data is None
        or len(buffer.data) < 4 * min_elements
    ):
        return None
    return tensor_index, axis


def _encode(
    weights: np.ndarray, axis: int, weight_format: str
) -> tuple[Any, bytes, np.ndarray, int]:
    """The stored tensor (type, shape, quantization), its bytes, the weights as a DEQUANTIZE
    will restore them, and the bytes the model then spends on them."""
    stored = schema.TensorT()
    stored.shape = list(weights.shape)
    if weight_format == "int8":
        q, scales = quantize_per_channel(weights, axis)
        stored.type = schema.TensorType.INT8
        quantization = schema.QuantizationParametersT()
        quantization.scale = scales.tolist()
        quantization.zeroPoint = [0] * len(scales)
        quantization.quantizedDimension = axis
        stored.quantization = quantization
        data = q.tobytes()
        # Per channel: a float32 scale and an int64 zero point (the schema's types).
        return stored, data, dequantize_per_channel(q, scales, axis), len(data) + 12 * len(scales)
    half = weights.astype(np.float16)
    stored.type = schema.TensorType.FLOAT16
    data = half.tobytes()
    return stored, data, half.astype(np.float32), len(data)


def compressed_weights(flatbuffer: bytes) -> dict[str, str]:
    """The weights a model stores in fewer bits: ``{tensor name: "int8" | "float16"}``.

    A weight is compressed when a ``DEQUANTIZE`` op reads a constant int8 or float16 tensor
    (what `compress_weights` and TFLite's float16 option write). ``verify`` uses this to judge
    such a file by top-1 agreement rather than LCE's elementwise tolerance.
    """
    model = read_model(flatbuffer)
    graph = model.subgraphs[0]
    formats = {schema.TensorType.INT8: "int8", schema.TensorType.FLOAT16: "float16"}
    found = {}
    for op in graph.operators:
        if builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.DEQUANTIZE:
            continue
        source = graph.tensors[op.inputs[0]]
        data = model.buffers[source.buffer].data
        if source.type in formats and data is not None and len(data):
            found[graph.tensors[op.outputs[0]].name.decode()] = formats[source.type]
    return found
