"""``adambnn import-pytorch``, ``convert``, ``verify`` and ``benchmark``: the deployment commands
(`adambnn_larq.deploy`)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from adambnn_larq.cli.arguments import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_IMAGES,
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
    DATASET_NAMES,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    INTERPRETER_KERNELS,
    KERNELS,
    TARGETS,
    WEIGHT_STORAGES,
)


def _convert_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.jobs import convert_to_files

    result = convert_to_files(
        args.model,
        args.output,
        report=args.report,
        weights=args.weights,
        progress=not args.quiet,
        target=args.target,
        int8_io=args.int8_io,
        default_int8_range=args.default_int8_range,
        route=args.route,
        strict=args.strict,
        fold=args.fold,
    )
    print(f"wrote {Path(args.output)}")
    print(result.summary())
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.jobs import VerifyInputs, verify_files

    inputs = VerifyInputs(
        samples=args.samples,
        seed=args.seed,
        inputs_file=args.inputs,
        dataset=args.dataset,
        split=args.split,
        data_dir=args.data_dir,
    )
    result = verify_files(
        args.model,
        args.tflite,
        inputs=inputs,
        report=args.report,
        atol=args.atol,
        rtol=args.rtol,
        min_agreement=args.min_agreement,
        min_within=args.min_within,
        kernel=args.kernel,
    )
    print(result.summary())
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
    _add_convert_command(subparsers)
    _add_verify_command(subparsers)
    _add_benchmark_command(subparsers)
    _add_evaluate_command(subparsers)


def _add_convert_command(subparsers: argparse._SubParsersAction) -> None:
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


def _add_verify_command(subparsers: argparse._SubParsersAction) -> None:
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
    from adambnn_larq.deploy.jobs import BenchmarkRequest, benchmark_files

    if args.remote and not args.benchmark_binary:
        raise CommandError("--remote needs --benchmark-binary PATH (lce_benchmark_model)")
    if args.benchmark_binary and args.baseline_float:
        raise CommandError("--baseline-float is for the host benchmark (no --remote)")
    request = BenchmarkRequest(
        model=args.model,
        output=args.output,
        threads=args.num_threads,
        kernels=args.kernels,
        warmup=args.warmup,
        runs=args.runs,
        rounds=args.rounds,
        use_xnnpack=args.use_xnnpack,
        baseline_float=args.baseline_float,
        save_baseline=args.save_baseline,
        profile=args.profile,
        benchmark_binary=args.benchmark_binary,
        remote=args.remote,
        ssh_port=args.ssh_port,
        ssh_identity=args.ssh_identity,
        ssh_options=args.ssh_option or (),
    )
    run = benchmark_files(request)
    for line in run.headlines:
        print(line)
    print(run.table, end="")
    print(f"wrote {', '.join(str(path) for path in run.written)}")
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


def _evaluate_command(args: argparse.Namespace) -> int:
    from adambnn_larq.deploy.evaluate import evaluate_to_file

    result = evaluate_to_file(
        args.model,
        args.output,
        dataset=args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        limit=args.limit,
        batch_size=args.batch_size,
        kernel=args.kernel,
        threads=args.num_threads,
        say=None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(result.summary())
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5 accuracy of a .h5/.keras or .tflite model over a dataset split",
        description="Run a Keras model or its LCE .tflite (LCE interpreter) over a dataset "
        "split, batch by batch, with the preprocessing the training pipeline evaluates with "
        "for that dataset and the model's input size (ImageNet at 224: resize 256, center "
        "crop 224). Prints top-1, top-5 and the image count; --output writes them as JSON.",
    )
    parser.add_argument("model", help="model file: .h5, .hdf5, .keras or .tflite")
    parser.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        default="imagenet2012",
        help="dataset (default imagenet2012); its class count must be the model's",
    )
    parser.add_argument("--split", help="split (default: the dataset's evaluation split)")
    parser.add_argument("--data-dir", help="dataset directory (see adambnn_larq.data)")
    parser.add_argument(
        "--limit", type=int_in(1, MAX_IMAGES), help="only the first N images of the split"
    )
    parser.add_argument(
        "--batch-size", type=int_in(1, MAX_BATCH), default=32, help="images per batch (32)"
    )
    parser.add_argument(
        "--kernel",
        choices=INTERPRETER_KERNELS,
        default="default",
        help=".tflite: LCE binary-conv kernel (indirect_bgemm is several times faster on x86)",
    )
    parser.add_argument(
        "--num-threads", type=int_in(1, MAX_THREADS), default=1, help=".tflite: threads (1)"
    )
    parser.add_argument("--output", "-o", help="write the result here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no start and progress lines")
    parser.set_defaults(func=_evaluate_command)
