"""The paper study: many training runs of one budget and their Table-1 comparison.

A study file (``recipes/paper_study.py``) defines ``get_config(smoke) -> dict`` with

- ``datasets``: dataset name -> ``{"recipe": base recipe, "overrides": {...}}``, the budget
  every run of that dataset shares;
- ``runs``: a list of ``{"name", "overrides", "paper"}``: what each run changes, and the key of
  its row in ``paper``;
- ``paper``: the paper's numbers per row (``ff``, ``c2i``, ``top1``, any may be missing).

`run_study` trains every run (each resumable: a finished run is read back, an interrupted one
continues from its last epoch), writes the analysis report of each dataset's runs, and a
``study.md`` with the Table-1-style comparison, the paper's numbers beside the measured ones
and, for each of the paper's findings, whether it reproduces here.

References:
    - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization", ICML 2021,
      Table 1 and Sections 3-4; SPEC.md §1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adambnn_larq.config import ConfigError, TrainConfig, resolve_config

STUDY_FILE = "study.md"
STUDY_JSON = "study.json"


class StudyError(ValueError):
    """A malformed study file; the message names the field."""


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One training run of a study."""

    dataset: str
    name: str
    config: TrainConfig
    paper: dict[str, float]


def _require(mapping: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise StudyError(f"{where}: field {key!r} is missing")
    if not isinstance(mapping[key], kind):
        raise StudyError(f"{where}: field {key!r} must be a {kind.__name__}")
    return mapping[key]


def load_study(
    name: str,
    *,
    smoke: bool = False,
    datasets: Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
) -> list[StudyRun]:
    """Every run of the study file ``name`` with its resolved configuration.

    Every configuration is resolved before anything trains, so a bad field or override
    fails at once, naming the run.

    Arguments:
        name: a study file in ``recipes/`` or a path to one.
        smoke: the study's (and each base recipe's) smoke settings.
        datasets: only these of the study's datasets (default: all).
        runs: only the runs of these names (default: all), in the study's order.
        overrides: ``key=value`` strings applied to every run last.

    Returns:
        The runs, grouped by dataset in the study's order.

    Raises:
        StudyError, ConfigError: a malformed study file or override.
    """
    from adambnn_larq.training import load_recipe

    study = load_recipe(name, smoke=smoke)
    where = f"study {name}"
    study_datasets = _require(study, "datasets", dict, where)
    study_runs = _require(study, "runs", list, where)
    paper = study.get("paper", {})
    if datasets is not None:
        unknown = sorted(set(datasets) - set(study_datasets))
        if unknown:
            raise StudyError(
                f"{where} has no dataset(s) {', '.join(unknown)}; it has "
                f"{', '.join(study_datasets)}"
            )
    names = [_require(run, "name", str, f"{where}: runs[{i}]") for i, run in enumerate(study_runs)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StudyError(f"{where}: run names must be unique; repeated: {', '.join(repeated)}")
    if runs is not None:
        unknown = [run for run in runs if run not in names]
        if unknown:
            raise StudyError(
                f"{where} has no run(s) {', '.join(unknown)}; it has {', '.join(names)}"
            )
    result = []
    for dataset, entry in study_datasets.items():
        if datasets is not None and dataset not in datasets:
            continue
        recipe = load_recipe(
            _require(entry, "recipe", str, f"{where}: datasets.{dataset}"), smoke=smoke
        )
        budget = entry.get("overrides", {})
        for index, run in enumerate(study_runs):
            if runs is not None and run["name"] not in runs:
                continue
            run_where = f"{where}: runs[{index}] ({run['name']}) on {dataset}"
            row = run.get("paper")
            if row is not None and row not in paper:
                raise StudyError(f"{run_where}: paper row {row!r} is not in the study's 'paper'")
            try:
                config = resolve_config(
                    {**recipe, **budget, **run.get("overrides", {}), "dataset": dataset},
                    list(overrides),
                    where=run_where,
                )
            except ConfigError as error:
                raise ConfigError(f"{run_where}: {error}") from error
            result.append(StudyRun(dataset, run["name"], config, paper.get(row, {})))
    return result


# --------------------------------------------------------------------------------------
# The findings: each a claim of the paper and a test on the measured rows
# --------------------------------------------------------------------------------------


def _strictly_increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def findings(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Which of the paper's findings the measured ``rows`` (by run name) reproduce.

    Each finding compares runs of the paper study by name; a finding whose runs are missing
    (or lack a number) is reported as not testable rather than guessed.
    """

    def value(run: str, key: str) -> float | None:
        return (rows.get(run) or {}).get(key)

    def check(claim: str, needed: list[tuple[str, str]], test: Callable[..., bool], shown: str):
        values = [value(run, key) for run, key in needed]
        if any(v is None for v in values):
            return {"claim": claim, "reproduced": None, "measured": "not measured"}
        measured = shown.format(*values)
        return {"claim": claim, "reproduced": bool(test(*values)), "measured": measured}

    sweep = ["adam-1step-wd-1e-05", "adam-1step-wd0", "adam-1step-wd5e-06", "adam-1step-wd1e-05"]
    return [
        check(
            "Adam beats SGD (one-step, decay 0)",
            [("adam-1step-wd0", "top1"), ("sgd-1step-wd0", "top1")],
            lambda adam, sgd: adam > sgd,
            "top-1 Adam {0:.2%} vs SGD {1:.2%}",
        ),
        check(
            "Adam beats SGD (two-step, decay 5e-6 then 0)",
            [("adam-2step-wd5e-06", "top1"), ("sgd-2step-wd5e-06", "top1")],
            lambda adam, sgd: adam > sgd,
            "top-1 Adam {0:.2%} vs SGD {1:.2%}",
        ),
        check(
            "Larger step-1 weight decay gives a larger FF ratio (-1e-5 < 0 < 5e-6 < 1e-5)",
            [(run, "ff") for run in sweep],
            lambda *ff: _strictly_increasing(ff),
            "FF {0:.2e}, {1:.2e}, {2:.2e}, {3:.2e}",
        ),
        check(
            "Larger step-1 weight decay gives a smaller C2I ratio (-1e-5 > 0 > 5e-6 > 1e-5)",
            [(run, "c2i") for run in sweep],
            lambda *c2i: _strictly_increasing(c2i[::-1]),
            "C2I {0:.4f}, {1:.4f}, {2:.4f}, {3:.4f}",
        ),
        check(
            "Negative decay (-1e-5) gives the least accurate one-step run",
            [(run, "top1") for run in sweep],
            lambda negative, *others: negative < min(others),
            "top-1 {0:.2%} vs {1:.2%}, {2:.2%}, {3:.2%}",
        ),
        check(
            "Two-step training depends less on the initialization than one-step (decay 5e-6)",
            [("adam-2step-wd5e-06", "c2i"), ("adam-1step-wd5e-06", "c2i")],
            lambda two, one: two > one,
            "C2I two-step {0:.4f} vs one-step {1:.4f}",
        ),
        check(
            "Two-step training is more stable than one-step (decay 5e-6)",
            [("adam-2step-wd5e-06", "ff"), ("adam-1step-wd5e-06", "ff")],
            lambda two, one: two < one,
            "FF two-step {0:.2e} vs one-step {1:.2e}",
        ),
        check(
            "Two-step beats one-step in top-1 (decay 5e-6)",
            [("adam-2step-wd5e-06", "top1"), ("adam-1step-wd5e-06", "top1")],
            lambda two, one: two > one,
            "top-1 two-step {0:.2%} vs one-step {1:.2%}",
        ),
        check(
            "Adam lowers the activation saturation more than SGD (first binary activation, "
            "after epoch 1 → end, one-step decay 0)",
            [
                ("adam-1step-wd0", "saturation_drop"),
                ("sgd-1step-wd0", "saturation_drop"),
            ],
            lambda adam, sgd: adam > sgd,
            "drop Adam {0:.2%} vs SGD {1:.2%} (points)",
        ),
        check(
            "Adam's latent weights leave zero (more beyond ±1) where SGD's stay at one peak "
            "(one-step, decay 0)",
            [("adam-1step-wd0", "beyond_one"), ("sgd-1step-wd0", "beyond_one")],
            lambda adam, sgd: adam > sgd,
            "beyond ±1: Adam {0:.2%} vs SGD {1:.2%}",
        ),
    ]


# --------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------


def _measured_row(run_dir: Path, label: str) -> dict[str, Any]:
    from adambnn_larq.reports import load_run, run_summary, step_summary

    run = load_run(run_dir, label)
    row = run_summary(run)
    first = step_summary(run.steps[0])
    if "saturation_first" in first:
        row["saturation_first"] = first["saturation_first"]
        row["saturation_last"] = first["saturation_last"]
        row["saturation_drop"] = first["saturation_first"] - first["saturation_last"]
    row["beyond_one"] = step_summary(run.steps[-1]).get("beyond_one")
    row["c2i"] = row["c2i_run"]
    row["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in run.summary["steps"])
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _table(runs: Sequence[StudyRun], rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| run | schedule | optimizer | step-1 decay | FF ratio | C2I (run start) | "
        "C2I (last step start) | top-1 % | paper FF | paper C2I | paper top-1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        row, paper = rows[run.name], run.paper
        top1 = row.get("top1")
        lines.append(
            f"| {run.name} | {run.config.schedule} | {run.config.optimizer} | "
            f"{run.config.weight_decay:g} | {_fmt(row.get('ff'), '.2e')} | "
            f"{_fmt(row.get('c2i_run'), '.4f')} | {_fmt(row.get('c2i_step'), '.4f')} | "
            f"{_fmt(None if top1 is None else 100 * top1, '.2f')} | "
            f"{_fmt(paper.get('ff'), '.2e')} | {_fmt(paper.get('c2i'), '.4f')} | "
            f"{_fmt(paper.get('top1'), '.2f')} |"
        )
    return lines


def _study_markdown(
    title: str,
    command: str,
    sections: list[dict[str, Any]],
    runs: Sequence[StudyRun],
    seconds: float,
) -> str:
    lines = [
        f"# {title}",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.date.today().isoformat()}; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Wall time of this invocation: {seconds / 60:.1f} min (runs finished by an earlier "
        "invocation are read back, not retrained; see each run's training time below)",
        "",
        "FF: mean over every training iteration (all steps). C2I: at the end, against the signs "
        "at the start of the run and of the last step. Paper: binary ResNet-18 on ImageNet "
        "(Table 1 and the four-run comparison), for the direction of each effect.",
    ]
    for section in sections:
        dataset = section["dataset"]
        lines += ["", f"## {dataset}", ""]
        if section.get("skipped"):
            lines += [f"Not run: {section['skipped']}"]
            continue
        dataset_runs = [run for run in runs if run.dataset == dataset]
        config = dataset_runs[0].config
        lines += [
            f"Budget per run: {config.train_limit or 'all'} training images, batch "
            f"{config.batch_size}, {config.model} width {config.width_multiplier}, "
            f"distillation from the small teacher: {config.distillation}, seed {config.seed}; "
            f"test accuracy on {config.eval_limit or 'all'} test images. Training time of "
            f"all runs: {sum(r['wall_time_s'] for r in section['rows'].values()) / 60:.1f} min.",
            "",
        ]
        lines += _table(dataset_runs, section["rows"])
        lines += ["", "### The paper's findings here", "", "| finding | reproduces | measured |",
                  "|---|---|---|"]  # fmt: skip
        for finding in section["findings"]:
            verdict = {True: "yes", False: "no", None: "not testable"}[finding["reproduced"]]
            lines.append(f"| {finding['claim']} | {verdict} | {finding['measured']} |")
        lines += [
            "",
            f"Plots and the per-step table (saturation, SDAM, weights beyond ±1, dead weights): "
            f"[{dataset}/report/report.md]({dataset}/report/report.md).",
        ]
    return "\n".join(lines) + "\n"


def _train_run(
    run: StudyRun, run_dir: Path, number: int, total: int, verbose: int, in_process: bool = False
) -> None:
    """Train one run of the study: here, or in a new process logging to ``run_dir/train.log``."""
    from adambnn_larq.training import train

    where = f"[study] {run.dataset} run {number}/{total}: {run.name}"
    # One write per line: runs of `--jobs N` report from threads at the same time.
    sys.stdout.write(
        f"{where} ({run.config.schedule}, {run.config.optimizer}, decay "
        f"{run.config.weight_decay:g}) in {run_dir}\n"
    )
    sys.stdout.flush()
    if in_process:
        train(run.config, run_dir, recipe=run.name, verbose=verbose)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    with open(log_path, "a") as log:
        done = subprocess.run(
            [sys.executable, "-m", "adambnn_larq.study", "--train-run", run.config.to_json(),
             str(run_dir), run.name, str(verbose)],
            stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = log_path.read_text()[-2000:]
        raise StudyError(f"{where} failed (exit {done.returncode}); end of {log_path}:\n{tail}")
    sys.stdout.write(f"{where}: finished\n")
    sys.stdout.flush()


def run_study(
    name: str,
    output_dir: str | os.PathLike,
    *,
    smoke: bool = False,
    datasets: Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    verbose: int = 2,
    command: str | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train (or resume) every run of the study ``name`` and write its report.

    Layout: ``OUTPUT/<dataset>/<run>/`` (each an `adambnn train` run directory),
    ``OUTPUT/<dataset>/teachers/`` (the shared teacher), ``OUTPUT/<dataset>/report/`` (plots
    and per-step table), ``OUTPUT/study.md`` and ``OUTPUT/study.json``.

    Arguments:
        name: the study file (see `load_study`).
        output_dir: the study directory; rerunning with the same arguments resumes.
        smoke: tiny budgets (the whole pipeline in minutes).
        datasets: only these of the study's datasets.
        runs: only the runs of these names (the findings that need the others are then
            reported as not testable).
        overrides: ``key=value`` for every run.
        verbose: Keras progress mode for training.
        command: the command line to record in ``study.md``.
        jobs: runs trained at the same time (in separate processes) after each dataset's
            first run, which trains the shared teacher. The small networks of the study do
            not keep two cores busy, so 2 is faster on a 2-core machine.

    Returns:
        The content of ``study.json``.
    """
    from adambnn_larq import data
    from adambnn_larq.reports import analyze
    from adambnn_larq.saving import atomic_write_text

    started = time.perf_counter()
    runs = load_study(name, smoke=smoke, datasets=datasets, runs=runs, overrides=overrides)
    output = Path(output_dir)
    sections = []
    for dataset in dict.fromkeys(run.dataset for run in runs):
        dataset_runs = [run for run in runs if run.dataset == dataset]
        try:
            data.prepare(dataset, data_dir=dataset_runs[0].config.data_dir, download=False)
        except data.DataNotFoundError as error:
            print(f"[study] {dataset}: skipped, its data is not available ({error})", flush=True)
            sections.append({"dataset": dataset, "skipped": f"the data is not available: {error}"})
            continue
        run_dirs = [output / dataset / run.name for run in dataset_runs]
        # The first run trains the shared teacher; the others may then run side by side.
        _train_run(dataset_runs[0], run_dirs[0], 1, len(dataset_runs), verbose, in_process=True)
        rest = list(zip(dataset_runs[1:], run_dirs[1:], range(2, len(dataset_runs) + 1)))
        if jobs <= 1:
            for run, run_dir, number in rest:
                _train_run(run, run_dir, number, len(dataset_runs), verbose, in_process=True)
        else:
            with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
                futures = [
                    pool.submit(_train_run, run, run_dir, number, len(dataset_runs), verbose)
                    for run, run_dir, number in rest
                ]
                for future in futures:
                    future.result()
        analyze(run_dirs, output / dataset / "report", labels=[r.name for r in dataset_runs])
        rows = {r.name: _measured_row(d, r.name) for r, d in zip(dataset_runs, run_dirs)}
        sections.append({"dataset": dataset, "rows": rows, "findings": findings(rows)})
    seconds = time.perf_counter() - started
    command = command or f"adambnn study {name}" + (" --smoke" if smoke else "")
    title = "The paper study" + (" (smoke)" if smoke else "")
    atomic_write_text(output / STUDY_FILE, _study_markdown(title, command, sections, runs, seconds))
    result = {
        "study": name,
        "smoke": smoke,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count()},
        "seconds_this_invocation": seconds,
        "runs": {f"{r.dataset}/{r.name}": {"paper": r.paper} for r in runs},
        "datasets": sections,
    }
    atomic_write_text(output / STUDY_JSON, json.dumps(result, indent=2, default=str))
    return result


def _study_command(args: argparse.Namespace) -> int:
    from adambnn_larq.cli import CommandError, check_output_dir
    from adambnn_larq.reports import ReportError
    from adambnn_larq.training import TrainingDiverged

    if "=" in args.study:  # `adambnn study key=value ...`: the default study with overrides
        args.overrides.insert(0, args.study)
        args.study = "paper_study"
    suffix = "-smoke" if args.smoke else ""
    output = Path(args.output or Path("runs") / (Path(args.study).stem + suffix))
    datasets = args.datasets.split(",") if args.datasets else None
    runs = args.runs.split(",") if args.runs else None
    command = "adambnn " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["study"] else None
    check_output_dir(output, "--output")
    try:
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
    except (StudyError, ValueError, FileNotFoundError, ReportError, TrainingDiverged) as error:
        raise CommandError(str(error)) from error
    for section in result["datasets"]:
        if section.get("skipped"):
            continue
        reproduced = sum(f["reproduced"] is True for f in section["findings"])
        print(
            f"{section['dataset']}: {len(section['rows'])} runs; "
            f"{reproduced}/{len(section['findings'])} of the paper's findings reproduce"
        )
    print(f"study report: {output / STUDY_FILE}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from adambnn_larq.cli import positive_int

    parser = subparsers.add_parser(
        "study",
        help="the paper study: Adam vs SGD, one- vs two-step, weight-decay sweep (resumable)",
        description="Train every run of a study file (default recipes/paper_study.py) with "
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
        type=positive_int,
        default=1,
        help="runs trained side by side (separate processes)",
    )
    parser.set_defaults(func=_study_command)


def _train_run_main(argv: Sequence[str]) -> int:
    """``python -m adambnn_larq.study --train-run CONFIG_JSON RUN_DIR NAME VERBOSE``."""
    from adambnn_larq import logs
    from adambnn_larq.training import train

    logs.configure(verbose=not logs.quiet())  # as the `adambnn study` that started it
    config_json, run_dir, name, verbose = argv
    config = resolve_config(json.loads(config_json), where=f"study run {name}")
    train(config, run_dir, recipe=name, verbose=int(verbose))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--train-run"] or len(sys.argv) != 6:
        sys.exit("internal entry point of `adambnn study --jobs N`; use `adambnn study`")
    sys.exit(_train_run_main(sys.argv[2:]))
