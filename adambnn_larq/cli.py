"""The ``adambnn`` command line: one subcommand per task, each defined next to its code.

Every module in `COMMAND_MODULES` provides ``add_commands(subparsers)``; a subcommand sets
``func(args) -> int`` as its handler. TensorFlow is imported only when a command runs, so
``adambnn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

COMMAND_MODULES: tuple[str, ...] = (
    "adambnn_larq.cli",
    "converters.pytorch",
    "adambnn_larq.data",
    "converters.lce",
    "converters.benchmark",
    "adambnn_larq.reports",
    "adambnn_larq.demo",
    "adambnn_larq.study",
)

VARIANTS = ("reactnet_a", "reactnet_small")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _number(text: str, kind: type, minimum: float | None, strict: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _number(text, int, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _number(text, int, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    return _number(text, float, 0, strict=True)


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    return _number(text, float, 0)


def finite_float(text: str) -> float:
    """argparse type: a finite float (no nan, no inf)."""
    return _number(text, float, None)


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """`adambnn_larq.saving.check_writable_dir` as a `CommandError` (before any long work)."""
    from adambnn_larq.saving import OutputError, check_writable_dir

    try:
        return check_writable_dir(path, what=what)
    except OutputError as error:
        raise CommandError(str(error)) from error


def check_output_file(path: str | os.PathLike, what: str, **options) -> Path:
    """`adambnn_larq.saving.check_writable_file` as a `CommandError` (before any long work)."""
    from adambnn_larq.saving import OutputError, check_writable_file

    try:
        return check_writable_file(path, what=what, **options)
    except OutputError as error:
        raise CommandError(str(error)) from error


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a ReActNet variant (shared by several commands)."""
    parser.add_argument("--variant", choices=VARIANTS, default="reactnet_a")
    parser.add_argument(
        "--step",
        type=int,
        choices=(1, 2),
        default=2,
        help="1: binary activations, real weights; 2: binary weights too",
    )
    parser.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="square input size (default 224 / 28)",
    )
    parser.add_argument(
        "--channels", type=positive_int, default=None, help="input channels (default 3 / 1)"
    )
    parser.add_argument("--num-classes", type=positive_int, default=None, help="default 1000 / 10")
    parser.add_argument(
        "--width-multiplier", type=positive_float, default=0.25, help="reactnet_small only"
    )
    parser.add_argument(
        "--num-downsamplings", type=non_negative_int, default=2, help="reactnet_small only"
    )


def build_model_from_args(args: argparse.Namespace):
    """Build the variant that `add_model_arguments` describes."""
    import adambnn_larq as ab

    def given(value, default):  # 0 is an error (argparse), never "the default"
        return default if value is None else value

    binary = args.step == 2
    if args.variant == "reactnet_a":
        size, channels = given(args.input_size, 224), given(args.channels, 3)
        return ab.ReActNetA(
            input_shape=(size, size, channels),
            num_classes=given(args.num_classes, 1000),
            binary_weights=binary,
        )
    size, channels = given(args.input_size, 28), given(args.channels, 1)
    return ab.ReActNetSmall(
        input_shape=(size, size, channels),
        num_classes=given(args.num_classes, 10),
        binary_weights=binary,
        width_multiplier=args.width_multiplier,
        num_downsamplings=args.num_downsamplings,
    )


def _summary(args: argparse.Namespace) -> int:
    import larq as lq

    try:
        model = build_model_from_args(args)
    except ValueError as error:
        raise CommandError(str(error)) from error
    lq.models.summary(model, print_fn=print)
    return 0


def _train(args: argparse.Namespace) -> int:
    from adambnn_larq.config import ConfigError, resolve_config
    from adambnn_larq.training import (
        TrainingDiverged,
        check_config,
        configure_cpu_devices,
        is_study,
        load_recipe,
        make_strategy,
        train,
    )

    name = Path(args.recipe).stem
    run_dir = Path(args.run_dir or Path("runs") / (name + ("-smoke" if args.smoke else "")))
    try:
        recipe = load_recipe(args.recipe, smoke=args.smoke)
        if is_study(recipe):
            raise ConfigError(
                f"{args.recipe} is a study, not a training recipe: run it with "
                f"`adambnn study {args.recipe}`"
            )
        config = resolve_config(recipe, args.overrides, where=f"recipe {args.recipe}")
        check_config(config)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    check_output_dir(run_dir, "--run-dir")
    if args.cpu_devices > 1:
        configure_cpu_devices(args.cpu_devices)
    strategy = make_strategy(args.strategy)
    print(f"recipe {name}: run directory {run_dir} ({strategy.num_replicas_in_sync} replica(s))")
    try:
        summary = train(config, run_dir, recipe=name, strategy=strategy, verbose=args.verbose)
    except (FileNotFoundError, ValueError, TrainingDiverged) as error:
        raise CommandError(str(error)) from error
    steps = ", ".join(f"{s['name']} {s['test_accuracy']:.4f}" for s in summary["steps"])
    print(f"done: test accuracy {steps}; final model {summary['final_model']}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summary", help="print larq's model summary (binary/float parameters, memory, MACs)"
    )
    add_model_arguments(parser)
    parser.set_defaults(func=_summary)

    parser = subparsers.add_parser(
        "train",
        help="train a recipe (resumes when run again)",
        description="Train RECIPE (a name in recipes/ or a .py file) with key=value overrides "
        "of its configuration. Rerunning the same command resumes the run.",
    )
    parser.add_argument("recipe", help="recipe name (e.g. adambnn_fashion_mnist) or file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="configuration overrides, e.g. optimizer=sgd weight_decay=0",
    )
    parser.add_argument("--smoke", action="store_true", help="shrink everything to seconds")
    parser.add_argument("--run-dir", help="default: runs/RECIPE")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument(
        "--cpu-devices",
        type=positive_int,
        default=1,
        help="split the CPU into N logical devices (for --strategy mirrored)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras progress: 1 bar, 2 a line per epoch, 0 none",
    )
    parser.set_defaults(func=_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adambnn",
        description="AdamBNN in Larq: train ReActNet-A with two-step Adam, convert with LCE, "
        "verify and benchmark.",
    )
    parser.add_argument(
        "--verbose",
        dest="tf_logs",
        action="store_true",
        help="also show TensorFlow's, absl's and TFLite's own log lines (before COMMAND)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adambnn`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`train RECIPE --smoke key=value`).
    if (
        extra
        and hasattr(args, "overrides")
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Before any command imports TensorFlow: its C++ log level is read when it loads.
    from adambnn_larq import logs

    logs.configure(verbose=args.tf_logs)
    try:
        return args.func(args)
    except CommandError as error:
        print(f"adambnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adambnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
