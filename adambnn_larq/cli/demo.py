"""``adambnn demo``: the main job (`adambnn_larq.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from adambnn_larq.cli.arguments import MAX_RUNS, MAX_SAMPLES, int_in


def _print_summary(run_dir: Path, result: dict[str, Any]) -> None:
    from adambnn_larq.rundir import DEMO_SUMMARY

    accuracies = ", ".join(f"{k} {v:.2%}" for k, v in result["test_accuracy"].items())
    verification = result["verification"]
    print("\n=== summary")
    print(f"test accuracy: {accuracies} (teacher {result['teacher_test_accuracy']:.2%})")
    print(
        f"LCE model: {result['tflite']} ({result['tflite_bytes'] / 1e3:.0f} kB, "
        f"{result['lce_bconv2d']} LceBconv2d)"
    )
    print(
        f"verification: {verification['samples']} test images, "
        f"{verification['within_tolerance']:.1%} within tolerance, max |diff| "
        f"{verification['max_abs_diff']:.2g}, top-1 agreement {verification['top1_agreement']:.1%}"
    )
    print(result["latency_summary"])
    print(f"analysis report: {result['report']}")
    print(f"everything: {run_dir} ({DEMO_SUMMARY}); {result['seconds_this_invocation']:.0f} s")


def _demo(args: argparse.Namespace) -> int:
    from adambnn_larq.demo import run_demo
    from adambnn_larq.rundir import check_writable_dir

    default = "runs/demo-smoke" if args.smoke else "runs/demo-fast" if args.fast else "runs/demo"
    run_dir = Path(args.run_dir or default)
    check_writable_dir(run_dir, what="--run-dir")  # before half an hour of training
    result = run_demo(
        run_dir,
        fast=args.fast,
        samples=args.samples,
        benchmark_runs=args.runs,
        smoke=args.smoke,
    )
    _print_summary(run_dir, result)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: train, convert, verify, benchmark and analyse on Fashion-MNIST",
        description="Two-step AdamBNN training of the small ReActNet on Fashion-MNIST "
        "(offline), LCE conversion, verification against Keras on the test set, host "
        "benchmark and analysis report. Rerunning resumes; --fast takes a few minutes.",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--fast", action="store_true", help="few-minute version")
    budget.add_argument(
        "--smoke", action="store_true", help="the pipeline on a tiny budget (tests)"
    )
    parser.add_argument("--run-dir", help="default: runs/demo (-fast, -smoke)")
    parser.add_argument(
        "--samples", type=int_in(1, MAX_SAMPLES), default=200, help="test images to verify on"
    )
    parser.add_argument("--runs", type=int_in(1, MAX_RUNS), default=20, help="timed benchmark runs")
    parser.set_defaults(func=_demo)
