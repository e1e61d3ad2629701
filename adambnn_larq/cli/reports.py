"""``adambnn analyze`` and ``adambnn toy``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adambnn_larq.cli.arguments import MAX_STEPS, CommandError, finite_float, int_in, positive_float


def _analyze_command(args: argparse.Namespace) -> int:
    from adambnn_larq.reports import analyze
    from adambnn_larq.rundir import REPORT_DIR, check_writable_dir

    if args.output is None:
        if len(args.run_dirs) > 1:
            raise CommandError("several run directories need --output DIR for the report")
        args.output = str(Path(args.run_dirs[0]) / REPORT_DIR)
    for run_dir in map(Path, args.run_dirs):  # the input's plain mistakes first
        if not run_dir.is_dir():
            raise CommandError(
                f"{run_dir} is a file, not a run directory (what `adambnn train` writes)"
                if run_dir.exists()
                else f"run directory not found: {run_dir}"
            )
    check_writable_dir(args.output, what="--output")
    report = analyze(args.run_dirs, args.output, labels=args.labels, progress=print)
    print(f"report: {report}")
    return 0


def _toy_command(args: argparse.Namespace) -> int:
    from adambnn_larq.reports import toy
    from adambnn_larq.rundir import check_writable_dir

    check_writable_dir(args.output, what="--output")
    result = toy(args.output, steps=args.steps, learning_rate=args.learning_rate, start=args.start)
    for entry in result["optimizers"].values():
        reached = entry["first_step_at_minimum"]
        where = f"reached the minimum at step {reached}" if reached is not None else "stalled"
        x, y = entry["final_position"]
        print(
            f"{entry['name']}: final loss {entry['final_loss']:.3g} at ({x:.3f}, {y:.3f}); {where}"
        )
    print(f"wrote {Path(args.output) / 'toy.png'} and toy.json")
    sys.stdout.flush()
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="plots and a Table-1-style report (FF, C2I, saturation, CAM, histograms) of runs",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training run directories")
    parser.add_argument(
        "--output", help="report directory (default RUN_DIR/report for a single run)"
    )
    parser.add_argument("--labels", nargs="+", help="one name per run for legends and tables")
    parser.set_defaults(func=_analyze_command)

    parser = subparsers.add_parser(
        "toy", help="the paper's 2-D toy: SGD with momentum stalls, Adam reaches the minimum"
    )
    parser.add_argument("--output", default="toy", help="output directory (default ./toy)")
    parser.add_argument("--steps", type=int_in(1, MAX_STEPS), default=300)
    parser.add_argument("--learning-rate", type=positive_float, default=0.01)
    parser.add_argument(
        "--start", type=finite_float, nargs=2, default=(-0.5, -0.5), metavar=("X", "Y")
    )
    parser.set_defaults(func=_toy_command)
