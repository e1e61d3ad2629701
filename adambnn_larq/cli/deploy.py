"""``adambnn import-pytorch``, ``convert``, ``verify`` and ``benchmark``: the deployment commands
(`adambnn_larq.deploy`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from adambnn_larq.cli.arguments import (
    MAX_CLASSES,
    MAX_RUNS,
    MAX_SAMPLES,
    MAX_SIZE,
    MAX_THREADS,
    CommandError,
    int_in,
    non_negative_float,
    probability,
    seed,
)
from adambnn_larq.config import (
    ARCHITECTURES,
    COMPRESSED_MIN_AGREEMENT,
    CONVERSION_ROUTES,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    INTERPRETER_KERNELS,
    KERNELS,
    TARGETS,
    WEIGHT_STORAGES,
)


def _convert_command(args: argparse.Namespace) -> int:
    # convert_file through its module: tests replace it there.
    from adambnn_larq.deploy import convert
    from adambnn_larq.rundir import atomic_write_text, check_distinct, check_writable_file

    output = Path(args.output)
    check_distinct({"--output": output, "--report": args.report}, {"MODEL": args.model})
    if args.report:
        check_writable_file(args.report, what="--report")
    result = convert.convert_file(
        args.model,
        output,
        progress=not args.quiet,
        target=args.target,
        int8_io=args.int8_io,
        default_int8_range=args.default_int8_range,
        route=args.route,
        strict=args.strict,
        fold=args.fold,
        weights=args.weights,
    )
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
            "folded": result.folded,
            "weights": args.weights,
            "compressed_tensors": [
                dataclasses.asdict(t)
                for t in (result.compression.tensors if result.compression else [])
            ],
        }
        try:
            atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
        except OSError as error:
            # The report was asked for: no half result (a .tflite without it) is left behind.
            output.unlink(missing_ok=True)
            raise CommandError(
                f"cannot write --report {args.report}: {error.strerror or error}; "
                f"{output} was removed"
            ) from error
    print(f"wrote {output}")
    print(result.summary())
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.compress import compressed_weights
    from adambnn_larq.deploy.convert import load_keras_model
    from adambnn_larq.deploy.flatbuffer import io_details
    from adambnn_larq.deploy.verify import (
        dataset_inputs,
        load_inputs,
        random_inputs,
        verify_conversion,
        verify_criteria,
    )
    from adambnn_larq.logs import heartbeat
    from adambnn_larq.rundir import atomic_write_text, check_distinct, check_writable_file

    tflite_path = Path(args.tflite)
    check_distinct({"--report": args.report}, {"MODEL": args.model, "TFLITE": args.tflite})
    if not tflite_path.is_file():
        raise CommandError(f"TFLite file not found: {tflite_path}")
    if args.report:
        check_writable_file(args.report, what="--report")
    flatbuffer = tflite_path.read_bytes()
    try:
        io = io_details(flatbuffer)
    except ValueError as error:
        raise CommandError(f"{tflite_path}: {error}") from error
    compressed = compressed_weights(flatbuffer)
    criteria = verify_criteria(
        compressed, min_agreement=args.min_agreement, min_within=args.min_within
    )
    if compressed:
        print(f"{tflite_path}: {criteria.reason}", file=sys.stderr)
    min_agreement, min_within = criteria.min_agreement, criteria.min_within
    model = load_keras_model(args.model)
    shape = tuple(model.input_shape[1:])
    tflite_shape = tuple(io["inputs"][0]["shape"][1:])
    if shape != tflite_shape:
        raise CommandError(
            f"{args.model} takes inputs of shape {shape}, {tflite_path} of shape {tflite_shape}: "
            "they are not the same model"
        )
    labels = None
    if args.inputs and args.dataset:
        raise CommandError("--inputs and --dataset both give the inputs: choose one")
    if args.inputs:
        inputs = load_inputs(args.inputs, shape)
        source = str(args.inputs)
    elif args.dataset:
        # A bad dataset, split or data directory is a domain error (ConfigError,
        # DataNotFoundError) that names it.
        inputs, labels, split = dataset_inputs(
            args.dataset,
            args.samples,
            split=args.split,
            data_dir=args.data_dir,
            channels=shape[-1],
            image_size=shape[0] if shape[0] == shape[1] else None,
        )
        if tuple(inputs.shape[1:]) != shape:
            raise CommandError(
                f"dataset {args.dataset} gives images of shape {tuple(inputs.shape[1:])}, the "
                f"model expects {shape}"
            )
        source = f"{args.dataset}/{split}"
    else:
        inputs = random_inputs(shape, args.samples, seed=args.seed)
        source = f"random uniform[-1, 1), seed {args.seed}"
    with heartbeat(f"running Keras and the LCE interpreter on {len(inputs)} inputs"):
        result = verify_conversion(  # two models that differ: ModelMismatchError
            model,
            flatbuffer,
            inputs,
            labels=labels,
            atol=args.atol,
            rtol=args.rtol,
            min_agreement=min_agreement,
            min_within=min_within,
            source=source,
            kernel=args.kernel,
        )
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
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected finite MIN < MAX, got {text!r}")
    return low, high


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``adambnn convert``, ``adambnn verify`` and ``adambnn benchmark``."""
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
    parser.add_argument(
        "--fold",
        action="store_true",
        help="ReActNets: fold RPReLU/RSign constants first (same function, fewer float ops)",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHT_STORAGES,
        default="float32",
        help="store large float weights (the classifier) as int8 per channel or float16",
    )
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
        "--samples",
        type=int_in(1, MAX_SAMPLES),
        default=32,
        help="inputs to compare (default 32)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random inputs")
    parser.add_argument(
        "--inputs",
        help="your own inputs instead: a .npy array (N, *input shape), read without pickles",
    )
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
        type=probability,
        default=None,
        help=f"top-1 agreement required (default 1; {COMPRESSED_MIN_AGREEMENT} for int8/float16 "
        "weights)",
    )
    parser.add_argument(
        "--min-within",
        type=probability,
        default=None,
        help="share of samples that must be within the elementwise tolerance (default 1; not "
        "required for int8/float16 weights)",
    )
    parser.add_argument(
        "--kernel",
        choices=INTERPRETER_KERNELS,
        default="default",
        help="LCE binary-conv kernel of the interpreter",
    )
    parser.add_argument("--report", help="also write the result as JSON here")
    parser.set_defaults(func=_verify_command)

    _add_benchmark_command(subparsers)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,4; got {text!r}") from error
    if not values or min(values) < 1 or max(values) > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"thread counts must be in 1..{MAX_THREADS}, got {text!r}")
    return values


def _kernel_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [v for v in values if v not in KERNELS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"kernels must be among {KERNELS}, got {text!r}")
    return values


def _benchmark_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.benchmark import benchmark_host, convert_float_tflite, float_baseline
    from adambnn_larq.deploy.flatbuffer import io_details
    from adambnn_larq.deploy.profile import Profile, profile_host
    from adambnn_larq.deploy.remote import Shell, benchmark_binary
    from adambnn_larq.deploy.tables import BINARY_TABLE_HEADER, binary_markdown_rows, host_markdown
    from adambnn_larq.logs import heartbeat
    from adambnn_larq.rundir import atomic_write_bytes, check_distinct, check_writable_file
    from adambnn_larq.saving import load_model

    # The ssh destination is checked first: nothing runs, nothing is written before.
    shell = None
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
    model_path = Path(args.model)
    if not model_path.is_file():
        raise CommandError(f"model file not found: {model_path}")
    output = Path(args.output or model_path.with_suffix(".benchmark.json"))
    markdown_path = output.with_suffix(".md")
    check_distinct(
        {
            "--output": output,
            "--output's .md": markdown_path,
            "--save-baseline": args.save_baseline,
        },
        {
            "MODEL": model_path,
            "--baseline-float": args.baseline_float,
            "--benchmark-binary": args.benchmark_binary,
            "--ssh-identity": args.ssh_identity,
        },
    )
    # Every output is checked before the (long) benchmark.
    check_writable_file(output, what="--output")
    check_writable_file(markdown_path, what="--output (its .md beside)")
    if args.save_baseline:
        if not args.baseline_float:
            raise CommandError("--save-baseline needs --baseline-float MODEL.h5")
        check_writable_file(args.save_baseline, what="--save-baseline", suffixes=(".tflite",))
    float_flatbuffer = None
    if shell is not None:
        result = benchmark_binary(
            model_path,
            args.benchmark_binary,
            shell=shell,
            threads=args.num_threads,
            kernels=args.kernels or ["default"],
            num_runs=args.runs or 50,
            warmup_runs=args.warmup if args.warmup is not None else 5,
            use_xnnpack=args.use_xnnpack,
            profile=args.profile,
        )
        table = BINARY_TABLE_HEADER + binary_markdown_rows(result)
        for run in result["runs"] if args.profile else []:
            profile = Profile.from_json(run["profile"])
            table += f"\n{run['threads']} thread(s), {run['kernel']}:\n\n{profile.markdown()}\n"
            print(profile.table(), file=sys.stderr)
    else:
        flatbuffer = model_path.read_bytes()
        try:
            io_details(flatbuffer)
        except ValueError as error:
            raise CommandError(f"{model_path}: {error}") from error
        if args.baseline_float:
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
        if args.profile:
            kernel = (args.kernels or ["indirect_bgemm"])[-1]
            threads = args.num_threads[0]
            print(
                f"op profile: every op replayed alone in the LCE interpreter ({kernel}, "
                f"{threads} thread(s))",
                file=sys.stderr,
            )
            with heartbeat("profiling"):
                profile = profile_host(
                    flatbuffer,
                    kernel=kernel,
                    threads=threads,
                    warmup=args.warmup if args.warmup is not None else 3,
                    runs=args.runs or 20,
                )
            result["profile"] = profile.to_json()
            table += f"\nop profile ({kernel}, {threads} thread(s)):\n\n{profile.markdown()}\n"
            print(profile.table(), file=sys.stderr)
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


def _add_benchmark_command(subparsers: argparse._SubParsersAction) -> None:
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
    parser.add_argument(
        "--warmup", type=int_in(0, MAX_RUNS), help="warm-up runs (host 3, binary 5)"
    )
    parser.add_argument("--runs", type=int_in(1, MAX_RUNS), help="timed runs (host 20, binary 50)")
    parser.add_argument(
        "--rounds",
        type=int_in(1, MAX_RUNS),
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
    parser.add_argument(
        "--profile",
        action="store_true",
        help="time per op type and per layer (host: op-by-op replay; --remote: the tool's "
        "op profiler)",
    )
    parser.add_argument(
        "--remote", metavar="USER@HOST[:PORT]", help="run lce_benchmark_model over ssh"
    )
    parser.add_argument("--benchmark-binary", help="local path of lce_benchmark_model")
    parser.add_argument("--ssh-port", type=int_in(1, 65535))
    parser.add_argument("--ssh-identity", help="ssh private key file")
    parser.add_argument("--ssh-option", action="append", help="extra ssh -o option (repeatable)")
    parser.add_argument("--output", help="JSON file (default MODEL.benchmark.json; .md beside)")
    parser.set_defaults(func=_benchmark_command)


def _import_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.pytorch_import import import_pytorch
    from adambnn_larq.rundir import check_distinct

    check_distinct({"--output": args.output}, {"CHECKPOINT": args.checkpoint})
    step = args.step if args.step == "auto" else int(args.step)
    size = args.input_size
    import_pytorch(
        args.checkpoint,
        args.output,
        architecture=args.arch,
        step=step,
        num_classes=args.num_classes,
        input_shape=(size, size, 3),
        log=lambda line: print(line, flush=True),
    )
    return 0


def add_import_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``adambnn import-pytorch``."""
    parser = subparsers.add_parser(
        "import-pytorch",
        help="turn an official AdamBNN/ReActNet (ReActNet-A) or torchvision ResNet-34 "
        "PyTorch checkpoint into this project's Keras model",
        description="Read a PyTorch checkpoint without running code from it (weights-only "
        "loading) and save the equivalent Keras model. Needs PyTorch (pip install torch).",
    )
    parser.add_argument("checkpoint", help="PyTorch file: training checkpoint or state_dict")
    parser.add_argument("--output", required=True, help="Keras model to write (.h5 or .keras)")
    parser.add_argument(
        "--num-classes",
        type=int_in(1, MAX_CLASSES),
        default=None,
        help="expected classes (checked, default: read)",
    )
    parser.add_argument(
        "--step",
        choices=("auto", "1", "2"),
        default="auto",
        help="ReActNet-A: 1 real weights, 2 binary weights, auto decides from the file and "
        "prints why",
    )
    parser.add_argument(
        "--arch", choices=("auto", *ARCHITECTURES), default="auto", help="network in the file"
    )
    parser.add_argument(
        "--input-size",
        type=int_in(1, MAX_SIZE),
        default=224,
        help="square input size of the Keras model",
    )
    parser.set_defaults(func=_import_command)
