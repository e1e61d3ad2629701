"""``adambnn study``: the paper study (`adambnn_larq.study`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adambnn_larq.cli.arguments import MAX_JOBS, int_in


def _study_command(args: argparse.Namespace) -> int:
    from adambnn_larq.rundir import STUDY_FILE, check_writable_dir
    from adambnn_larq.study import run_study

    if "=" in args.study:  # `adambnn study key=value ...`: the default study with overrides
        args.overrides.insert(0, args.study)
        args.study = "paper_study"
    suffix = "-smoke" if args.smoke else ""
    output = Path(args.output or Path("runs") / (Path(args.study).stem + suffix))
    datasets = args.datasets.split(",") if args.datasets else None
    runs = args.runs.split(",") if args.runs else None
    command = "adambnn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else None
    check_writable_dir(output, what="--output")
    result = run_study(
        args.study,
        output,
        smoke=args.smoke,
        datasets=datasets,
        runs=runs,
        overrides=args.overrides,
        verbose=args.verbose,
        command=command,
        jobs=args.jobs,
    )
    for section in result["datasets"]:
        if section.get("skipped"):
            continue
        reproduced = sum(f["reproduced"] is True for f in section["findings"])
        partly = sum(f["status"] == "partly" for f in section["findings"])
        print(
            f"{section['dataset']}: {len(section['rows'])} runs; "
            f"{reproduced}/{len(section['findings'])} of the paper's findings reproduce, "
            f"{partly} partly ({section['pairing']})"
        )
    print(f"study report: {output / STUDY_FILE}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="the paper study: Adam vs SGD, one- vs two-step, weight-decay sweep (resumable)",
        description="Train every run of a study file (default studies/paper_study.py) with "
        "equal budgets and fixed seeds, then write the Table-1 comparison with the paper's "
        "numbers (study.md) and the analysis plots. Rerunning resumes run by run.",
    )
    parser.add_argument("study", nargs="?", default="paper_study", help="study file or name")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="configuration overrides for every run"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: minutes")
    parser.add_argument("--output", help="study directory (default runs/STUDY)")
    parser.add_argument("--datasets", help="comma-separated subset, e.g. fashion_mnist")
    parser.add_argument("--runs", help="comma-separated subset of the runs, e.g. adam-1step-wd0")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    parser.add_argument(
        "--jobs",
        type=int_in(1, MAX_JOBS),
        default=1,
        help="runs trained side by side (separate processes)",
    )
    parser.set_defaults(func=_study_command)
