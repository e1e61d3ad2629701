"""Latency of converted models: on this host (LCE interpreter) or with ``lce_benchmark_model``.

- `benchmark_host` times the LCE interpreter in-process: warm-up, repeated single-image runs,
  each thread count, LCE's default and indirect-BGEMM binary-conv kernels; optionally beside a
  float baseline of the same architecture (`float_baseline`, converted with
  ``tf.lite.TFLiteConverter``) measured in the same run.
- `benchmark_binary` runs ``lce_benchmark_model`` (TFLite's benchmark tool with the LCE ops)
  locally or on a remote board over ssh (copying the model and the binary), parses its
  ``Inference (avg)`` line and records the board, OS bitness, CPU frequency and temperature
  before and after each run.

Both write JSON plus a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adambnn_larq.hostinfo import cpu_model_name
from adambnn_larq.logs import quiet_native_stderr

if TYPE_CHECKING:
    import tensorflow as tf

KERNELS = ("default", "indirect_bgemm")

_QUANTIZER_ATTRIBUTES = (
    "input_quantizer",
    "kernel_quantizer",
    "depthwise_quantizer",
    "pointwise_quantizer",
)


class BenchmarkError(RuntimeError):
    """The benchmark could not run or its output could not be read."""


# --------------------------------------------------------------------------------------------
# Host benchmark (LCE interpreter)


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
    from larq_compute_engine import testing

    if runs < 1 or warmup < 0 or rounds < 1:
        raise ValueError("runs and rounds must be >= 1 and warmup >= 0")
    rng = np.random.default_rng(seed)
    runners = []
    for config in configurations:
        if config.kernel not in (*KERNELS, "float"):
            raise ValueError(f"kernel must be one of {KERNELS} or 'float', got {config.kernel!r}")
        if config.threads < 1:
            raise ValueError(f"threads must be >= 1, got {config.threads}")
        # TFLite prints "INFO: Created TensorFlow Lite XNNPACK delegate" as it starts.
        with quiet_native_stderr():
            interpreter = testing.Interpreter(
                config.flatbuffer,
                num_threads=config.threads,
                use_indirect_bgemm=config.kernel == "indirect_bgemm",
                use_xnnpack=config.use_xnnpack,
            )
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
    import tensorflow as tf

    from adambnn_larq.quantizers import SpatialFlip

    def clone(layer):
        config = layer.get_config()
        changed = False
        for attribute in _QUANTIZER_ATTRIBUTES:
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
    import tensorflow as tf

    specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype) for t in model.inputs]

    def inference(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    concrete = tf.function(inference, autograph=False).get_concrete_function(*specs)
    # Without the Keras model as trackable object the converter freezes this one trace instead
    # of exporting a SavedModel (which retraces every layer: minutes on this stack).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    with quiet_native_stderr():  # the converter's absl lines ("Ignored output_format")
        return bytes(converter.convert())


def host_info() -> dict[str, Any]:
    """This machine: CPU, load, and the versions of the runtime that was timed."""
    import larq_compute_engine
    import tensorflow as tf

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


def host_markdown(result: dict[str, Any], model_name: str) -> str:
    """A markdown table of a `benchmark_host` result."""
    size = {"lce": result["size_bytes"], "float": result.get("float_size_bytes")}
    ratio = {(r["kernel"], r["threads"]): r["float_over_lce"] for r in result["ratios"]}
    lines = [
        "| model | kernel | threads | XNNPACK | median ms | p90 ms | float / this | size MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result["timings"]:
        speedup = ratio.get((t["kernel"], t["threads"]))
        label = model_name if t["name"] == "lce" else f"{model_name} (float TFLite)"
        lines.append(
            f"| {label} | {t['kernel']} | {t['threads']} | {'on' if t['xnnpack'] else 'off'} | "
            f"{t['median_ms']:.1f} | {t['p90_ms']:.1f} | "
            f"{'1.00' if t['name'] == 'float' else (f'{speedup:.2f}' if speedup else '-')} | "
            f"{size[t['name']] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# lce_benchmark_model, locally or over ssh

# Numbers in the tool's output may be printed in C++ stream style, e.g. "2.95034e+06".
_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_COUNT = re.compile(rf"count={_NUMBER}(?P<rest>.*)")
_FIELD = re.compile(rf"(\w+)={_NUMBER}")


def parse_benchmark_output(text: str) -> dict[str, float]:
    """Read the timings of a TFLite/LCE ``benchmark_model`` run.

    The result is the ``Inference (avg)`` of the summary line; the statistics of the last
    ``count=...`` line (the timed runs) are added when present.

    Arguments:
        text: the tool's combined stdout and stderr.

    Returns:
        ``inference_avg_ms``, ``init_ms``, ``first_inference_ms``, ``warmup_avg_ms`` and,
        when printed, ``count``, ``min_ms``, ``max_ms``, ``std_ms``, ``median_ms``.

    Raises:
        BenchmarkError: no summary line.
    """
    summaries = _SUMMARY.findall(text)
    if not summaries:
        tail = "\n".join(text.strip().splitlines()[-5:]) or "(no output)"
        raise BenchmarkError(
            "could not find 'Inference timings in us: ... Inference (avg): N' in the benchmark "
            f"output; last lines:\n{tail}"
        )
    init, first, warmup, average = (float(v) for v in summaries[-1])
    result = {
        "inference_avg_ms": average / 1e3,
        "init_ms": init / 1e3,
        "first_inference_ms": first / 1e3,
        "warmup_avg_ms": warmup / 1e3,
    }
    count_lines = [m for m in (_COUNT.search(line) for line in text.splitlines()) if m]
    if count_lines:
        last = count_lines[-1]
        result["count"] = int(float(last.group(1)))
        fields = dict(_FIELD.findall(last.group("rest")))
        for key in ("min", "max", "std", "median", "p5", "p95"):
            if key in fields:
                result[f"{key}_ms"] = float(fields[key]) / 1e3
    return result


# One line per fact, "key=value"; missing files print empty values rather than failing.
_SYSTEM_INFO_SCRIPT = r"""
printf 'board=%s\n' "$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"
printf 'machine=%s\n' "$(uname -m)"
printf 'userland_bits=%s\n' "$(getconf LONG_BIT 2>/dev/null)"
printf 'kernel=%s\n' "$(uname -r)"
printf 'os=%s\n' "$(. /etc/os-release 2>/dev/null && printf '%s' "$PRETTY_NAME")"
cpufreq=/sys/devices/system/cpu/cpu0/cpufreq
printf 'cpu_freq_khz=%s\n' "$(cat $cpufreq/scaling_cur_freq 2>/dev/null)"
printf 'cpu_max_freq_khz=%s\n' "$(cat $cpufreq/cpuinfo_max_freq 2>/dev/null)"
printf 'governor=%s\n' "$(cat $cpufreq/scaling_governor 2>/dev/null)"
printf 'temperature_millicelsius=%s\n' "$(cat /sys/class/thermal/thermal_zone0/temp 2>/dev/null)"
printf 'throttled=%s\n' "$(vcgencmd get_throttled 2>/dev/null)"
"""


def parse_system_info(text: str) -> dict[str, Any]:
    """Parse the output of the system-information script into typed values."""
    info: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key in ("cpu_freq_khz", "cpu_max_freq_khz", "userland_bits"):
            info[key] = int(value) if value.isdigit() else None
        elif key == "temperature_millicelsius":
            info["temperature_c"] = int(value) / 1000 if value.lstrip("-").isdigit() else None
        else:
            info[key] = value or None
    if "cpu_freq_khz" in info:
        khz = info.pop("cpu_freq_khz")
        info["cpu_freq_mhz"] = khz / 1000 if khz else None
    if "cpu_max_freq_khz" in info:
        khz = info.pop("cpu_max_freq_khz")
        info["cpu_max_freq_mhz"] = khz / 1000 if khz else None
    return info


@dataclasses.dataclass
class Shell:
    """Runs shell commands here, or on ``remote`` over ssh.

    Attributes:
        remote: ``USER@HOST`` or None for this machine.
        port: ssh port.
        identity: ssh private key file.
        ssh_options: extra ``-o`` options (e.g. ``StrictHostKeyChecking=no``).
        timeout: seconds per command.
    """

    remote: str | None = None
    port: int | None = None
    identity: str | None = None
    ssh_options: Sequence[str] = ()
    timeout: float = 900.0

    @property
    def where(self) -> str:
        if self.remote is None:
            return "this machine"
        return f"{self.remote}" + (f" (port {self.port})" if self.port else "")

    def _argv(self, command: str) -> list[str]:
        if self.remote is None:
            return ["/bin/sh", "-c", command]
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity)]
        for option in self.ssh_options:
            argv += ["-o", option]
        return [*argv, self.remote, command]

    def run(self, command: str, *, stdin: bytes | None = None, check: bool = True):
        """Run ``command``; return the completed process (output as text)."""
        try:
            completed = subprocess.run(
                self._argv(command),
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
            )
        except FileNotFoundError as error:
            raise BenchmarkError(f"cannot run {error.filename}: not installed") from error
        except subprocess.TimeoutExpired as error:
            raise BenchmarkError(
                f"command timed out after {self.timeout:.0f} s on {self.where}: {command[:80]}"
            ) from error
        stdout = completed.stdout.decode(errors="replace")
        stderr = completed.stderr.decode(errors="replace")
        if self.remote is not None and completed.returncode == 255:
            # ssh's own failures (refused, unknown host, authentication) exit with 255.
            raise BenchmarkError(
                f"ssh to {self.where} failed: {_last_line(stderr) or 'exit status 255'}"
            )
        if check and completed.returncode != 0:
            raise BenchmarkError(
                f"command failed on {self.where} (exit {completed.returncode}): {command[:80]}"
                f"\n{_last_line(stderr) or _last_line(stdout)}"
            )
        return subprocess.CompletedProcess(completed.args, completed.returncode, stdout, stderr)

    def copy(self, source: Path, destination: str, *, executable: bool = False) -> None:
        """Copy a local file to ``destination`` on the target (through ssh's stdin)."""
        quoted = shlex.quote(destination)
        mode = f" && chmod 755 {quoted}" if executable else ""
        self.run(f"cat > {quoted}{mode}", stdin=source.read_bytes())


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def benchmark_binary(
    model_path: str | os.PathLike,
    binary: str | os.PathLike,
    *,
    shell: Shell | None = None,
    threads: Sequence[int] = (1,),
    kernels: Sequence[str] = ("default",),
    num_runs: int = 50,
    warmup_runs: int = 5,
    use_xnnpack: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``lce_benchmark_model`` on ``model_path``, locally or on a remote board.

    Remote: a temporary directory is created on the board, the model and the binary are
    copied there over ssh, each configuration runs in turn, and the directory is removed.
    Local (``shell.remote`` None): the binary runs in place, e.g. on the Pi itself.

    Arguments:
        model_path: the ``.tflite`` file.
        binary: the ``lce_benchmark_model`` executable on this machine.
        shell: where to run (default: here).
        threads: ``--num_threads`` values.
        kernels: ``"default"`` and/or ``"indirect_bgemm"`` (``--use_indirect_bgemm``).
        num_runs / warmup_runs: passed to the tool.
        use_xnnpack: ``--use_xnnpack``.
        progress: print each result to stderr.

    Returns:
        A JSON-ready dict: ``system`` (board, OS, bitness), ``runs`` (one per configuration
        with the parsed timings and the CPU frequency and temperature before and after).

    Raises:
        BenchmarkError: missing files, connection failure, a failing binary, unreadable output.
    """
    shell = shell or Shell()
    model_path, binary = Path(model_path), Path(binary)
    if not model_path.is_file():
        raise BenchmarkError(f"model file not found: {model_path}")
    if not binary.is_file():
        raise BenchmarkError(
            f"benchmark binary not found: {binary} (download lce_benchmark_model_aarch64 from "
            "the larq/compute-engine release that matches your converter)"
        )
    if shell.remote is None and not os.access(binary, os.X_OK):
        raise BenchmarkError(f"benchmark binary {binary} is not executable (chmod +x it)")
    for kernel in kernels:
        if kernel not in KERNELS:
            raise BenchmarkError(f"kernel must be one of {KERNELS}, got {kernel!r}")

    remote_dir = None
    if shell.remote is not None:
        remote_dir = shell.run("mktemp -d -t adambnn-bench.XXXXXX").stdout.strip()
        if not remote_dir.startswith("/"):
            raise BenchmarkError(f"could not create a temporary directory on {shell.where}")
    try:
        if remote_dir is not None:
            graph = f"{remote_dir}/{model_path.name}"
            executable = f"{remote_dir}/lce_benchmark_model"
            _say(f"copying {model_path.name} and {binary.name} to {shell.where}", progress)
            shell.copy(model_path, graph)
            shell.copy(binary, executable, executable=True)
        else:
            graph, executable = str(model_path.resolve()), str(binary.resolve())
        system = parse_system_info(shell.run(_SYSTEM_INFO_SCRIPT).stdout)
        if system.get("userland_bits") == 32:
            _say(
                "warning: 32-bit userland; LCE's optimized kernels and the prebuilt binary "
                "want a 64-bit OS",
                progress,
            )
        runs = []
        for thread_count in threads:
            for kernel in kernels:
                flags = [
                    f"--graph={graph}",
                    f"--num_threads={thread_count}",
                    f"--num_runs={num_runs}",
                    f"--warmup_runs={warmup_runs}",
                    f"--use_xnnpack={'true' if use_xnnpack else 'false'}",
                ]
                if kernel == "indirect_bgemm":
                    flags.append("--use_indirect_bgemm=true")
                command = " ".join(shlex.quote(part) for part in [executable, *flags])
                before = _thermal(shell)
                completed = shell.run(command, check=False)
                after = _thermal(shell)
                output = completed.stdout + completed.stderr
                if completed.returncode != 0:
                    raise BenchmarkError(
                        f"{binary.name} failed on {shell.where} (exit {completed.returncode}):\n"
                        + "\n".join(output.strip().splitlines()[-5:])
                    )
                try:
                    timings = parse_benchmark_output(output)
                except BenchmarkError as error:
                    raise BenchmarkError(f"{binary.name} on {shell.where}: {error}") from error
                runs.append(
                    {
                        "threads": thread_count,
                        "kernel": kernel,
                        "xnnpack": use_xnnpack,
                        **timings,
                        "before": before,
                        "after": after,
                        "command": command,
                    }
                )
                _say(
                    f"  {thread_count} thread(s), {kernel}: Inference (avg) "
                    f"{timings['inference_avg_ms']:.2f} ms",
                    progress,
                )
    finally:
        if remote_dir is not None:
            shell.run(f"rm -rf {shlex.quote(remote_dir)}", check=False)
    return {
        "kind": "lce_benchmark_model",
        "model": str(model_path),
        "size_bytes": model_path.stat().st_size,
        "target": shell.remote or "local",
        "binary": str(binary),
        "settings": {"num_runs": num_runs, "warmup_runs": warmup_runs},
        "system": system,
        "runs": runs,
    }


def _thermal(shell: Shell) -> dict[str, Any]:
    info = parse_system_info(shell.run(_SYSTEM_INFO_SCRIPT, check=False).stdout)
    keys = ("cpu_freq_mhz", "temperature_c", "throttled")
    return {key: info.get(key) for key in keys}


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


BINARY_TABLE_HEADER = (
    "| model | board | OS | threads | kernel | Inference (avg) ms | size MB | "
    "CPU MHz before/after | °C before/after |\n|---|---|---|---|---|---|---|---|---|\n"
)


def binary_markdown_rows(result: dict[str, Any]) -> str:
    """One markdown table row per run of a `benchmark_binary` result (see the header)."""
    system = result["system"]
    board = system.get("board") or system.get("machine") or "unknown"
    bits = system.get("userland_bits")
    os_name = (system.get("os") or "?") + (f", {bits}-bit" if bits else "")
    rows = []
    for run in result["runs"]:
        rows.append(
            f"| {Path(result['model']).name} | {board} | {os_name} | {run['threads']} | "
            f"{run['kernel']} | {run['inference_avg_ms']:.2f} | {result['size_bytes'] / 1e6:.2f} "
            f"| {_pair(run, 'cpu_freq_mhz', '{:.0f}')} | {_pair(run, 'temperature_c', '{:.1f}')} |"
        )
    return "\n".join(rows) + "\n"


def _pair(run: dict[str, Any], key: str, fmt: str) -> str:
    values = [run[when].get(key) for when in ("before", "after")]
    return "/".join("?" if v is None else fmt.format(v) for v in values)


# --------------------------------------------------------------------------------------------
# Command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,4; got {text!r}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return values


def _kernel_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in values if v not in KERNELS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"kernels must be among {KERNELS}, got {text!r}")
    return values


def _benchmark_command(args: argparse.Namespace) -> int:
    from adambnn_larq.cli import CommandError, check_output_file
    from adambnn_larq.saving import atomic_write_bytes

    model_path = Path(args.model)
    if not model_path.is_file():
        raise CommandError(f"model file not found: {model_path}")
    output = Path(args.output or model_path.with_suffix(".benchmark.json"))
    markdown_path = output.with_suffix(".md")
    # Every output is checked before the (long) benchmark.
    check_output_file(output, "--output")
    check_output_file(markdown_path, "--output (its .md beside)")
    if args.save_baseline:
        if not args.baseline_float:
            raise CommandError("--save-baseline needs --baseline-float MODEL.h5")
        check_output_file(args.save_baseline, "--save-baseline", suffixes=(".tflite",))
    float_flatbuffer = None
    if args.remote or args.benchmark_binary:
        if not args.benchmark_binary:
            raise CommandError("--remote needs --benchmark-binary PATH (lce_benchmark_model)")
        if args.baseline_float:
            raise CommandError("--baseline-float is for the host benchmark (no --remote)")
        shell = Shell(
            remote=args.remote,
            port=args.ssh_port,
            identity=args.ssh_identity,
            ssh_options=args.ssh_option or (),
        )
        try:
            result = benchmark_binary(
                model_path,
                args.benchmark_binary,
                shell=shell,
                threads=args.num_threads,
                kernels=args.kernels or ["default"],
                num_runs=args.runs or 50,
                warmup_runs=args.warmup if args.warmup is not None else 5,
                use_xnnpack=args.use_xnnpack,
            )
        except BenchmarkError as error:
            raise CommandError(str(error)) from error
        table = BINARY_TABLE_HEADER + binary_markdown_rows(result)
    else:
        from converters.lce import io_details

        flatbuffer = model_path.read_bytes()
        try:
            io_details(flatbuffer)
        except ValueError as error:
            raise CommandError(f"{model_path}: {error}") from error
        if args.baseline_float:
            from adambnn_larq.saving import load_model
            from converters.lce import heartbeat

            try:
                keras_model = load_model(args.baseline_float)
            except (OSError, ValueError, TypeError, KeyError) as error:
                raise CommandError(f"cannot load {args.baseline_float}: {error}") from error
            with heartbeat("converting the float baseline with tf.lite.TFLiteConverter"):
                float_flatbuffer = convert_float_tflite(float_baseline(keras_model))
        print(f"benchmarking {model_path} on this host (LCE interpreter)", file=sys.stderr)
        try:
            result = benchmark_host(
                flatbuffer,
                threads=args.num_threads,
                kernels=args.kernels or list(KERNELS),
                warmup=args.warmup if args.warmup is not None else 3,
                runs=args.runs or 20,
                use_xnnpack=args.use_xnnpack,
                float_flatbuffer=float_flatbuffer,
                rounds=max(1, min(args.rounds, args.runs or 20)),
            )
        except (ValueError, RuntimeError) as error:
            raise CommandError(str(error)) from error
        result["model"] = str(model_path)
        result["baseline_float"] = args.baseline_float
        table = host_markdown(result, model_path.name)
    result["markdown"] = table
    written = {output: (json.dumps(result, indent=2) + "\n").encode()}
    written[markdown_path] = table.encode()
    if args.save_baseline and float_flatbuffer is not None:
        written[Path(args.save_baseline)] = float_flatbuffer
    done = []
    try:
        for path, content in written.items():
            atomic_write_bytes(path, content)
            done.append(path)
    except OSError as error:
        for written_path in done:  # all the outputs or none
            written_path.unlink(missing_ok=True)
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from error
    print(table, end="")
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``adambnn benchmark``."""
    from adambnn_larq.cli import non_negative_int, positive_int

    parser = subparsers.add_parser(
        "benchmark",
        help="latency of a .tflite: LCE interpreter here, or lce_benchmark_model (e.g. on a Pi)",
        description="Without --benchmark-binary: time the LCE interpreter on this host "
        "(warm-up, repeated runs, default and indirect-BGEMM kernels, median and p90), "
        "optionally beside a float baseline of the same architecture. With "
        "--benchmark-binary: run lce_benchmark_model here or, with --remote, on a board over "
        "ssh. Writes JSON and a markdown table.",
    )
    parser.add_argument("model", help="the .tflite file")
    parser.add_argument(
        "--num-threads", type=_int_list, default=[1], help="comma-separated (default 1)"
    )
    parser.add_argument(
        "--kernels",
        type=_kernel_list,
        help="comma-separated among default,indirect_bgemm (host default: both; binary: default)",
    )
    parser.add_argument("--warmup", type=non_negative_int, help="warm-up runs (host 3, binary 5)")
    parser.add_argument("--runs", type=positive_int, help="timed runs (host 20, binary 50)")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=4,
        help="host: interleave the timed runs in N rounds (4)",
    )
    parser.add_argument("--use-xnnpack", action="store_true", help="XNNPACK for the LCE model")
    parser.add_argument(
        "--baseline-float",
        metavar="MODEL.h5",
        help="also convert this Keras model's architecture with float convs "
        "(tf.lite.TFLiteConverter, XNNPACK on) and time it in the same run",
    )
    parser.add_argument("--save-baseline", help="write the float baseline .tflite here")
    parser.add_argument("--remote", metavar="USER@HOST", help="run lce_benchmark_model over ssh")
    parser.add_argument("--benchmark-binary", help="local path of lce_benchmark_model")
    parser.add_argument("--ssh-port", type=positive_int)
    parser.add_argument("--ssh-identity", help="ssh private key file")
    parser.add_argument("--ssh-option", action="append", help="extra ssh -o option (repeatable)")
    parser.add_argument("--output", help="JSON file (default MODEL.benchmark.json; .md beside)")
    parser.set_defaults(func=_benchmark_command)


__all__ = [
    "BINARY_TABLE_HEADER",
    "BenchmarkError",
    "KERNELS",
    "Shell",
    "Configuration",
    "Timing",
    "add_commands",
    "benchmark_binary",
    "benchmark_host",
    "binary_markdown_rows",
    "convert_float_tflite",
    "float_baseline",
    "host_info",
    "host_markdown",
    "parse_benchmark_output",
    "parse_system_info",
    "time_configurations",
    "time_interpreter",
]
