"""The deployment jobs behind ``adambnn convert``, ``verify`` and ``benchmark``, whole and
without argparse: the checks of every output before the long work, the work, its defaults,
and the files, written all or none. The command line parses, calls one of these, prints.

Messages name the command line's options (``--report``, ``--output``): these are its jobs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq.deploy import convert
from adambnn_larq.deploy.convert import ConversionResult, conversion_report
from adambnn_larq.errors import MissingFileError, ModelMismatchError, OutputError
from adambnn_larq.rundir import atomic_write_text, check_distinct, check_writable_file

Say = Callable[[str], None]


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def convert_to_files(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    report: str | os.PathLike | None = None,
    weights: str = "float32",
    progress: bool = True,
    **options: Any,
) -> ConversionResult:
    """`convert.convert_file` and, with ``report``, its JSON report (`ConversionResult.to_json`)
    beside: both files or neither.

    Raises:
        OutputError: an output that cannot be written (checked before the conversion), or a
            report that could not be written after it (the ``.tflite`` is then removed).
        ConversionError: as `convert.convert_file`.
    """
    output = Path(output)
    check_distinct({"--output": output, "--report": report}, {"MODEL": model})
    if report:
        check_writable_file(report, what="--report")
    # Through the module: tests replace convert_file there.
    result = convert.convert_file(model, output, progress=progress, weights=weights, **options)
    if report:
        content = conversion_report(result, model=model, output=output, weights=weights)
        try:
            atomic_write_text(report, json.dumps(content, indent=2) + "\n")
        except OSError as error:
            # The report was asked for: no half result (a .tflite without it) is left behind.
            output.unlink(missing_ok=True)
            raise OutputError(
                f"cannot write --report {report}: {error.strerror or error}; {output} was removed"
            ) from error
    return result


@dataclasses.dataclass(frozen=True)
class VerifyInputs:
    """Where `verify_files` takes its inputs: a ``.npy`` file, ``samples`` images of a dataset,
    or (neither given) ``samples`` random ones."""

    samples: int = 32
    seed: int = 0
    inputs_file: str | os.PathLike | None = None
    dataset: str | None = None
    split: str | None = None
    data_dir: str | None = None


def _verify_inputs(
    how: VerifyInputs, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None, str]:
    from adambnn_larq.deploy.verify import dataset_inputs, load_inputs, random_inputs
    from adambnn_larq.errors import ConfigError

    if how.inputs_file and how.dataset:
        raise ConfigError("--inputs and --dataset both give the inputs: choose one")
    if how.inputs_file:
        return load_inputs(os.fspath(how.inputs_file), shape), None, str(how.inputs_file)
    if not how.dataset:
        inputs = random_inputs(shape, how.samples, seed=how.seed)
        return inputs, None, f"random uniform[-1, 1), seed {how.seed}"
    # A bad dataset, split or data directory is a domain error (ConfigError,
    # DataNotFoundError) that names it.
    inputs, labels, split = dataset_inputs(
        how.dataset,
        how.samples,
        split=how.split,
        data_dir=how.data_dir,
        channels=shape[-1],
        image_size=shape[0] if shape[0] == shape[1] else None,
    )
    if tuple(inputs.shape[1:]) != shape:
        raise ModelMismatchError(
            f"dataset {how.dataset} gives images of shape {tuple(inputs.shape[1:])}, the "
            f"model expects {shape}"
        )
    return inputs, labels, f"{how.dataset}/{split}"


def verify_files(
    model: str | os.PathLike,
    tflite: str | os.PathLike,
    *,
    inputs: VerifyInputs = VerifyInputs(),
    report: str | os.PathLike | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_agreement: float | None = None,
    min_within: float | None = None,
    kernel: str = "default",
    say: Say = _to_stderr,
) -> Any:
    """Compare a ``.tflite`` (LCE interpreter) with its Keras model file on the same inputs;
    with ``report``, write the `VerificationResult` there as JSON.

    The criteria default to exact agreement, relaxed for int8/float16 weights
    (`verify.verify_criteria`, whose reason goes to ``say``).

    Returns:
        The `VerificationResult` (``.passed``).

    Raises:
        MissingFileError, ConversionError, ModelMismatchError, ConfigError, OutputError.
    """
    from adambnn_larq.config import DEFAULT_RTOL
    from adambnn_larq.deploy.compress import compressed_weights
    from adambnn_larq.deploy.flatbuffer import io_details
    from adambnn_larq.deploy.verify import verify_conversion, verify_criteria
    from adambnn_larq.logs import heartbeat

    tflite_path = Path(tflite)
    check_distinct({"--report": report}, {"MODEL": model, "TFLITE": tflite})
    if not tflite_path.is_file():
        raise MissingFileError(f"TFLite file not found: {tflite_path}")
    if report:
        check_writable_file(report, what="--report")
    flatbuffer = tflite_path.read_bytes()
    try:
        io = io_details(flatbuffer)
    except ValueError as error:
        raise ModelMismatchError(f"{tflite_path}: {error}") from error
    compressed = compressed_weights(flatbuffer)
    criteria = verify_criteria(compressed, min_agreement=min_agreement, min_within=min_within)
    if compressed:
        say(f"{tflite_path}: {criteria.reason}")
    keras_model = convert.load_keras_model(model)
    shape = tuple(keras_model.input_shape[1:])
    tflite_shape = tuple(io["inputs"][0]["shape"][1:])
    if shape != tflite_shape:
        raise ModelMismatchError(
            f"{model} takes inputs of shape {shape}, {tflite_path} of shape {tflite_shape}: "
            "they are not the same model"
        )
    images, labels, source = _verify_inputs(inputs, shape)
    with heartbeat(f"running Keras and the LCE interpreter on {len(images)} inputs"):
        result = verify_conversion(  # two models that differ: ModelMismatchError
            keras_model,
            flatbuffer,
            images,
            labels=labels,
            atol=atol,
            rtol=DEFAULT_RTOL if rtol is None else rtol,
            min_agreement=criteria.min_agreement,
            min_within=criteria.min_within,
            source=source,
            kernel=kernel,
        )
    if report:
        content = dataclasses.asdict(result) | {"passed": result.passed}
        try:
            atomic_write_text(report, json.dumps(content) + "\n")
        except OSError as error:
            raise OutputError(
                f"cannot write --report {report}: {error.strerror or error}"
            ) from error
    return result


#: What the timings default to where a request leaves them out: the host's interpreter loop
#: is cheap to repeat, a board's tool is slower to start and noisier.
HOST_DEFAULTS = {"warmup": 3, "runs": 20}
BINARY_DEFAULTS = {"warmup": 5, "runs": 50}
BINARY_KERNELS = ("default",)


@dataclasses.dataclass(frozen=True)
class BenchmarkRequest:
    """What ``adambnn benchmark`` asks for. Without ``benchmark_binary``: the LCE interpreter on
    this host (every kernel unless ``kernels``); with it, ``lce_benchmark_model`` here or, with
    ``remote``, on a board over ssh. ``warmup``/``runs`` None: `HOST_DEFAULTS` or
    `BINARY_DEFAULTS`. ``output`` None: ``MODEL.benchmark.json``; the markdown goes beside."""

    model: str | os.PathLike
    output: str | os.PathLike | None = None
    threads: Sequence[int] = (1,)
    kernels: Sequence[str] | None = None
    warmup: int | None = None
    runs: int | None = None
    rounds: int = 4
    use_xnnpack: bool = False
    baseline_float: str | None = None
    save_baseline: str | None = None
    profile: bool = False
    benchmark_binary: str | None = None
    remote: str | None = None
    ssh_port: int | None = None
    ssh_identity: str | None = None
    ssh_options: Sequence[str] = ()


@dataclasses.dataclass
class BenchmarkRun:
    """The result written as JSON (``result``), its markdown table, the files written, and
    (host) the summary lines led by the fastest kernel (`tables.host_headlines`)."""

    result: dict[str, Any]
    table: str
    written: list[Path]
    headlines: list[str] = dataclasses.field(default_factory=list)


def _benchmark_outputs(request: BenchmarkRequest) -> tuple[Path, Path]:
    """The JSON and markdown paths, checked (distinct from the inputs, writable) up front."""
    model_path = Path(request.model)
    if not model_path.is_file():
        raise MissingFileError(f"model file not found: {model_path}")
    output = Path(request.output or model_path.with_suffix(".benchmark.json"))
    markdown_path = output.with_suffix(".md")
    check_distinct(
        {
            "--output": output,
            "--output's .md": markdown_path,
            "--save-baseline": request.save_baseline,
        },
        {
            "MODEL": model_path,
            "--baseline-float": request.baseline_float,
            "--benchmark-binary": request.benchmark_binary,
            "--ssh-identity": request.ssh_identity,
        },
    )
    check_writable_file(output, what="--output")
    check_writable_file(markdown_path, what="--output (its .md beside)")
    if request.save_baseline:
        if not request.baseline_float:
            from adambnn_larq.errors import ConfigError

            raise ConfigError("--save-baseline needs --baseline-float MODEL.h5")
        check_writable_file(request.save_baseline, what="--save-baseline", suffixes=(".tflite",))
    return output, markdown_path


def _benchmark_on_binary(
    request: BenchmarkRequest, binary: str, shell: Any, say: Say
) -> tuple[dict, str]:
    from adambnn_larq.deploy.profile import Profile
    from adambnn_larq.deploy.remote import benchmark_binary
    from adambnn_larq.deploy.tables import BINARY_TABLE_HEADER, binary_markdown_rows

    result = benchmark_binary(
        Path(request.model),
        binary,
        shell=shell,
        threads=request.threads,
        kernels=list(request.kernels or BINARY_KERNELS),
        num_runs=request.runs or BINARY_DEFAULTS["runs"],
        warmup_runs=request.warmup if request.warmup is not None else BINARY_DEFAULTS["warmup"],
        use_xnnpack=request.use_xnnpack,
        profile=request.profile,
    )
    table = BINARY_TABLE_HEADER + binary_markdown_rows(result)
    for run in result["runs"] if request.profile else []:
        profile = Profile.from_json(run["profile"])
        table += f"\n{run['threads']} thread(s), {run['kernel']}:\n\n{profile.markdown()}\n"
        say(profile.table())
    return result, table


def _float_baseline(path: str) -> bytes:
    from adambnn_larq.deploy.benchmark import convert_float_tflite, float_baseline
    from adambnn_larq.errors import ModelFileError
    from adambnn_larq.logs import heartbeat
    from adambnn_larq.saving import load_model

    try:
        keras_model = load_model(path)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelFileError(f"cannot load {path}: {error}") from error
    with heartbeat("converting the float baseline with tf.lite.TFLiteConverter"):
        return convert_float_tflite(float_baseline(keras_model))


def _read_tflite(path: Path) -> bytes:
    from adambnn_larq.deploy.flatbuffer import io_details

    flatbuffer = path.read_bytes()
    try:
        io_details(flatbuffer)
    except ValueError as error:
        raise ModelMismatchError(f"{path}: {error}") from error
    return flatbuffer


def _benchmark_on_host(
    request: BenchmarkRequest, flatbuffer: bytes, float_flatbuffer: bytes | None, say: Say
) -> tuple[dict, str]:
    from adambnn_larq.config import KERNELS
    from adambnn_larq.deploy.benchmark import benchmark_host
    from adambnn_larq.deploy.tables import host_markdown
    from adambnn_larq.errors import BenchmarkError

    model_path = Path(request.model)
    warmup = request.warmup if request.warmup is not None else HOST_DEFAULTS["warmup"]
    runs = request.runs or HOST_DEFAULTS["runs"]
    say(f"benchmarking {model_path} on this host (LCE interpreter)")
    try:
        result = benchmark_host(
            flatbuffer,
            threads=request.threads,
            kernels=list(request.kernels or KERNELS),
            warmup=warmup,
            runs=runs,
            use_xnnpack=request.use_xnnpack,
            float_flatbuffer=float_flatbuffer,
            rounds=max(1, min(request.rounds, runs)),
        )
    except (ValueError, RuntimeError) as error:
        raise BenchmarkError(str(error)) from error
    result["model"] = str(model_path)
    result["baseline_float"] = request.baseline_float
    table = host_markdown(result, model_path.name)
    if request.profile:
        table += _host_profile(request, flatbuffer, result, warmup=warmup, runs=runs, say=say)
    return result, table


def _host_profile(
    request: BenchmarkRequest,
    flatbuffer: bytes,
    result: dict,
    *,
    warmup: int,
    runs: int,
    say: Say,
) -> str:
    from adambnn_larq.deploy.profile import profile_host
    from adambnn_larq.logs import heartbeat

    kernel = list(request.kernels or ["indirect_bgemm"])[-1]
    threads = request.threads[0]
    say(
        f"op profile: every op replayed alone in the LCE interpreter ({kernel}, "
        f"{threads} thread(s))"
    )
    with heartbeat("profiling"):
        profile = profile_host(flatbuffer, kernel=kernel, threads=threads, warmup=warmup, runs=runs)
    result["profile"] = profile.to_json()
    say(profile.table())
    return f"\nop profile ({kernel}, {threads} thread(s)):\n\n{profile.markdown()}\n"


def benchmark_files(request: BenchmarkRequest, *, say: Say = _to_stderr) -> BenchmarkRun:
    """Run the benchmark a request describes and write its JSON, its markdown table and (with
    ``save_baseline``) the float baseline: all of them or none. The ssh destination and every
    output are checked before anything runs.

    Raises:
        RemoteSpecError, MissingFileError, OutputError, ModelFileError, BenchmarkError.
    """
    from adambnn_larq.deploy.remote import Shell
    from adambnn_larq.rundir import write_all_or_nothing

    shell, binary = None, request.benchmark_binary
    if binary:
        shell = Shell(
            remote=request.remote,
            port=request.ssh_port,
            identity=request.ssh_identity,
            ssh_options=request.ssh_options,
        )
    output, markdown_path = _benchmark_outputs(request)
    float_flatbuffer = None
    if binary:
        result, table = _benchmark_on_binary(request, binary, shell, say)
    else:
        flatbuffer = _read_tflite(Path(request.model))
        if request.baseline_float:
            float_flatbuffer = _float_baseline(request.baseline_float)
        result, table = _benchmark_on_host(request, flatbuffer, float_flatbuffer, say)
    headlines: list[str] = []
    if not binary:
        from adambnn_larq.deploy.tables import host_headlines

        headlines = host_headlines(result)
        result["headlines"] = headlines
    result["markdown"] = table
    contents = {
        output: (json.dumps(result, indent=2) + "\n").encode(),
        markdown_path: table.encode(),
    }
    if request.save_baseline and float_flatbuffer is not None:
        contents[Path(request.save_baseline)] = float_flatbuffer
    return BenchmarkRun(
        result=result, table=table, written=write_all_or_nothing(contents), headlines=headlines
    )
