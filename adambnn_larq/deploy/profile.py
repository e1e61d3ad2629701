"""Where the time of a converted model goes: per op type and per layer.

Two sources, one `Profile`:

- **On a board** (``adambnn benchmark --remote ... --profile``): ``lce_benchmark_model
  --enable_op_profiling=true`` times every op inside the interpreter; `parse_op_profile`
  reads its "Operator-wise Profiling Info for Regular Benchmark Runs" tables (TFLite's
  profile summarizer format).
- **On this host** (``adambnn benchmark MODEL.tflite --profile``): LCE's Python interpreter
  has no op profiler, so `profile_host` replays the model op by op: each op of the main
  subgraph becomes a one-op model (its constant inputs included, its other inputs random data
  of the right type and shape), timed in the LCE interpreter with the requested kernel, minus
  the time of a model that only copies the same inputs in and out (the interpreter's call
  and copy overhead). The sum over the ops is reported beside the whole model's time of the
  same run: their ratio says how well the isolated ops add up to the real thing (caches are
  warmer for an op alone; fusion across ops does not exist in TFLite).
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from adambnn_larq.deploy.flatbuffer import op_type, read_model, write_model
from adambnn_larq.deploy.interpreter import lce_interpreter

_NUMPY_TYPES: dict[int, Any] = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.UINT8: np.uint8,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.BOOL: np.bool_,
}


@dataclass(frozen=True)
class OpTime:
    """One op of a profile.

    Attributes:
        index: position in the main subgraph (execution order).
        op: op type (``LceBconv2d``, ``ADD``, ...).
        name: the op's output tensor name (the layer it comes from) or the profiler's name.
        ms: average time per inference.
    """

    index: int
    op: str
    name: str
    ms: float


@dataclass
class Profile:
    """Per-op times of one model on one machine.

    Attributes:
        ops: every op, in execution order.
        source: ``"host replay"`` or ``"lce_benchmark_model"``.
        whole_model_ms: the whole model's time measured in the same run (None if unknown).
        settings: kernel, threads, runs ... of the measurement.
    """

    ops: list[OpTime]
    source: str
    whole_model_ms: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return sum(op.ms for op in self.ops)

    def by_type(self) -> list[dict[str, Any]]:
        """Rows ``{op, count, ms, share}`` sorted by time, share of `total_ms`."""
        times: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for op in self.ops:
            times[op.op] += op.ms
            counts[op.op] += 1
        total = self.total_ms or 1.0
        rows = [
            {"op": name, "count": counts[name], "ms": ms, "share": ms / total}
            for name, ms in times.items()
        ]
        return sorted(rows, key=lambda row: row["ms"], reverse=True)

    def by_layer(self) -> list[dict[str, Any]]:
        """Rows ``{layer, ops, ms, share}`` in network order: ops grouped by `layer_of`."""
        groups: dict[str, list[OpTime]] = {}
        for op in self.ops:
            groups.setdefault(layer_of(op.name), []).append(op)
        total = self.total_ms or 1.0
        return [
            {
                "layer": layer,
                "ops": len(members),
                "ms": sum(op.ms for op in members),
                "share": sum(op.ms for op in members) / total,
            }
            for layer, members in groups.items()
        ]

    def top(self, n: int = 10) -> list[OpTime]:
        return sorted(self.ops, key=lambda op: op.ms, reverse=True)[:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "settings": self.settings,
            "total_ms": self.total_ms,
            "whole_model_ms": self.whole_model_ms,
            "by_type": self.by_type(),
            "by_layer": self.by_layer(),
            "ops": [asdict(op) for op in self.ops],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        """The inverse of `to_json`."""
        return cls(
            ops=[OpTime(**op) for op in data["ops"]],
            source=data["source"],
            whole_model_ms=data.get("whole_model_ms"),
            settings=data.get("settings", {}),
        )

    def table(self, top: int = 10) -> str:
        """Plain-text tables: time per op type, then the ``top`` slowest ops."""
        lines = [f"op profile ({self.source}): sum of ops {self.total_ms:.2f} ms"]
        if self.whole_model_ms:
            lines[0] += (
                f", whole model {self.whole_model_ms:.2f} ms "
                f"(sum / whole {self.total_ms / self.whole_model_ms:.2f})"
            )
        lines.append(f"  {'op type':<22}{'count':>6}{'ms':>10}{'share':>9}")
        for row in self.by_type():
            lines.append(
                f"  {row['op']:<22}{row['count']:>6}{row['ms']:>10.3f}{100 * row['share']:>8.1f}%"
            )
        lines.append(f"  slowest {top} ops:")
        total = self.total_ms or 1.0
        for op in self.top(top):
            share = 100 * op.ms / total
            lines.append(f"  #{op.index:<4}{op.op:<14}{op.ms:>9.3f} ms {share:>5.1f}%  {op.name}")
        return "\n".join(lines)

    def markdown(self, top: int = 10) -> str:
        rows = ["| op type | count | ms | share |", "|---|---|---|---|"]
        for row in self.by_type():
            rows.append(
                f"| {row['op']} | {row['count']} | {row['ms']:.3f} | {100 * row['share']:.1f} % |"
            )
        rows += ["", "| slowest ops | type | ms | share |", "|---|---|---|---|"]
        total = self.total_ms or 1.0
        for op in self.top(top):
            rows.append(
                f"| #{op.index} `{op.name}` | {op.op} | {op.ms:.3f} | {100 * op.ms / total:.1f} % |"
            )
        return "\n".join(rows)


def layer_of(name: str) -> str:
    """The Keras layer (for ReActNet: the block) an op comes from, read from its tensor name.

    Converted tensors are named after the TensorFlow ops they fuse, e.g.
    ``reactnet_a/block13_bn1/FusedBatchNormV3;reactnet_a/...``: the first path component
    after the model name is the layer; a ReActNet layer ``block13_bn1`` belongs to ``block13``.
    """
    first = name.split(";")[0]
    parts = first.split("/")
    layer = parts[1] if len(parts) > 1 else parts[0]
    if layer.startswith("block"):
        return layer.split("_")[0]
    return layer or "(unnamed)"


# ----------------------------------------------------------------------------- lce_benchmark_model

_REGULAR_RUNS = "Operator-wise Profiling Info for Regular Benchmark Runs"
_RUN_ORDER = re.compile(r"=+\s*Run Order\s*=+")
_NODE_NAME = re.compile(r"^\[(.*)\]:(\d+)$")


def parse_op_profile(text: str) -> Profile:
    """Read the op profile that ``lce_benchmark_model --enable_op_profiling=true`` prints.

    Uses the "Run Order" table of the regular (timed) runs: one row per op with the columns
    ``[node type] [first] [avg ms] [%] [cdf%] [mem KB] [times called] [Name]`` (TFLite's
    profile summarizer; a ``[start]`` column is present in some versions). The initialization
    section that precedes it is skipped.

    Raises:
        ValueError: the output has no op profile of the regular runs.
    """
    start = text.find(_REGULAR_RUNS)
    if start < 0:
        raise ValueError(
            f"no '{_REGULAR_RUNS}' section in the benchmark output: was it run with "
            "--enable_op_profiling=true?"
        )
    section = text[start:]
    match = _RUN_ORDER.search(section)
    if not match:
        raise ValueError("the op profile has no 'Run Order' table")
    lines = section[match.end() :].splitlines()
    header: list[str] | None = None
    ops: list[OpTime] = []
    for line in lines:
        if not line.strip():
            if ops:
                break
            continue
        if line.lstrip().startswith("="):
            break
        cells = [cell.strip() for cell in line.strip().split("\t") if cell.strip()]
        if header is None:
            header = [cell.strip("[]").lower() for cell in cells]
            continue
        if len(cells) < len(header):
            # Space-separated output (some builds): the name is the last field.
            cells = line.split()
            cells = cells[: len(header) - 1] + [" ".join(cells[len(header) - 1 :])]
        row = dict(zip(header, cells))
        # Names print as "[tensor name]:node index".
        named = _NODE_NAME.match(row.get("name", ""))
        name, index = (
            (named.group(1), int(named.group(2))) if named else (row.get("name", ""), len(ops))
        )
        ops.append(OpTime(index=index, op=row["node type"], name=name, ms=float(row["avg ms"])))
    if not ops:
        raise ValueError("the op profile's 'Run Order' table has no rows")
    average = re.findall(r"Inference \(avg\): ([\d.eE+-]+)", text)
    whole = float(average[-1]) / 1e3 if average else None
    return Profile(ops=ops, source="lce_benchmark_model", whole_model_ms=whole)


# ----------------------------------------------------------------------------- host replay


def _is_constant(model: Any, tensor: Any) -> bool:
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _submodel(
    model: Any, op_indices: list[int] | None, inputs: list[int], outputs: list[int]
) -> bytes:
    """A model of the main subgraph's ops ``op_indices`` (none: a pure copy of ``inputs``)."""
    graph = model.subgraphs[0]
    new = schema.ModelT()
    new.version = model.version
    new.description = b"adambnn-larq op replay"
    new.buffers = [schema.BufferT()]
    new.operatorCodes = []
    tensors: list = []
    remap: dict[int, int] = {}

    def tensor(index: int) -> int:
        if index < 0:
            return index
        if index not in remap:
            original = graph.tensors[index]
            copy = _copy(original, schema.Tensor, schema.TensorT)
            if _is_constant(model, original):
                buffer = schema.BufferT()
                buffer.data = model.buffers[original.buffer].data
                new.buffers.append(buffer)
                copy.buffer = len(new.buffers) - 1
            else:
                copy.buffer = 0
            tensors.append(copy)
            remap[index] = len(tensors) - 1
        return remap[index]

    subgraph = schema.SubGraphT()
    subgraph.operators = []
    codes: dict[int, int] = {}
    for position in op_indices or []:
        op = graph.operators[position]
        copy = _copy(op, schema.Operator, schema.OperatorT)
        if op.opcodeIndex not in codes:
            new.operatorCodes.append(model.operatorCodes[op.opcodeIndex])
            codes[op.opcodeIndex] = len(new.operatorCodes) - 1
        copy.opcodeIndex = codes[op.opcodeIndex]
        copy.inputs = [tensor(int(i)) for i in op.inputs]
        copy.outputs = [tensor(int(i)) for i in op.outputs]
        subgraph.operators.append(copy)
    subgraph.inputs = [tensor(i) for i in inputs]
    subgraph.outputs = [tensor(i) for i in outputs]
    subgraph.tensors = tensors
    subgraph.name = b"main"
    new.subgraphs = [subgraph]
    return write_model(new)


def _copy(obj: Any, table: Any, object_api: Any) -> Any:
    """A deep copy of a flatbuffer object-API instance (``TensorT``, ``OperatorT``), through
    its serialized form: the copy may be edited without touching the source model."""
    builder = flatbuffers.Builder(256)
    builder.Finish(obj.Pack(builder))
    return object_api.InitFromObj(table.GetRootAs(bytes(builder.Output()), 0))


def _random_input(tensor: Any, rng: np.random.Generator) -> np.ndarray:
    dtype = _NUMPY_TYPES.get(tensor.type)
    if dtype is None:
        raise ValueError(f"cannot make inputs of TFLite type {tensor.type} ({tensor.name})")
    shape = [int(d) for d in tensor.shape]
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-1, 1, shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _median_ms(interpreter: Any, inputs: list[np.ndarray], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        interpreter.predict(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.predict(inputs)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _interpreter(flatbuffer: bytes, kernel: str, threads: int) -> Any:
    # The wrapper's own predict(): one input list, no Python data pipeline in the timing.
    return lce_interpreter(flatbuffer, kernel=kernel, threads=threads).interpreter


def profile_host(
    flatbuffer: bytes,
    *,
    kernel: str = "indirect_bgemm",
    threads: int = 1,
    warmup: int = 3,
    runs: int = 20,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """Time every op of a converted model alone in the LCE interpreter (see the module doc).

    Arguments:
        flatbuffer: the ``.tflite`` bytes.
        kernel: LCE binary-conv kernel: ``"default"``, ``"indirect_bgemm"``, ``"reference"``.
        threads: interpreter threads.
        warmup: untimed runs per op.
        runs: timed runs per op (the median is kept).
        seed: random inputs.
        progress: optional callable receiving (done, total) after each op.

    Returns:
        A `Profile` with ``whole_model_ms`` measured in the same run.
    """
    model = read_model(flatbuffer)
    graph = model.subgraphs[0]
    rng = np.random.default_rng(seed)

    whole_inputs = [_random_input(graph.tensors[i], rng) for i in graph.inputs]
    whole_ms = _median_ms(_interpreter(flatbuffer, kernel, threads), whole_inputs, warmup, runs)

    ops: list[OpTime] = []
    for position, op in enumerate(graph.operators):
        variable = [
            int(i) for i in op.inputs if i >= 0 and not _is_constant(model, graph.tensors[i])
        ]
        outputs = [int(i) for i in op.outputs]
        data = [_random_input(graph.tensors[i], rng) for i in variable]
        one_op = _submodel(model, [position], variable, outputs)
        ms = _median_ms(_interpreter(one_op, kernel, threads), data, warmup, runs)
        if variable:
            copy_only = _submodel(model, None, variable, variable)
            ms -= _median_ms(_interpreter(copy_only, kernel, threads), data, warmup, runs)
        name = graph.tensors[outputs[0]].name.decode() if outputs else ""
        ops.append(OpTime(index=position, op=op_type(model, op), name=name, ms=max(ms, 0.0)))
        if progress is not None:
            progress(position + 1, len(graph.operators))
    settings = {"kernel": kernel, "threads": threads, "warmup": warmup, "runs": runs}
    return Profile(ops=ops, source="host replay", whole_model_ms=whole_ms, settings=settings)
