"""Running a study: training its runs (resumable, ``--jobs`` at a time), measuring them and
writing ``study.md`` and ``study.json``."""

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

from adambnn_larq import data
from adambnn_larq.analysis import load_signs
from adambnn_larq.config import DATASET_NAMES
from adambnn_larq.errors import StudyError, TrainingDiverged
from adambnn_larq.hostinfo import cpu_model_name
from adambnn_larq.reports import analyze, run_summary, step_summary
from adambnn_larq.rundir import (
    ANALYSIS_DIR,
    DIVERGED_FILE,
    INITIAL_SIGNS_FILE,
    REPORT_DIR,
    STUDY_FILE,
    STUDY_JSON,
    TRAIN_LOG,
    atomic_write_text,
    claim_dir,
    dir_lock,
    load_run,
)
from adambnn_larq.study.plan import Study, StudyRun, load_study
from adambnn_larq.study.report import _study_markdown
from adambnn_larq.study.sweep import sweep_learning_rates
from adambnn_larq.study.verdicts import METRICS, findings, seed_statistics
from adambnn_larq.training import earlier_run, teacher_identity, train


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


def _seed_matched(folder: Path, finals: Sequence[StudyRun]) -> tuple[bool, str]:
    """Whether the final runs of each seed start from the same weights (the premise of the
    paired tests), read from the initial signs each run saved; and a sentence saying so."""
    first: dict[int, tuple[str, dict[str, np.ndarray]]] = {}
    for run in finals:
        path = folder / run.directory / "step1" / ANALYSIS_DIR / INITIAL_SIGNS_FILE
        try:
            signs = load_signs(path)
        except (FileNotFoundError, ValueError) as error:
            return False, f"Not seed-matched ({error}): Welch's t-tests."
        seed = run.config.seed
        if seed not in first:
            first[seed] = (run.directory, signs)
            continue
        other, reference = first[seed]
        if signs.keys() != reference.keys() or any(
            not np.array_equal(signs[k], reference[k]) for k in signs
        ):
            return False, (f"Not seed-matched: {run.directory} starts from other weights than "
                           f"{other}; Welch's t-tests.")  # fmt: skip
    return True, (f"Seed-matched: the final runs of each seed start from the same weights "
                  f"(identical initial signs of all {len(finals)} runs, checked); paired "
                  "t-tests.")  # fmt: skip


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
            diverged(tail[tail.rindex("TrainingDiverged") :])
            return
        raise StudyError(f"{where} failed (exit {done.returncode}); end of {log_path}:\n{tail}")
    sys.stdout.write(f"{where}: finished\n")
    sys.stdout.flush()


def _train_all(
    runs: Sequence[StudyRun],
    folder: Path,
    verbose: int,
    jobs: int,
    teachers: set[tuple] | None = None,
) -> None:
    """Train ``runs`` (resumable). The first run of each teacher (`teacher_identity`: the
    seed, the data and the evaluation split) trains and caches it alone; the others may then
    run ``jobs`` at a time in separate processes.

    ``teachers``: the identities of the teachers an earlier call of this invocation has cached
    (their runs need not wait for a first one; a sweep's extension rounds would otherwise
    train one run alone each round); updated with those of ``runs``.
    """
    seen: set[tuple] = set(teachers or ())
    first, rest = [], []
    for run in runs:
        identity = teacher_identity(run.config)
        (rest if identity in seen else first).append(run)
        seen.add(identity)
    if teachers is not None:
        teachers.update(seen)
    numbered = {id(run): n for n, run in enumerate(runs, start=1)}
    for run in first:
        _train_run(run, folder / run.directory, numbered[id(run)], len(runs), verbose, True)
    if jobs <= 1:
        for run in rest:
            _train_run(run, folder / run.directory, numbered[id(run)], len(runs), verbose, True)
        return
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(
                _train_run, run, folder / run.directory, numbered[id(run)], len(runs), verbose
            )  # fmt: skip
            for run in rest
        ]
        for future in futures:
            future.result()


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
        folder = output / dataset
        if not folder.is_dir() or {p.name for p in folder.iterdir()} - {"runs", REPORT_DIR}:
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
        section, finals = _run_dataset(output, study, dataset, verbose, jobs)
        sections.append(section)
        tuned_finals += finals
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
        "runs": {
            f"{r.dataset}/{r.directory}": {"paper": r.paper, "arm": r.arm} for r in study.finals
        },  # fmt: skip
        "datasets": sections,
    }
    atomic_write_text(output / STUDY_JSON, json.dumps(result, indent=2, default=str))
    return result


def _run_dataset(
    output: Path, study: Study, dataset: str, verbose: int, jobs: int
) -> tuple[dict[str, Any], list[StudyRun]]:
    """Sweep, train and measure the runs of one dataset.

    Returns its section of the report and its final runs with their arm's chosen learning
    rate (as given when its data is not available: then the section says it was skipped).
    """
    sweeps = [run for run in study.sweeps if run.dataset == dataset]
    finals = [run for run in study.finals if run.dataset == dataset]
    try:
        data.prepare(dataset, data_dir=finals[0].config.data_dir, download=False)
    except data.DataNotFoundError as error:
        print(f"[study] {dataset}: skipped, its data is not available ({error})", flush=True)
        return {"dataset": dataset, "skipped": f"the data is not available: {error}"}, finals
    folder = output / dataset / "runs"
    teachers: set[tuple] = set()  # the teachers this invocation has cached

    def measure_sweep(run: StudyRun) -> dict[str, Any]:
        if (folder / run.directory / DIVERGED_FILE).is_file():
            return {"validation_top1": None, "wall_time_s": 0.0, "diverged": True}
        return _measured_row(folder / run.directory, run.directory)

    sweeps, sweep_rows, rates, brackets = sweep_learning_rates(
        sweeps,
        lambda runs: _train_all(runs, folder, verbose, jobs, teachers),
        measure_sweep,
        study.max_extensions,
    )
    print("[study] chosen learning rates: " + ", ".join(
        f"{arm} {rate:g} ({brackets[arm]['note']})" for arm, rate in rates.items()),
        flush=True)  # fmt: skip
    finals = [
        dataclasses.replace(
            run, config=dataclasses.replace(run.config, learning_rate=rates[run.arm])
        )  # fmt: skip
        for run in finals
    ]
    _train_all(finals, folder, verbose, jobs, teachers)
    first_seed = [run for run in finals if run.config.seed == study.seeds[0]]
    analyze([folder / r.directory for r in first_seed], output / dataset / REPORT_DIR,
            labels=[r.name for r in first_seed])  # fmt: skip
    measured, rows = _measure_finals(folder, finals)
    matched, pairing = _seed_matched(folder, finals)
    print(f"[study] {pairing}", flush=True)
    below = [n for n, row in rows.items() if row["top1"] and row["top1"]["mean"] < 0.5]
    minutes = sum(m["wall_time_s"] for m in measured.values())
    minutes = (minutes + sum(r["wall_time_s"] for r in sweep_rows)) / 60
    section = {"dataset": dataset, "sweep": sweep_rows, "learning_rates": rates,
               "brackets": brackets, "max_extensions": study.max_extensions,
               "rows": rows, "seed_matched": matched, "pairing": pairing,
               "findings": findings(rows, paired=matched), "below_chance_margin": below,
               "training_minutes": minutes}  # fmt: skip
    return section, finals


def _measure_finals(
    folder: Path, finals: Sequence[StudyRun]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each final run's numbers (by run directory), and each study run's `seed_statistics`
    of every metric over its seeds (by run name)."""
    measured = {run.directory: _measured_row(folder / run.directory, run.name)
                for run in finals}  # fmt: skip
    rows = {}
    for run_name in dict.fromkeys(run.name for run in finals):
        per_seed = [measured[r.directory] for r in finals if r.name == run_name]
        seeds = [r.config.seed for r in finals if r.name == run_name]
        rows[run_name] = {key: seed_statistics([m.get(key) for m in per_seed], seeds)
                          for key in METRICS}  # fmt: skip
    return measured, rows
