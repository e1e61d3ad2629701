"""The paper study: many training runs of one budget and their Table-1 comparison.

A study file (``studies/paper_study.py``) defines ``get_config(smoke) -> dict`` with

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
      Table 1 and Sections 3-4; docs/method.md §4.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq import data, logs
from adambnn_larq.config import DATASET_NAMES, TrainConfig, load_recipe, resolve_config
from adambnn_larq.errors import ConfigError, StudyError, TrainingDiverged
from adambnn_larq.hostinfo import cpu_model_name
from adambnn_larq.reports import analyze, run_summary, step_summary
from adambnn_larq.rundir import (
    DIVERGED_FILE,
    REPORT_DIR,
    STUDY_FILE,
    STUDY_JSON,
    TRAIN_LOG,
    atomic_write_text,
    claim_dir,
    dir_lock,
    load_run,
)
from adambnn_larq.training import earlier_run, train


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One training run of a study: a learning-rate sweep point or a final run of one seed."""

    dataset: str
    name: str  # the study's run name (finals) or "sweep-<arm>-lr<lr>" (sweep)
    config: TrainConfig
    paper: dict[str, float]
    arm: str  # the optimizer/schedule arm whose learning rate the sweep chooses
    kind: str  # "sweep" or "final"
    base: str | None = None  # sweep only: the study run whose settings it uses

    @property
    def directory(self) -> str:
        """The run directory's name (all of a dataset's runs share one teachers/ folder)."""
        if self.kind == "sweep":
            return self.name
        return f"{self.name}-seed{self.config.seed}"


@dataclasses.dataclass(frozen=True)
class Study:
    """A resolved study: the sweep runs, and the final runs whose learning rate comes from the
    sweep (`with_learning_rates`)."""

    sweeps: list[StudyRun]
    finals: list[StudyRun]
    validation_size: int
    seeds: list[int]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(run.dataset for run in self.finals))


def _require(mapping: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise StudyError(f"{where}: field {key!r} is missing")
    if not isinstance(mapping[key], kind):
        raise StudyError(f"{where}: field {key!r} must be a {kind.__name__}")
    return mapping[key]


def _lr_name(learning_rate: float) -> str:
    return f"{learning_rate:g}"


def load_study(
    name: str,
    *,
    smoke: bool = False,
    datasets: Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
) -> Study:
    """Every run of the study file ``name`` with its resolved configuration.

    Every configuration (each sweep point, each final run and seed) is resolved before
    anything trains, so a bad field or override fails at once, naming the run. Every run holds
    the last ``validation_size`` training images out: the sweep runs are evaluated on them
    only (``evaluate_test=false``: they never read the test split), the final runs choose
    their best checkpoint on them and report the test split at the end.

    Arguments:
        name: a study file in ``recipes/`` or a path to one.
        smoke: the study's (and each base recipe's) smoke settings.
        datasets: only these of the study's datasets (default: all).
        runs: only the runs of these names (default: all), in the study's order; only their
            arms are swept.
        overrides: ``key=value`` strings applied to every run last.

    Raises:
        StudyError, ConfigError: a malformed study file or override.
    """
    study = load_recipe(name, smoke=smoke)
    where = f"study {name}"
    study_datasets = _require(study, "datasets", dict, where)
    study_runs = _require(study, "runs", list, where)
    arms = _require(study, "arms", dict, where)
    selection = _require(study, "selection", dict, where)
    validation_size = _require(selection, "validation_size", int, f"{where}: selection")
    seeds = _require(selection, "seeds", list, f"{where}: selection")
    if validation_size < 1 or not seeds or not all(isinstance(s, int) for s in seeds):
        raise StudyError(f"{where}: selection needs validation_size >= 1 and integer seeds")
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
    by_name = dict(zip(names, study_runs))
    for index, run in enumerate(study_runs):
        arm = _require(run, "arm", str, f"{where}: runs[{index}] ({run['name']})")
        if arm not in arms:
            raise StudyError(f"{where}: runs[{index}] ({run['name']}): arm {arm!r} not in 'arms'")
    for arm, entry in arms.items():
        sweep_run = _require(entry, "sweep_run", str, f"{where}: arms.{arm}")
        rates = _require(entry, "learning_rates", list, f"{where}: arms.{arm}")
        if sweep_run not in by_name or by_name[sweep_run]["arm"] != arm:
            raise StudyError(f"{where}: arms.{arm}: sweep_run {sweep_run!r} is no run of {arm}")
        if len(rates) < 1 or not all(isinstance(r, float) and r > 0 for r in rates):
            raise StudyError(f"{where}: arms.{arm}: learning_rates must be positive floats")

    chosen = [run for run in study_runs if runs is None or run["name"] in runs]
    wanted_arms = list(dict.fromkeys(run["arm"] for run in chosen))
    selection_overrides = {"validation_size": validation_size}
    sweeps, finals = [], []
    for dataset, entry in study_datasets.items():
        if datasets is not None and dataset not in datasets:
            continue
        recipe = load_recipe(
            _require(entry, "recipe", str, f"{where}: datasets.{dataset}"), smoke=smoke
        )
        budget = {**entry.get("overrides", {}), **selection_overrides, "dataset": dataset}

        def resolve(values: dict, run_where: str, recipe: dict = recipe) -> TrainConfig:
            try:
                return resolve_config({**recipe, **values}, list(overrides), where=run_where)
            except ConfigError as error:
                raise ConfigError(f"{run_where}: {error}") from error

        for arm in wanted_arms:
            base = by_name[arms[arm]["sweep_run"]]
            for rate in arms[arm]["learning_rates"]:
                run_name = f"sweep-{arm}-lr{_lr_name(rate)}"
                values = {**budget, **base.get("overrides", {}), "learning_rate": rate,
                          "seed": seeds[0], "evaluate_test": False}  # fmt: skip
                config = resolve(values, f"{where}: {run_name} on {dataset}")
                sweeps.append(
                    StudyRun(dataset, run_name, config, {}, arm, "sweep", base=base["name"])
                )
        for run in chosen:
            row = run.get("paper")
            run_where = f"{where}: runs[{names.index(run['name'])}] ({run['name']}) on {dataset}"
            if row is not None and row not in paper:
                raise StudyError(f"{run_where}: paper row {row!r} is not in the study's 'paper'")
            for seed in seeds:
                values = {**budget, **run.get("overrides", {}), "seed": seed}
                config = resolve(values, run_where)
                finals.append(
                    StudyRun(dataset, run["name"], config, paper.get(row, {}), run["arm"], "final")
                )
    return Study(sweeps, finals, validation_size, list(seeds))


# --------------------------------------------------------------------------------------
# Statistics over seeds, and the findings: each a claim of the paper and a test on them
# --------------------------------------------------------------------------------------

METRICS = ("ff", "c2i_run", "c2i_step", "top1", "saturation_drop", "beyond_one")


def seed_statistics(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean, sample standard deviation (0 for one seed) and the values; None if any is missing."""
    if not values or any(v is None for v in values):
        return None
    array = np.asarray(values, dtype=np.float64)
    spread = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "sd": spread, "values": [float(v) for v in array]}


def _compare(a: dict, b: dict) -> int:
    """+1: a > b beyond the seed spread (the difference of the means exceeds the sum of the
    standard deviations), -1: a < b beyond it, 0: within it."""
    difference = a["mean"] - b["mean"]
    if abs(difference) <= a["sd"] + b["sd"]:
        return 0
    return 1 if difference > 0 else -1


def _verdict(orders: Sequence[int]) -> tuple[bool | None, str]:
    """Claims hold when every comparison is +1: "yes"; any -1 contradicts: "no"; else the
    differences are within the seed spread."""
    if all(o == 1 for o in orders):
        return True, "yes"
    if any(o == -1 for o in orders):
        return False, "no: the opposite, beyond the seed spread"
    return None, "not distinguishable: within the seed spread"


def findings(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Which of the paper's findings the measured ``rows`` reproduce.

    ``rows`` maps run names to metric -> `seed_statistics`. A finding counts as reproduced
    only when each of its differences exceeds the seed spread (sum of the two standard
    deviations) in the paper's direction; one beyond the spread the other way contradicts
    it; otherwise it is not distinguishable here. A finding whose runs are missing is not
    testable.
    """

    def stat(run: str, key: str) -> dict | None:
        return (rows.get(run) or {}).get(key)

    def check(claim: str, needed: list[tuple[str, str]], pairs, shown: str) -> dict[str, Any]:
        stats = [stat(run, key) for run, key in needed]
        if any(s is None for s in stats):
            return {"claim": claim, "reproduced": None, "verdict": "not testable",
                    "measured": "not measured"}  # fmt: skip
        reproduced, verdict = _verdict([_compare(stats[i], stats[j]) for i, j in pairs])
        measured = shown.format(*(f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}"
                                  for s, fmt in zip(stats, _formats(needed))))  # fmt: skip
        return {"claim": claim, "reproduced": reproduced, "verdict": verdict,
                "measured": measured}  # fmt: skip

    sweep = ["adam-1step-wd-1e-05", "adam-1step-wd0", "adam-1step-wd5e-06", "adam-1step-wd1e-05"]
    chain = [(i + 1, i) for i in range(3)]  # each larger decay above the smaller one
    return [
        check("Adam beats SGD in top-1 (one-step, decay 0)",
              [("adam-1step-wd0", "top1"), ("sgd-1step-wd0", "top1")], [(0, 1)],
              "Adam {0} vs SGD {1}"),
        check("Adam beats SGD in top-1 (two-step, step-1 decay then 0)",
              [("adam-2step-wd5e-06", "top1"), ("sgd-2step-wd5e-06", "top1")], [(0, 1)],
              "Adam {0} vs SGD {1}"),
        check("Larger step-1 weight decay gives a larger FF ratio (negative < 0 < half < full)",
              [(run, "ff") for run in sweep], chain, "FF {0}, {1}, {2}, {3}"),
        check("Larger step-1 weight decay gives a smaller C2I ratio",
              [(run, "c2i_run") for run in sweep], [(i, i + 1) for i in range(3)],
              "C2I {0}, {1}, {2}, {3}"),
        check("Negative decay gives the least accurate one-step run",
              [(run, "top1") for run in sweep], [(1, 0), (2, 0), (3, 0)],
              "top-1 {0} vs {1}, {2}, {3}"),
        check("Two-step training depends less on the initialization than one-step (C2I)",
              [("adam-2step-wd5e-06", "c2i_run"), ("adam-1step-wd5e-06", "c2i_run")], [(0, 1)],
              "C2I two-step {0} vs one-step {1}"),
        check("Two-step training is more stable than one-step (lower FF)",
              [("adam-1step-wd5e-06", "ff"), ("adam-2step-wd5e-06", "ff")], [(0, 1)],
              "FF one-step {0} vs two-step {1}"),
        check("Two-step beats one-step in top-1",
              [("adam-2step-wd5e-06", "top1"), ("adam-1step-wd5e-06", "top1")], [(0, 1)],
              "top-1 two-step {0} vs one-step {1}"),
        check("Adam lowers the activation saturation more than SGD (first binary activation, "
              "one-step, decay 0)",
              [("adam-1step-wd0", "saturation_drop"), ("sgd-1step-wd0", "saturation_drop")],
              [(0, 1)], "drop Adam {0} vs SGD {1}"),
        check("Adam's latent weights leave zero (more beyond ±1) where SGD's stay at one peak",
              [("adam-1step-wd0", "beyond_one"), ("sgd-1step-wd0", "beyond_one")], [(0, 1)],
              "beyond ±1: Adam {0} vs SGD {1}"),
    ]  # fmt: skip


def _formats(needed: Sequence[tuple[str, str]]) -> list[str]:
    return [".2e" if key == "ff" else ".4f" for _, key in needed]


# --------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------


def _measured_row(run_dir: Path, label: str) -> dict[str, Any]:
    run = load_run(run_dir, label)
    row = run_summary(run)
    first = step_summary(run.steps[0])
    if "saturation_first" in first:
        row["saturation_drop"] = first["saturation_first"] - first["saturation_last"]
    row["beyond_one"] = step_summary(run.steps[-1]).get("beyond_one")
    row["validation_top1"] = run.summary.get("final_validation_accuracy")
    row["wall_time_s"] = sum(s.get("wall_time_s", 0.0) for s in run.summary["steps"])
    return row


def _fmt(stats: dict | None, spec: str, scale: float = 1.0) -> str:
    if stats is None:
        return "—"
    mean, spread = scale * stats["mean"], scale * stats["sd"]
    return f"{mean:{spec}} ± {spread:{spec}}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _plain(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _table(names: Sequence[str], finals: Sequence[StudyRun], rows: dict) -> list[str]:
    lines = [
        "| run | schedule | optimizer | lr (chosen) | step-1 decay | FF ratio | C2I (run start) | "
        "C2I (last step start) | top-1 % (test) | paper FF | paper C2I | paper top-1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        run = next(r for r in finals if r.name == name)
        row, paper = rows[name], run.paper
        lines.append(
            f"| {name} | {run.config.schedule} | {run.config.optimizer} | "
            f"{run.config.learning_rate:g} | {run.config.weight_decay:g} | "
            f"{_fmt(row.get('ff'), '.2e')} | {_fmt(row.get('c2i_run'), '.4f')} | "
            f"{_fmt(row.get('c2i_step'), '.4f')} | {_fmt(row.get('top1'), '.2f', 100)} | "
            f"{_plain(paper.get('ff'), '.2e')} | {_plain(paper.get('c2i'), '.4f')} | "
            f"{_plain(paper.get('top1'), '.2f')} |"
        )
    return lines


def _study_markdown(title: str, command: str, study: Study, sections: list, seconds: float) -> str:
    lines = [
        f"# {title}",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.date.today().isoformat()}; machine: {platform.machine()} "
        f"({cpu_model_name()}), {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Wall time of this invocation: {seconds / 60:.1f} min (runs finished by an earlier "
        "invocation are read back, not retrained)",
        "",
        "How it was run: each arm (optimizer × schedule) got its own learning rate, the best "
        f"final-model top-1 on a validation split (the last {study.validation_size} training "
        "images, never trained on) among the arm's sweep; the sweep runs never read the test "
        f"split. The final runs then trained with seeds {study.seeds}, still choosing their "
        "checkpoints on the validation split, and report the test split. Numbers are mean ± "
        "sample standard deviation over the seeds; a finding counts as reproduced only when "
        "every difference it rests on exceeds the sum of the two standard deviations.",
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
        finals = [run for run in study.finals if run.dataset == dataset]
        config = finals[0].config
        lines += [
            f"Budget per run: {config.train_limit or 'all'} training images, batch "
            f"{config.batch_size}, {config.model} width {config.width_multiplier}, "
            f"lr_schedule {config.lr_schedule} (warm-up {config.warmup_epochs:g} epochs), "
            f"distillation from the small teacher: {config.distillation}; test top-1 on "
            f"{config.eval_limit or 'all'} test images. Training time of all runs: "
            f"{section['training_minutes']:.1f} min.",
            "",
            "### Learning-rate sweep (validation split, seed "
            f"{study.seeds[0]})",
            "",
            "| arm | sweep run | learning rate | validation top-1 % | chosen |",
            "|---|---|---|---|---|",
        ]
        for sweep in section["sweep"]:
            lines.append(
                f"| {sweep['arm']} | {sweep['base']} | {sweep['learning_rate']:g} | "
                f"{'diverged' if sweep['diverged'] else _percent(sweep['validation_top1'])} | "
                f"{'**yes**' if sweep['chosen'] else ''} |"
            )
        names = list(dict.fromkeys(run.name for run in finals))
        lines += ["", "### Final runs", ""] + _table(names, finals, section["rows"])
        if section["below_chance_margin"]:
            lines += ["", "Runs that did not clear chance by a wide margin (mean test top-1 < "
                      f"50 %): {', '.join(section['below_chance_margin'])}."]  # fmt: skip
        lines += ["", "### The paper's findings here", "", "| finding | verdict | measured |",
                  "|---|---|---|"]  # fmt: skip
        for finding in section["findings"]:
            lines.append(f"| {finding['claim']} | {finding['verdict']} | {finding['measured']} |")
        lines += [
            "",
            f"Plots and the per-step table (saturation, SDAM, weights beyond ±1, dead weights) "
            f"of the seed-{study.seeds[0]} final runs: "
            f"[{dataset}/report/report.md]({dataset}/report/report.md).",
        ]
    return "\n".join(lines) + "\n"


def _train_run(
    run: StudyRun, run_dir: Path, number: int, total: int, verbose: int, in_process: bool = False
) -> None:
    """Train one run of the study: here, or in a new process logging to ``run_dir/train.log``.

    A sweep run whose loss diverges is a result (that learning rate is too large): it leaves
    ``diverged.txt`` with the reason instead of stopping the study. Any other failure does.
    """
    where = f"[study] {run.dataset} {run.kind} {number}/{total}: {run.directory}"
    if (run_dir / DIVERGED_FILE).is_file():
        sys.stdout.write(f"{where}: diverged in an earlier invocation (skipped)\n")
        return

    def diverged(reason: str) -> None:
        atomic_write_text(run_dir / DIVERGED_FILE, reason + "\n")
        sys.stdout.write(f"{where}: diverged ({reason.strip().splitlines()[-1]})\n")
        sys.stdout.flush()

    # One write per line: runs of `--jobs N` report from threads at the same time.
    sys.stdout.write(
        f"{where} ({run.config.schedule}, {run.config.optimizer} lr "
        f"{run.config.learning_rate:g}, decay {run.config.weight_decay:g}) in {run_dir}\n"
    )
    sys.stdout.flush()
    if in_process:
        try:
            train(run.config, run_dir, recipe=run.name, verbose=verbose)
        except TrainingDiverged as error:
            if run.kind != "sweep":
                raise
            diverged(str(error))
        return
    # Made (and marked) here: the log is written into it before the run's process claims it.
    claim_dir(run_dir, kind="train", adopt=earlier_run)
    log_path = run_dir / TRAIN_LOG
    with open(log_path, "a") as log:
        done = subprocess.run(
            [sys.executable, "-m", "adambnn_larq.study", "--train-run", run.config.to_json(),
             str(run_dir), run.name, str(verbose)],
            stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = log_path.read_text()[-2000:]
        if run.kind == "sweep" and "TrainingDiverged" in tail:
            diverged(tail[tail.rindex("TrainingDiverged"):])
            return
        raise StudyError(f"{where} failed (exit {done.returncode}); end of {log_path}:\n{tail}")
    sys.stdout.write(f"{where}: finished\n")
    sys.stdout.flush()


def _train_all(runs: Sequence[StudyRun], folder: Path, verbose: int, jobs: int) -> None:
    """Train ``runs`` (resumable). The first run of each seed trains (and caches) that seed's
    teacher alone; the others may then run ``jobs`` at a time in separate processes."""
    seen_seeds: set[int] = set()
    first, rest = [], []
    for run in runs:
        (rest if run.config.seed in seen_seeds else first).append(run)
        seen_seeds.add(run.config.seed)
    numbered = {id(run): n for n, run in enumerate(runs, start=1)}
    for run in first:
        _train_run(run, folder / run.directory, numbered[id(run)], len(runs), verbose, True)
    if jobs <= 1:
        for run in rest:
            _train_run(run, folder / run.directory, numbered[id(run)], len(runs), verbose, True)
        return
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(_train_run, run, folder / run.directory, numbered[id(run)], len(runs),
                        verbose)  # fmt: skip
            for run in rest
        ]
        for future in futures:
            future.result()


def choose_learning_rates(sweep_rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The learning rate of each arm: the best final-model validation top-1 of its sweep
    (the smaller rate on a tie). Reads nothing but the sweep's validation numbers."""
    best: dict[str, tuple[float, float]] = {}
    for row in sweep_rows:
        if row.get("diverged"):
            continue
        score = row["validation_top1"]
        if score is None:
            raise StudyError(f"sweep run {row['run']} has no validation accuracy")
        key = (score, -row["learning_rate"])
        if row["arm"] not in best or key > best[row["arm"]]:
            best[row["arm"]] = key
    every = list(dict.fromkeys(row["arm"] for row in sweep_rows))
    lost = [arm for arm in every if arm not in best]
    if lost:
        raise StudyError(f"every learning rate of arm(s) {', '.join(lost)} diverged")
    return {arm: -key[1] for arm in every for key in [best[arm]]}


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
    """Sweep each arm's learning rate, train the final runs with every seed, write the report.

    Layout: ``OUTPUT/<dataset>/runs/`` (each sweep point ``sweep-<arm>-lr<lr>`` and each final
    run ``<run>-seed<s>`` an `adambnn train` run directory, and the shared ``teachers/``),
    ``OUTPUT/<dataset>/report/`` (plots and per-step table of the first seed's final runs),
    ``OUTPUT/study.md`` and ``OUTPUT/study.json``.

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
        jobs: runs trained at the same time (in separate processes) once their seed's teacher
            exists. The small networks of the study do not keep two cores busy, so 2 is
            faster on a 2-core machine.

    Returns:
        The content of ``study.json``.
    """
    started = time.perf_counter()
    study = load_study(name, smoke=smoke, datasets=datasets, runs=runs, overrides=overrides)
    output = Path(output_dir)
    claim_dir(output, kind="study", adopt=_earlier_study, what="--output")
    with dir_lock(output, what="study directory"):
        return _run_study_in(
            output, study, name=name, smoke=smoke, verbose=verbose, command=command, jobs=jobs,
            started=started,
        )  # fmt: skip


def _earlier_study(output: Path) -> str | None:
    """Why ``output`` (no marker) is a study directory an earlier version wrote, or None."""
    names = {p.name for p in output.iterdir() if not p.name.startswith(".tmp-")}
    if names - {STUDY_FILE, STUDY_JSON, *DATASET_NAMES}:
        return None
    for dataset in names & set(DATASET_NAMES):
        if not (output / dataset).is_dir() or {
            p.name for p in (output / dataset).iterdir()
        } - {"runs", REPORT_DIR}:
            return None
    return f"a study directory of an earlier adambnn-larq ({', '.join(sorted(names))})"


def _run_study_in(
    output: Path,
    study: Study,
    *,
    name: str,
    smoke: bool,
    verbose: int,
    command: str | None,
    jobs: int,
    started: float,
) -> dict[str, Any]:
    sections = []
    tuned_finals = []  # the final runs with their arm's chosen rate (as given when skipped)
    for dataset in study.datasets:
        sweeps = [run for run in study.sweeps if run.dataset == dataset]
        finals = [run for run in study.finals if run.dataset == dataset]
        try:
            data.prepare(dataset, data_dir=finals[0].config.data_dir, download=False)
        except data.DataNotFoundError as error:
            print(f"[study] {dataset}: skipped, its data is not available ({error})", flush=True)
            sections.append({"dataset": dataset, "skipped": f"the data is not available: {error}"})
            tuned_finals += finals
            continue
        folder = output / dataset / "runs"
        _train_all(sweeps, folder, verbose, jobs)
        sweep_rows = []
        for run in sweeps:
            if (folder / run.directory / DIVERGED_FILE).is_file():
                row = {"validation_top1": None, "wall_time_s": 0.0, "diverged": True}
            else:
                row = _measured_row(folder / run.directory, run.directory)
            sweep_rows.append({"run": run.directory, "arm": run.arm, "base": run.base,
                               "learning_rate": run.config.learning_rate,
                               "validation_top1": row["validation_top1"],
                               "diverged": row.get("diverged", False),
                               "wall_time_s": row["wall_time_s"]})  # fmt: skip
        rates = choose_learning_rates(sweep_rows)
        for row in sweep_rows:
            row["chosen"] = rates[row["arm"]] == row["learning_rate"]
        print("[study] chosen learning rates: " + ", ".join(
            f"{arm} {rate:g}" for arm, rate in rates.items()), flush=True)  # fmt: skip
        finals = [
            dataclasses.replace(run, config=dataclasses.replace(
                run.config, learning_rate=rates[run.arm]))  # fmt: skip
            for run in finals
        ]
        tuned_finals += finals
        _train_all(finals, folder, verbose, jobs)
        first_seed = [run for run in finals if run.config.seed == study.seeds[0]]
        analyze([folder / r.directory for r in first_seed], output / dataset / REPORT_DIR,
                labels=[r.name for r in first_seed])  # fmt: skip
        measured = {run.directory: _measured_row(folder / run.directory, run.name)
                    for run in finals}  # fmt: skip
        rows = {}
        for run_name in dict.fromkeys(run.name for run in finals):
            per_seed = [measured[r.directory] for r in finals if r.name == run_name]
            rows[run_name] = {key: seed_statistics([m.get(key) for m in per_seed])
                              for key in METRICS}  # fmt: skip
        below = [n for n, row in rows.items() if row["top1"] and row["top1"]["mean"] < 0.5]
        minutes = sum(m["wall_time_s"] for m in measured.values())
        minutes = (minutes + sum(r["wall_time_s"] for r in sweep_rows)) / 60
        sections.append({"dataset": dataset, "sweep": sweep_rows, "learning_rates": rates,
                         "rows": rows, "findings": findings(rows), "below_chance_margin": below,
                         "training_minutes": minutes})  # fmt: skip
    study = dataclasses.replace(study, finals=tuned_finals)
    seconds = time.perf_counter() - started
    command = command or f"adambnn study {name}" + (" --smoke" if smoke else "")
    title = "The paper study" + (" (smoke)" if smoke else "")
    markdown = _study_markdown(title, command, study, sections, seconds)
    atomic_write_text(output / STUDY_FILE, markdown)
    result = {
        "study": name,
        "smoke": smoke,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": {"arch": platform.machine(), "cpu": cpu_model_name(), "cpus": os.cpu_count()},
        "seconds_this_invocation": seconds,
        "validation_size": study.validation_size,
        "seeds": study.seeds,
        "runs": {f"{r.dataset}/{r.directory}": {"paper": r.paper, "arm": r.arm}
                 for r in study.finals},  # fmt: skip
        "datasets": sections,
    }
    atomic_write_text(output / STUDY_JSON, json.dumps(result, indent=2, default=str))
    return result


def _train_run_main(argv: Sequence[str]) -> int:
    """``python -m adambnn_larq.study --train-run CONFIG_JSON RUN_DIR NAME VERBOSE``."""
    logs.configure(verbose=not logs.quiet())  # as the `adambnn study` that started it
    config_json, run_dir, name, verbose = argv
    config = resolve_config(json.loads(config_json), where=f"study run {name}")
    train(config, run_dir, recipe=name, verbose=int(verbose))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--train-run"] or len(sys.argv) != 6:
        sys.exit("internal entry point of `adambnn study --jobs N`; use `adambnn study`")
    sys.exit(_train_run_main(sys.argv[2:]))
