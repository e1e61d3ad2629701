"""``adambnn summary`` and ``adambnn train``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from adambnn_larq.cli.arguments import MAX_CLASSES, MAX_JOBS, MAX_SIZE, int_in, positive_float
from adambnn_larq.config import MODELS, STRATEGIES

if TYPE_CHECKING:  # the command line imports TensorFlow only when a command runs
    import tensorflow as tf


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that choose a ReActNet variant (shared by several commands)."""
    parser.add_argument("--variant", choices=sorted(MODELS), default="reactnet_a")
    parser.add_argument(
        "--step",
        type=int,
        choices=(1, 2),
        default=2,
        help="1: binary activations, real weights; 2: binary weights too",
    )
    parser.add_argument(
        "--input-size",
        type=int_in(1, MAX_SIZE),
        default=None,
        help="square input size (default 224 / 28)",
    )
    parser.add_argument(
        "--channels", type=int_in(1, 1024), default=None, help="input channels (default 3 / 1)"
    )
    parser.add_argument(
        "--num-classes", type=int_in(1, MAX_CLASSES), default=None, help="default 1000 / 10"
    )
    parser.add_argument(
        "--width-multiplier", type=positive_float, default=0.25, help="reactnet_small only"
    )
    parser.add_argument(
        "--num-downsamplings", type=int_in(0, 4), default=2, help="reactnet_small only"
    )


def build_model_from_args(args: argparse.Namespace) -> tf.keras.Model:
    """Build the variant that `add_model_arguments` describes."""
    from adambnn_larq.models import ReActNetA, ReActNetSmall

    def given(
        value: int | None, default: int
    ) -> int:  # 0 is an error (argparse), never "the default"
        return default if value is None else value

    binary = args.step == 2
    if args.variant == "reactnet_a":
        size, channels = given(args.input_size, 224), given(args.channels, 3)
        return ReActNetA(
            input_shape=(size, size, channels),
            num_classes=given(args.num_classes, 1000),
            binary_weights=binary,
        )
    size, channels = given(args.input_size, 28), given(args.channels, 1)
    return ReActNetSmall(
        input_shape=(size, size, channels),
        num_classes=given(args.num_classes, 10),
        binary_weights=binary,
        width_multiplier=args.width_multiplier,
        num_downsamplings=args.num_downsamplings,
    )


def _summary(args: argparse.Namespace) -> int:
    import larq as lq

    model = build_model_from_args(args)
    lq.models.summary(model, print_fn=print)
    return 0


def _train(args: argparse.Namespace) -> int:
    from adambnn_larq.config import resolve_config
    from adambnn_larq.errors import ConfigError
    from adambnn_larq.recipe_files import is_study, load_recipe
    from adambnn_larq.rundir import check_writable_dir
    from adambnn_larq.training import check_config, configure_cpu_devices, make_strategy, train

    name = Path(args.recipe).stem
    run_dir = Path(args.run_dir or Path("runs") / (name + ("-smoke" if args.smoke else "")))
    recipe = load_recipe(args.recipe, smoke=args.smoke)
    if is_study(recipe):
        raise ConfigError(
            f"{args.recipe} is a study, not a training recipe: run it with "
            f"`adambnn study {args.recipe}`"
        )
    config = resolve_config(recipe, args.overrides, where=f"recipe {args.recipe}")
    check_config(config)
    check_writable_dir(run_dir, what="--run-dir")
    if args.cpu_devices > 1:
        configure_cpu_devices(args.cpu_devices)
    strategy = make_strategy(args.strategy)
    print(f"recipe {name}: run directory {run_dir} ({strategy.num_replicas_in_sync} replica(s))")
    summary = train(config, run_dir, recipe=name, strategy=strategy, verbose=args.verbose)
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
        type=int_in(1, MAX_JOBS),
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
