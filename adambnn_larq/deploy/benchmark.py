"""Latency of converted models on this host: the LCE interpreter in-process.

`benchmark_host` times the LCE interpreter: warm-up, repeated single-image runs, each thread
count, LCE's default and indirect-BGEMM binary-conv kernels; optionally beside a float baseline
of the same architecture (`float_baseline`, converted with ``tf.lite.TFLiteConverter``)
measured in the same run. `adambnn_larq.deploy.remote` runs ``lce_benchmark_model`` on a board
instead; `adambnn_larq.deploy.tables` writes both as markdown.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import larq_compute_engine
import numpy as np
import tensorflow as tf

from adambnn_larq.config import KERNELS
from adambnn_larq.deploy.interpreter import lce_interpreter
from adambnn_larq.hostinfo import cpu_model_name
from adambnn_larq.logs import quiet_native_stderr
from adambnn_larq.quantizers import QUANTIZER_ATTRIBUTES, SpatialFlip


@dataclasses.dataclass
class Timing:
    """Latency of one configuration, in milliseconds.

    Attributes:
        name: which model (e.g. ``"lce"`` or ``"float"``).
        kernel: ``"default"``, ``"indirect_bgemm"`` or ``"float"`` (no binary convs).
        threads: interpreter threads.
        xnnpack: whether TFLite's XNNPACK delegate was on.
        runs: timed runs (after the warm-up).
        median_ms / p90_ms / mean_ms / min_ms / max_ms: statistics of the timed runs.
    """

    name: str
    kernel: str
    threads: int
    xnnpack: bool
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One model in one interpreter setting, for `time_configurations`.

    Attributes:
        flatbuffer: the ``.tflite`` model (LCE ops or plain TFLite).
        name: label of the model in the results (e.g. ``"lce"``, ``"float"``).
        kernel: ``"default"`` or ``"indirect_bgemm"`` (LCE's binary-conv kernels), or
            ``"float"`` for models without binary convs.
        threads: interpreter threads.
        use_xnnpack: TFLite's XNNPACK delegate (float ops only).
    """

    flatbuffer: bytes
    name: str = "lce"
    kernel: str = "default"
    threads: int = 1
    use_xnnpack: bool = False


def time_configurations(
    configurations: Sequence[Configuration],
    *,
    warmup: int = 3,
    runs: int = 20,
    rounds: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> list[Timing]:
    """Time single-image inference of several configurations in the LCE interpreter.

    With ``rounds`` > 1 the timed runs are interleaved: each round runs every configuration
    ``runs / rounds`` times in turn, so a slow period of a shared machine affects all of them
    alike and their ratios stay meaningful.

    Arguments:
        configurations: what to time.
        warmup: untimed runs of each configuration first.
        runs: timed runs per configuration (rounded up to a multiple of ``rounds``).
        rounds: interleaving rounds.
        seed: seed of the random input.
        progress: print each finished configuration to stderr.

    Returns:
        One `Timing` per configuration, in order.
    """
    if runs < 1 or warmup < 0 or rounds < 1:
        raise ValueError("runs and rounds must be >= 1 and warmup >= 0")
    rng = np.random.default_rng(seed)
    runners = []
    for config in configurations:
        if config.kernel not in (*KERNELS, "float"):
            raise ValueError(f"kernel must be one of {KERNELS} or 'float', got {config.kernel!r}")
        if config.threads < 1:
            raise ValueError(f"threads must be >= 1, got {config.threads}")
        # "float": a model without binary convs, whose kernel choice changes nothing.
        kernel = "default" if config.kernel == "float" else config.kernel
        interpreter = lce_interpreter(
            config.flatbuffer,
            kernel=kernel,
            threads=config.threads,
            use_xnnpack=config.use_xnnpack,
        )
        # TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate" as it starts.
        with quiet_native_stderr():
            inputs = []
            for shape, dtype in zip(interpreter.input_shapes, interpreter.input_types):
                if np.dtype(dtype) == np.int8:
                    inputs.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
                else:
                    inputs.append(rng.uniform(-1, 1, size=shape).astype(dtype))
            # The wrapper's own predict() runs one batch-1 input with no Python data pipeline.
            run = interpreter.interpreter.predict
            for _ in range(warmup):
                run(inputs)
        runners.append((run, inputs))
    per_round = -(-runs // rounds)
    samples: list[list[float]] = [[] for _ in configurations]
    for _ in range(rounds):
        for (run, inputs), collected in zip(runners, samples):
            for _ in range(per_round):
                start = time.perf_counter()
                run(inputs)
                collected.append((time.perf_counter() - start) * 1e3)
    timings = []
    for config, collected in zip(configurations, samples):
        timing = Timing(
            name=config.name,
            kernel=config.kernel,
            threads=config.threads,
            xnnpack=config.use_xnnpack,
            runs=len(collected),
            median_ms=float(np.median(collected)),
            p90_ms=float(np.percentile(collected, 90)),
            mean_ms=float(np.mean(collected)),
            min_ms=float(np.min(collected)),
            max_ms=float(np.max(collected)),
        )
        timings.append(timing)
        _report_progress(timing, progress)
    return timings


def time_interpreter(
    flatbuffer: bytes,
    *,
    name: str = "lce",
    kernel: str = "default",
    threads: int = 1,
    use_xnnpack: bool = False,
    warmup: int = 3,
    runs: int = 20,
    seed: int = 0,
) -> Timing:
    """Time one configuration (see `Configuration` and `time_configurations`).

    Returns:
        A `Timing`.
    """
    (timing,) = time_configurations(
        [Configuration(flatbuffer, name, kernel, threads, use_xnnpack)],
        warmup=warmup,
        runs=runs,
        seed=seed,
    )
    return timing


def float_baseline(model: tf.keras.Model) -> tf.keras.Model:
    """The same architecture with ordinary float convs, and the same weights.

    Every 1-bit or multi-bit quantizer is removed; a kernel quantizer that also flips the
    kernel spatially (`adambnn_larq.quantizers`) is replaced by the real-valued `SpatialFlip`
    with the same flip, so for ReActNet-A this is exactly ``ReActNetA(binary_weights=False,
    binary_activations=False)``. The variables are unchanged, so the weights copy one to one.

    Arguments:
        model: a Larq model.

    Returns:
        A new float `tf.keras.Model`.
    """

    def clone(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        config = layer.get_config()
        changed = False
        for attribute in QUANTIZER_ATTRIBUTES:
            quantizer = getattr(layer, attribute, None)
            precision = getattr(quantizer, "precision", None)
            if quantizer is None or precision is None or precision >= 32:
                continue
            changed = True
            if attribute != "input_quantizer" and hasattr(quantizer, "flip_spatial"):
                # Keep this project's kernel orientation (see adambnn_larq.quantizers).
                replacement = SpatialFlip(flip_spatial=quantizer.flip_spatial)
                config[attribute] = tf.keras.utils.serialize_keras_object(replacement)
            else:
                config[attribute] = None
        return layer.__class__.from_config(config if changed else layer.get_config())

    baseline = tf.keras.models.clone_model(model, clone_function=clone)
    baseline.set_weights(model.get_weights())
    return baseline


def convert_float_tflite(model: tf.keras.Model) -> bytes:
    """Convert a float Keras model with the ordinary ``tf.lite.TFLiteConverter`` (batch 1)."""
    specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype) for t in model.inputs]

    def inference(*inputs: tf.Tensor) -> tf.Tensor:
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    concrete = tf.function(inference, autograph=False).get_concrete_function(*specs)
    # Without the Keras model as trackable object the converter freezes this one trace instead
    # of exporting a SavedModel (which retraces every layer: minutes on this stack).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    with quiet_native_stderr():  # the converter's absl lines ("Ignored output_format")
        return bytes(converter.convert())


def host_info() -> dict[str, Any]:
    """This machine: CPU, load, and the versions of the runtime that was timed."""
    return {
        "machine": platform.machine(),
        "processor": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "larq_compute_engine": larq_compute_engine.__version__,
    }


def benchmark_host(
    flatbuffer: bytes,
    *,
    threads: Sequence[int] = (1,),
    kernels: Sequence[str] = KERNELS,
    warmup: int = 3,
    runs: int = 20,
    use_xnnpack: bool = False,
    float_flatbuffer: bytes | None = None,
    float_xnnpack: bool = True,
    rounds: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Time an LCE model (and optionally its float baseline) in one run on this host.

    Arguments:
        flatbuffer: the LCE model.
        threads: thread counts to measure.
        kernels: LCE binary-conv kernels to measure.
        warmup: untimed runs per configuration.
        runs: timed runs per configuration.
        use_xnnpack: XNNPACK delegate for the LCE model's float ops.
        float_flatbuffer: the float baseline (see `float_baseline`), or None.
        float_xnnpack: XNNPACK for the float baseline (TFLite's usual float path).
        rounds: interleave the timed runs of all configurations in this many rounds.
        progress: print each configuration's result to stderr as it finishes.

    Returns:
        A JSON-ready dict with ``timings`` (one per configuration), ``ratios`` (float median
        over LCE median, per kernel and thread count) and host information.
    """
    configurations = []
    for thread_count in threads:
        for kernel in kernels:
            configurations.append(
                Configuration(flatbuffer, "lce", kernel, thread_count, use_xnnpack)
            )
        if float_flatbuffer is not None:
            configurations.append(
                Configuration(float_flatbuffer, "float", "float", thread_count, float_xnnpack)
            )
    timings = time_configurations(
        configurations, warmup=warmup, runs=runs, rounds=rounds, progress=progress
    )
    ratios = []
    for timing in timings:
        if timing.name != "lce":
            continue
        reference = next(
            (t for t in timings if t.name == "float" and t.threads == timing.threads), None
        )
        if reference is not None:
            ratios.append(
                {
                    "kernel": timing.kernel,
                    "threads": timing.threads,
                    "float_over_lce": reference.median_ms / timing.median_ms,
                }
            )
    return {
        "kind": "host",
        "host": host_info(),
        "settings": {"warmup": warmup, "runs": runs, "rounds": rounds},
        "size_bytes": len(flatbuffer),
        "float_size_bytes": len(float_flatbuffer) if float_flatbuffer is not None else None,
        "timings": [dataclasses.asdict(t) for t in timings],
        "ratios": ratios,
    }


def _report_progress(timing: Timing, enabled: bool) -> None:
    if enabled:
        print(
            f"  {timing.name:<6} {timing.kernel:<15} {timing.threads} thread(s): median "
            f"{timing.median_ms:.2f} ms, p90 {timing.p90_ms:.2f} ms",
            file=sys.stderr,
            flush=True,
        )
