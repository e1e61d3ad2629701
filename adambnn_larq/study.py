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
and, for each of the paper's findings, whether it reproduces here: paired t-tests over the
seeds, Holm-corrected within a finding (`findings`). Each arm's learning rate is chosen on a
validation split by a sweep that extends its grid until the best lies inside
(`sweep_learning_rates`).

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq import data, logs
from adambnn_larq.analysis import load_signs
from adambnn_larq.config import DATASET_NAMES, TrainConfig, load_recipe, resolve_config
from adambnn_larq.errors import ConfigError, StudyError, TrainingDiverged
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
from adambnn_larq.stats import TestResult, holm, paired_t, welch_t
from adambnn_larq.training import earlier_run, teacher_identity, train


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


#: How many points a sweep may add on each side of an arm's grid while its best rate is at
#: that edge (a study file's ``selection.max_extensions`` overrides it).
MAX_EXTENSIONS = 2


@dataclasses.dataclass(frozen=True)
class Study:
    """A resolved study: the sweep runs, and the final runs whose learning rate comes from the
    sweep (`with_learning_rates`)."""

    sweeps: list[StudyRun]
    finals: list[StudyRun]
    validation_size: int
    seeds: list[int]
    max_extensions: int = MAX_EXTENSIONS

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
    max_extensions = selection.get("max_extensions", MAX_EXTENSIONS)
    if not isinstance(max_extensions, int) or max_extensions < 0:
        raise StudyError(f"{where}: selection.max_extensions must be an integer >= 0")
    if validation_size < 1 or not seeds or not all(isinstance(s, int) for s in seeds):
        raise StudyError(f"{where}: selection needs validation_size >= 1 and integer seeds")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{where}: selection.seeds {seeds} repeats a seed")
    if len(seeds) < 2:
        raise StudyError(
            f"{where}: selection.seeds is {seeds}: each finding is a t-test over the seeds, "
            "which needs at least 2 different seeds (3 or more for useful power)"
        )
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
        if len(rates) < 2 or not all(isinstance(r, float) and r > 0 for r in rates):
            # Two at the least: the spacing of the grid is the step of its extension.
            raise StudyError(f"{where}: arms.{arm}: learning_rates must be 2 or more positive "
                             "floats")  # fmt: skip
        if len(set(rates)) != len(rates):
            raise StudyError(f"{where}: arms.{arm}: learning_rates repeats a rate")

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
    return Study(sweeps, finals, validation_size, list(seeds), max_extensions)


# --------------------------------------------------------------------------------------
# Statistics over seeds, and the findings: each a claim of the paper and a test on them
# --------------------------------------------------------------------------------------

METRICS = ("ff", "c2i_run", "c2i_step", "top1", "saturation_drop", "beyond_one")

#: The significance level of every comparison, after Holm's correction within a finding.
ALPHA = 0.05

# C2I is the share of latent weights that keep their initial sign: higher = more dependence
# on the initialization. Table 1 has two-step higher than one-step at the same step-1 decay,
# although the paper's text says two-step depends less on the initialization; the claim is
# tested as the numbers state it, from each of the two starts a two-step run has.
TWO_STEP_C2I_CLAIM = (
    "Two-step has a higher C2I (keeps more initial signs) than one-step at the same step-1 "
    "decay (Table 1: 0.6315 vs 0.4810 at 1e-5, 0.6636 vs 0.4960 at 5e-6)"
)
TWO_STEP_C2I_SHOWN = "C2I two-step {0} vs one-step {1} (1e-5); {2} vs {3} (5e-6)"
C2I_START_NOTE = (
    "Which start Table 1 measures two-step's C2I from is not stated; its numbers point to the "
    "start of step 2: from the run's start, a step 1 with the same decay would be expected to "
    "forget the initialization about as much as the one-step run does (0.48-0.50 kept), not to "
    "keep 0.63-0.66, while step 2 starts from the step-1 weights and trains without decay. The "
    "verdict from step 2's start is the one that tests Table 1's numbers."
)


def seed_statistics(
    values: Sequence[float | None], seeds: Sequence[int] | None = None
) -> dict[str, Any] | None:
    """Mean, sample standard deviation (0 for one seed), the values and the seeds they belong
    to (the pairing of a paired test); None if any value is missing."""
    if not values or any(v is None for v in values):
        return None
    if seeds is not None and len(seeds) != len(values):
        raise ValueError(f"{len(values)} values but {len(seeds)} seeds")
    array = np.asarray(values, dtype=np.float64)
    spread = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "sd": spread, "values": [float(v) for v in array],
            "seeds": None if seeds is None else [int(s) for s in seeds]}  # fmt: skip


def compare(a: dict[str, Any], b: dict[str, Any], *, paired: bool = True) -> TestResult:
    """The two-sided test of mean(a) - mean(b) for two `seed_statistics`.

    Paired (a t-test on the per-seed differences) when ``paired`` and both were measured on
    the same seeds: runs of one seed share the initialization, the data order and the teacher,
    so the differences cancel what the seed does to both. Welch's t-test otherwise.

    Raises:
        StudyError: fewer than two seeds on either side.
    """
    same_seeds = a.get("seeds") is not None and a.get("seeds") == b.get("seeds")
    try:
        if paired and same_seeds:
            return paired_t(a["values"], b["values"], alpha=ALPHA)
        return welch_t(a["values"], b["values"], alpha=ALPHA)
    except ValueError as error:
        raise StudyError(str(error)) from error


def finding_verdict(results: Sequence[TestResult]) -> dict[str, Any]:
    """The verdict of a finding from its comparisons, each effect oriented so that > 0 is the
    paper's direction.

    The p-values are Holm-corrected within the finding (the chance that any of its
    comparisons is a false positive stays below `ALPHA`). Each comparison then counts "for"
    (significant, paper's direction), "against" (significant, the other way) or neither, and
    the finding reads "reproduced" (all for), "the opposite" (all against), "partly (k of n
    comparisons)" (some for, none against), "partly the opposite" (some against, none for),
    "mixed" (some each way) or "not distinguishable" (none significant).
    """
    if not results:
        raise ValueError("a finding needs at least one comparison")
    adjusted = holm([r.p for r in results])
    outcomes = [
        ("for" if r.effect > 0 else "against") if p < ALPHA else "neither"
        for r, p in zip(results, adjusted)
    ]
    n, k, m = len(results), outcomes.count("for"), outcomes.count("against")
    if k == n:
        status, verdict, reproduced = "reproduced", "reproduced", True
    elif m == n:
        status, verdict, reproduced = "opposite", "the opposite", False
    elif k and m:
        status, verdict, reproduced = "mixed", f"mixed: {k} for, {m} against (of {n})", None
    elif k:
        status, verdict, reproduced = "partly", f"partly ({k} of {n} comparisons)", None
    elif m:
        status, verdict = "partly opposite", f"partly the opposite ({m} of {n} comparisons)"
        reproduced = False
    else:
        status, verdict, reproduced = "not distinguishable", "not distinguishable", None
    return {"status": status, "verdict": verdict, "reproduced": reproduced,
            "p_holm": adjusted, "outcomes": outcomes}  # fmt: skip


def findings(rows: dict[str, dict[str, Any]], *, paired: bool = True) -> list[dict[str, Any]]:
    """Which of the paper's findings the measured ``rows`` reproduce.

    ``rows`` maps run names to metric -> `seed_statistics`. Each finding rests on one or more
    comparisons "x > y" in the paper's direction; each is tested by `compare` (paired on the
    seeds when ``paired``: the study's runs of one seed start from the same weights), and
    `finding_verdict` turns the Holm-corrected tests into words. A finding whose runs are
    missing is not testable.
    """

    def stat(run: str, key: str) -> dict | None:
        return (rows.get(run) or {}).get(key)

    def check(claim: str, needed: list[tuple[str, str]], pairs, shown: str) -> dict[str, Any]:
        stats = [stat(run, key) for run, key in needed]
        if any(s is None for s in stats):
            return {"claim": claim, "status": "not testable", "reproduced": None,
                    "verdict": "not testable", "measured": "not measured",
                    "comparisons": []}  # fmt: skip
        formats = _formats(needed)
        try:
            results = [compare(stats[i], stats[j], paired=paired) for i, j in pairs]
        except StudyError as error:
            raise StudyError(f"finding {claim!r}: {error}") from error
        verdict = finding_verdict(results)
        comparisons = [
            {"a": "{} {}".format(*needed[i]), "b": "{} {}".format(*needed[j]),
             **result.to_dict(), "p_holm": p, "outcome": outcome, "format": formats[i]}
            for (i, j), result, p, outcome in zip(
                pairs, results, verdict.pop("p_holm"), verdict.pop("outcomes"))
        ]  # fmt: skip
        measured = shown.format(*(f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}"
                                  for s, fmt in zip(stats, formats)))  # fmt: skip
        return {"claim": claim, **verdict, "measured": measured, "alpha": ALPHA,
                "correction": "Holm", "comparisons": comparisons}  # fmt: skip

    sweep = ["adam-1step-wd-1e-05", "adam-1step-wd0", "adam-1step-wd5e-06", "adam-1step-wd1e-05"]

    def two_step_c2i(two_step_key: str) -> list[tuple[str, str]]:
        # One-step runs have one start: their c2i_run is their c2i_step.
        return [("adam-2step-wd1e-05", two_step_key), ("adam-1step-wd1e-05", "c2i_run"),
                ("adam-2step-wd5e-06", two_step_key), ("adam-1step-wd5e-06", "c2i_run")]
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
        check(f"{TWO_STEP_C2I_CLAIM}; C2I of two-step from the run's start",
              two_step_c2i("c2i_run"), [(0, 1), (2, 3)], TWO_STEP_C2I_SHOWN),
        check(f"{TWO_STEP_C2I_CLAIM}; C2I of two-step from the start of step 2",
              two_step_c2i("c2i_step"), [(0, 1), (2, 3)], TWO_STEP_C2I_SHOWN),
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


def _effect(comparison: dict[str, Any]) -> str:
    fmt = comparison["format"]
    return (f"{comparison['a']} − {comparison['b']}: {comparison['effect']:+{fmt}} "
            f"[{comparison['ci_low']:+{fmt}}, {comparison['ci_high']:+{fmt}}], "
            f"p {comparison['p']:.3g} ({comparison['p_holm']:.3g}), "
            f"{comparison['test']}, n {comparison['n']}")  # fmt: skip


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
        "sample standard deviation over the seeds. Each comparison of a finding is a two-sided "
        "paired t-test on the per-seed differences (the runs of one seed share their "
        "initialization, data order and teacher) or, where the runs are not seed-matched, "
        f"Welch's t-test; the effect is the difference of the means in the paper's direction "
        f"(> 0: as the paper says) with its {100 * (1 - ALPHA):.0f} % confidence interval. "
        "The p-values of a finding's comparisons are Holm-corrected, and a comparison counts "
        f"when its corrected p < {ALPHA:g}: a finding is reproduced when all count in the "
        "paper's direction, the opposite when all count against it, partly (k of n) when "
        "some count for it and none against, mixed when some count each way.",
        "",
        "FF: mean over every training iteration (all steps). C2I: the share of latent weights "
        "whose sign at the end equals their sign at the start of the run and of the last step "
        f"(higher: more dependence on that start). {C2I_START_NOTE} Paper: binary ResNet-18 on "
        "ImageNet (Table 1 and the four-run comparison), for the direction of each effect.",
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
                f"| {sweep['arm']} | {sweep['base']} | {sweep['learning_rate']:g}"
                f"{' (extension)' if sweep.get('extension') else ''} | "
                f"{'diverged' if sweep['diverged'] else _percent(sweep['validation_top1'])} | "
                f"{'**yes**' if sweep['chosen'] else ''} |"
            )
        lines += ["", "Where an arm's best rate was the largest or smallest of its grid, the sweep "
                  "added a point beyond it (spaced like the grid) and trained it, at most "
                  f"{section['max_extensions']} times a side:", ""]  # fmt: skip
        for arm, bracket in section["brackets"].items():
            where = "inside the rates tried" if bracket["interior"] else "at an edge"
            lines.append(f"- {arm}: {bracket['note']}; chosen "
                         f"{section['learning_rates'][arm]:g}, {where}.")  # fmt: skip
        names = list(dict.fromkeys(run.name for run in finals))
        lines += ["", "### Final runs", ""] + _table(names, finals, section["rows"])
        if section["below_chance_margin"]:
            lines += ["", "Runs that did not clear chance by a wide margin (mean test top-1 < "
                      f"50 %): {', '.join(section['below_chance_margin'])}."]  # fmt: skip
        lines += ["", "### The paper's findings here", "", section["pairing"], "",
                  "| finding | verdict | measured (mean ± sd) | effect in the paper's direction "
                  f"[{100 * (1 - ALPHA):.0f} % CI], p (Holm), test, n |",
                  "|---|---|---|---|"]  # fmt: skip
        for finding in section["findings"]:
            effects = "; ".join(_effect(c) for c in finding["comparisons"]) or "—"
            lines.append(f"| {finding['claim']} | {finding['verdict']} | {finding['measured']} | "
                         f"{effects} |")  # fmt: skip
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


def _sweep_row(run: StudyRun, measured: dict[str, Any], extension: bool) -> dict[str, Any]:
    return {"run": run.directory, "arm": run.arm, "base": run.base,
            "learning_rate": run.config.learning_rate,
            "validation_top1": measured.get("validation_top1"),
            "diverged": measured.get("diverged", False),
            "wall_time_s": measured.get("wall_time_s", 0.0),
            "extension": extension}  # fmt: skip


def _extension_run(edge: StudyRun, rate: float) -> StudyRun:
    config = dataclasses.replace(edge.config, learning_rate=rate)
    return dataclasses.replace(edge, name=f"sweep-{edge.arm}-lr{_lr_name(rate)}", config=config)


def sweep_learning_rates(
    sweeps: Sequence[StudyRun],
    train: Callable[[Sequence[StudyRun]], None],
    measure: Callable[[StudyRun], dict[str, Any]],
    max_extensions: int = MAX_EXTENSIONS,
) -> tuple[list[StudyRun], list[dict[str, Any]], dict[str, float], dict[str, dict[str, Any]]]:
    """Train each arm's sweep until its chosen learning rate lies strictly inside the grid.

    After each round, an arm whose best rate (`choose_learning_rates`) is the grid's largest
    (smallest) gets one more point above (below) it, spaced like the grid's outer two points
    (×2 for a ×2 grid), and the round repeats, at most ``max_extensions`` times a side. A best
    at an edge says only that the optimum may lie beyond it, so a rate chosen there would
    handicap its arm in every comparison. The extension is a function of the sweep's results,
    so a resumed study finds the same points and reads their runs back.

    Arguments:
        sweeps: the sweep runs of one dataset (two rates an arm at the least).
        train: trains the runs given (resumable: finished runs are not retrained).
        measure: a trained run's ``validation_top1`` (and ``diverged``, ``wall_time_s``).
        max_extensions: the cap, per side of each arm's grid.

    Returns:
        Every sweep run (the grids and their extensions, by arm and rate), their rows (as
        `choose_learning_rates` reads them, plus ``extension`` and ``chosen``), the chosen
        rate of each arm, and per arm its bracketing: ``grid``, ``extended_up``,
        ``extended_down``, ``interior`` and a ``note`` in words.
    """
    runs = list(sweeps)
    initial = {run.directory for run in runs}
    arms = list(dict.fromkeys(run.arm for run in runs))
    extended: dict[str, dict[str, list[float]]] = {arm: {"up": [], "down": []} for arm in arms}
    pending = list(runs)
    while True:
        train(pending)
        rows = [_sweep_row(run, measure(run), run.directory not in initial) for run in runs]
        rates = choose_learning_rates(rows)
        pending = []
        for arm in arms:
            ordered = sorted((r for r in runs if r.arm == arm),
                             key=lambda r: r.config.learning_rate)  # fmt: skip
            grid = [r.config.learning_rate for r in ordered]
            for side, edge, inner in (("up", -1, -2), ("down", 0, 1)):
                if rates[arm] != grid[edge] or len(extended[arm][side]) >= max_extensions:
                    continue
                # Rounded: repeated products of binary floats would name runs 0.005000000001.
                rate = float(f"{grid[edge] * grid[edge] / grid[inner]:.12g}")
                extended[arm][side].append(rate)
                pending.append(_extension_run(ordered[edge], rate))
                print(f"[study] {arm}: the best rate {rates[arm]:g} is the "
                      f"{'largest' if side == 'up' else 'smallest'} of its grid; extending it "
                      f"{'upward' if side == 'up' else 'downward'} to {rate:g}",
                      flush=True)  # fmt: skip
        if not pending:
            break
        runs += pending
    runs.sort(key=lambda r: (arms.index(r.arm), r.config.learning_rate))
    rows.sort(key=lambda r: (arms.index(r["arm"]), r["learning_rate"]))
    brackets = {}
    for arm in arms:
        grid = sorted(r.config.learning_rate for r in sweeps if r.arm == arm)
        every = sorted(r["learning_rate"] for r in rows if r["arm"] == arm)
        interior = every[0] < rates[arm] < every[-1]
        notes = [f"grid extended {'upward' if side == 'up' else 'downward'}: "
                 + ", ".join(f"{rate:g}" for rate in extended[arm][side])
                 for side in ("up", "down") if extended[arm][side]]  # fmt: skip
        if not interior:
            edge = "largest" if rates[arm] == every[-1] else "smallest"
            notes.append(f"optimum at the edge after the cap: {rates[arm]:g} is the {edge} rate "
                         f"tried ({max_extensions} extension(s) a side at most)")  # fmt: skip
        brackets[arm] = {"grid": grid, "extended_up": extended[arm]["up"],
                         "extended_down": extended[arm]["down"], "interior": interior,
                         "note": "; ".join(notes) or "inside the grid"}  # fmt: skip
    for row in rows:
        row["chosen"] = rates[row["arm"]] == row["learning_rate"]
    return runs, rows, rates, brackets


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
        teachers: set[tuple] = set()  # the teachers this invocation has cached

        def measure_sweep(run: StudyRun, folder: Path = folder) -> dict[str, Any]:
            if (folder / run.directory / DIVERGED_FILE).is_file():
                return {"validation_top1": None, "wall_time_s": 0.0, "diverged": True}
            return _measured_row(folder / run.directory, run.directory)

        sweeps, sweep_rows, rates, brackets = sweep_learning_rates(
            sweeps,
            lambda runs, folder=folder, teachers=teachers: _train_all(
                runs, folder, verbose, jobs, teachers),  # fmt: skip
            measure_sweep,
            study.max_extensions,
        )
        print("[study] chosen learning rates: " + ", ".join(
            f"{arm} {rate:g} ({brackets[arm]['note']})" for arm, rate in rates.items()),
            flush=True)  # fmt: skip
        finals = [
            dataclasses.replace(run, config=dataclasses.replace(
                run.config, learning_rate=rates[run.arm]))  # fmt: skip
            for run in finals
        ]
        tuned_finals += finals
        _train_all(finals, folder, verbose, jobs, teachers)
        first_seed = [run for run in finals if run.config.seed == study.seeds[0]]
        analyze([folder / r.directory for r in first_seed], output / dataset / REPORT_DIR,
                labels=[r.name for r in first_seed])  # fmt: skip
        measured = {run.directory: _measured_row(folder / run.directory, run.name)
                    for run in finals}  # fmt: skip
        rows = {}
        for run_name in dict.fromkeys(run.name for run in finals):
            per_seed = [measured[r.directory] for r in finals if r.name == run_name]
            seeds = [r.config.seed for r in finals if r.name == run_name]
            rows[run_name] = {key: seed_statistics([m.get(key) for m in per_seed], seeds)
                              for key in METRICS}  # fmt: skip
        matched, pairing = _seed_matched(folder, finals)
        print(f"[study] {pairing}", flush=True)
        below = [n for n, row in rows.items() if row["top1"] and row["top1"]["mean"] < 0.5]
        minutes = sum(m["wall_time_s"] for m in measured.values())
        minutes = (minutes + sum(r["wall_time_s"] for r in sweep_rows)) / 60
        sections.append({"dataset": dataset, "sweep": sweep_rows, "learning_rates": rates,
                         "brackets": brackets, "max_extensions": study.max_extensions,
                         "rows": rows, "seed_matched": matched, "pairing": pairing,
                         "findings": findings(rows, paired=matched), "below_chance_margin": below,
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
