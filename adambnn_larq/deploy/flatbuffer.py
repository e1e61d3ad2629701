"""Read (and write) a ``.tflite`` flatbuffer with TensorFlow's schema: its op census and its
inputs and outputs, without running it; `read_model` / `write_model` for the graph rewrites of
`adambnn_larq.deploy.compress` and the op replay of `adambnn_larq.deploy.profile`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated

# TFLite tensor type enum -> NumPy dtype name, for the types a converted model can have at its
# inputs and outputs.
_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}


def _schema() -> Any:
    return schema_py_generated


_FILE_IDENTIFIER = b"TFL3"


def read_model(flatbuffer: bytes) -> Any:
    """The model as TensorFlow's flatbuffer object API (``schema_py_generated.ModelT``).

    Raises:
        ValueError: not a TFLite flatbuffer, or a corrupt one.
    """
    schema = _schema()
    if len(flatbuffer) < 8 or flatbuffer[4:8] != _FILE_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (missing the 'TFL3' file identifier)")
    try:
        return schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    except Exception as error:  # a truncated or corrupt buffer fails anywhere inside
        raise ValueError(f"corrupt TFLite flatbuffer ({type(error).__name__}: {error})") from error


def write_model(model: Any) -> bytes:
    """The ``.tflite`` bytes of a (modified) `read_model` object."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def builtin_code(code: Any) -> int:
    """The builtin operator of an ``OperatorCodeT``."""
    # Builtin codes above 127 live in `builtinCode`; older files only set the deprecated one.
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def op_type(model: Any, op: Any) -> str:
    """An operator's name: the custom code (``LceBconv2d``) or the builtin name (``ADD``)."""
    schema = _schema()
    builtin = builtin_code(model.operatorCodes[op.opcodeIndex])
    if builtin == schema.BuiltinOperator.CUSTOM:
        return model.operatorCodes[op.opcodeIndex].customCode.decode()
    for key, value in vars(schema.BuiltinOperator).items():
        if value == builtin and not key.startswith("_"):
            return key
    return f"BUILTIN_{builtin}"


def _op_names(model: Any) -> list[str]:
    """Name of every operator of the main subgraph, in execution order."""
    return [op_type(model, op) for op in model.subgraphs[0].operators]


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
    return Counter(_op_names(read_model(flatbuffer)))


def io_details(flatbuffer: bytes) -> dict[str, list[dict[str, Any]]]:
    """Shapes, dtypes and quantization of a TFLite model's inputs and outputs.

    Returns:
        ``{"inputs": [...], "outputs": [...]}``, each entry with ``shape``, ``dtype`` and, for
        quantized tensors, ``scale`` and ``zero_point``.
    """
    model = read_model(flatbuffer)
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


def conv_signatures(flatbuffer: bytes) -> dict[str, Counter]:
    """(kh, kw, in, out, stride_h, stride_w) of every LceBconv2d and float CONV_2D."""
    model = read_model(flatbuffer)
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
