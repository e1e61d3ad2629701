"""What a study run costs, where its time goes, and what `adambnn study --jobs N` gains from
giving each run's process its share of the cores instead of thread pools sized for the whole
machine, side by side in one run.

The runs are real study runs (a final run of ``--run`` for each of ``--seeds``, the study's
configuration with a smaller ``--train-limit``/``--eval-limit``), trained N at a time (N = the
number of seeds) by the same entry point `adambnn study --jobs N` starts (``python -m
adambnn_larq.study --train-run``), once per thread setting in alternating rounds, so a change
of the machine's load hits every setting alike. Their teachers are trained once beforehand
and copied into every round (a study trains each teacher once).

A setting is ``default`` (TensorFlow's own pools: as many threads as cores, in every process),
a number T (``TF_NUM_INTRAOP_THREADS=T`` and ``TF_NUM_INTEROP_THREADS=T`` in each process), or
``rev:REVISION``: the library as of that git revision (a temporary worktree first on
``PYTHONPATH``), default threads: a change's cost side by side with its parent's.
Per setting: the wall time of the N runs, the median per-epoch split printed by the runs
(training batches, validation, the rest: start of a fit, analysis, saving), and whether every
run's results (summary.json without its time fields, the analysis files) are identical to those
of the first setting: a speed-up counts only if they are.

Usage::

    python benchmarks/study_run_cost.py                        # ~25 min on 2 cores
    python benchmarks/study_run_cost.py --train-limit 1000 --rounds 1    # ~6 min
    python benchmarks/study_run_cost.py --settings default,1,2
    python benchmarks/study_run_cost.py --settings rev:HEAD~1,rev:HEAD --train-limit 1000

Writes ``docs/results/study-run-cost/study-run-cost.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adambnn_larq.hostinfo import machine_summary
from adambnn_larq.study import StudyRun, load_study

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "study-run-cost"
#: The run files that hold results and no timings (summary.json is compared without its
#: time fields).
ANALYSIS_FILES = ("ff_steps.csv", "c2i.jsonl", "saturation.jsonl", "weights.jsonl", "log.csv")
TIME_FIELDS = re.compile(r"time|seconds|per_second|date")
EPOCH_LINE = re.compile(
    r"epoch \d+/\d+: .*; (\d+) s: training (\d+), validation (\d+), the rest \([^)]*\) (-?\d+)"
)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="paper_study")
    parser.add_argument("--run", default="adam-2step-wd5e-06", help="a final run of the study")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--seeds", default="0,1", help="one process each, all at once")
    parser.add_argument("--learning-rate", type=float, default=2.5e-3)
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--eval-limit", type=int, default=1250)
    parser.add_argument("--settings", default="default,1", help="thread settings to compare")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "study-run-cost.json")
    return parser.parse_args()


def _runs(args: argparse.Namespace) -> list[StudyRun]:
    study = load_study(
        args.study,
        datasets=[args.dataset],
        runs=[args.run],
        overrides=[f"train_limit={args.train_limit}", f"eval_limit={args.eval_limit}"],
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = [run for run in study.finals if run.config.seed in seeds]
    rate = {"learning_rate": args.learning_rate}
    return [
        dataclasses.replace(run, config=dataclasses.replace(run.config, **rate)) for run in chosen
    ]


REPOSITORY = Path(__file__).resolve().parents[1]


def _checkout(revision: str, work: Path) -> Path:
    """A worktree of ``revision`` under ``work`` (removed by `_remove_checkouts`)."""
    folder = work / "checkouts" / revision.replace("/", "_").replace("~", "-")
    if not folder.exists():
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "-q",
                        str(folder), revision], check=True)  # fmt: skip
    return folder


def _remove_checkouts(work: Path) -> None:
    for folder in (work / "checkouts").glob("*"):
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force",
                        str(folder)], check=False)  # fmt: skip


def _environment(setting: str, work: Path) -> dict[str, str]:
    environment = dict(os.environ)
    if setting.startswith("rev:"):
        environment["PYTHONPATH"] = str(_checkout(setting[4:], work))
    elif setting != "default":
        environment["TF_NUM_INTRAOP_THREADS"] = environment["TF_NUM_INTEROP_THREADS"] = setting
    return environment


def _train_together(runs: list[StudyRun], folder: Path, setting: str) -> float:
    """Train ``runs`` at once, as `adambnn study --jobs N` does; returns the wall time."""
    started = time.perf_counter()
    processes = []
    for run in runs:
        run_dir = folder / run.directory
        run_dir.mkdir(parents=True)
        with open(run_dir / "train.log", "w") as log:
            command = [sys.executable, "-m", "adambnn_larq.study", "--train-run",
                       run.config.to_json(), str(run_dir), run.name, "0"]  # fmt: skip
            environment = _environment(setting, folder.parent)
            # A revision's checkout is also the working directory: `python -m` puts that
            # before PYTHONPATH.
            cwd = environment["PYTHONPATH"] if setting.startswith("rev:") else None
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd
            )
            processes.append((run_dir, process))
    for run_dir, process in processes:
        if process.wait() != 0:
            tail = (run_dir / "train.log").read_text()[-3000:]
            sys.exit(f"study_run_cost: {run_dir} failed (exit {process.returncode}):\n{tail}")
    return time.perf_counter() - started


def _fingerprint(run_dir: Path) -> dict[str, Any]:
    """What must not change with the thread setting: the results without their timings, and
    the analysis files' contents."""

    def untimed(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not TIME_FIELDS.search(k)}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        if isinstance(value, str):  # paths name the round's folder
            return value.replace(str(run_dir.parent), "<round>")
        return value

    summary = json.loads((run_dir / "summary.json").read_text())
    files = {}
    for path in sorted(run_dir.rglob("*")):
        if path.name in ANALYSIS_FILES:
            files[str(path.relative_to(run_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"summary": untimed(summary), "files": files}


def _epoch_split(run_dir: Path) -> list[list[int]]:
    """[total, training, validation, rest] seconds of every epoch the run printed."""
    text = (run_dir / "train.log").read_text()
    return [[int(x) for x in match.groups()] for match in EPOCH_LINE.finditer(text)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    args = _parse_args()
    runs = _runs(args)
    settings = args.settings.split(",")
    work = Path(tempfile.mkdtemp(prefix="study-run-cost-"))
    print(f"study_run_cost: {len(runs)} runs at once, settings {settings}, in {work}", flush=True)
    warm_seconds = _train_together(runs, work / "warm-up", settings[0])
    warm_split = [split for run in runs for split in _epoch_split(work / "warm-up" / run.directory)]
    print(f"warm-up (trains the teachers): {warm_seconds:.0f} s", flush=True)
    timings: dict[str, list[float]] = {s: [] for s in settings}
    splits: dict[str, list[list[int]]] = {s: [] for s in settings}
    fingerprints: dict[str, list[dict]] = {}
    for round_number in range(args.rounds):
        for setting in settings:
            folder = work / f"{setting.replace(':', '-').replace('~', '-')}-{round_number}"
            shutil.copytree(work / "warm-up" / "teachers", folder / "teachers")
            seconds = _train_together(runs, folder, setting)
            timings[setting].append(seconds)
            for run in runs:
                splits[setting] += _epoch_split(folder / run.directory)
            fingerprints.setdefault(setting, [_fingerprint(folder / r.directory) for r in runs])
            print(f"round {round_number + 1}, {setting}: {seconds:.0f} s", flush=True)
    reference = fingerprints.get(settings[0])
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_summary(),
        "runs": [run.directory for run in runs],
        "train_limit": args.train_limit,
        "eval_limit": args.eval_limit,
        "warm_up_seconds": warm_seconds,
        "warm_up_epoch_splits_s": warm_split,
        "settings": {
            setting: {
                "wall_seconds": timings[setting],
                "median_wall_seconds": _median(timings[setting]),
                "speed_up_vs_first": _median(timings[settings[0]]) / _median(timings[setting]),
                "median_epoch_split_s": {
                    name: statistics.median(split[i] for split in splits[setting] or [[0] * 4])
                    for i, name in enumerate(("total", "training", "validation", "rest"))
                },
                "results_identical_to_first": fingerprints.get(setting) == reference,
            }
            for setting in settings
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for setting, row in result["settings"].items():
        print(
            f"{setting}: median {row['median_wall_seconds']:.0f} s "
            f"({row['speed_up_vs_first']:.2f}x), epoch split {row['median_epoch_split_s']}, "
            f"results identical: {row['results_identical_to_first']}"
        )
    print(f"wrote {args.output}")
    _remove_checkouts(work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
