"""A study file read and checked: every run of the study with its resolved configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from adambnn_larq.config import TrainConfig, load_recipe, resolve_config
from adambnn_larq.errors import ConfigError, StudyError


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


#: A run's values and where they come from (for messages) -> its configuration.
_Resolve = Callable[[dict, str], TrainConfig]


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
    validation_size, seeds, max_extensions = _selection(study, where)
    paper = study.get("paper", {})
    if datasets is not None:
        unknown = sorted(set(datasets) - set(study_datasets))
        if unknown:
            raise StudyError(
                f"{where} has no dataset(s) {', '.join(unknown)}; it has "
                f"{', '.join(study_datasets)}"
            )
    names = _run_names(study_runs, runs, where)
    by_name = dict(zip(names, study_runs))
    _check_arms(study_runs, arms, by_name, where)

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
        resolve = _resolver(recipe, overrides)
        for arm in wanted_arms:
            sweeps += _sweep_runs(resolve, budget, by_name[arms[arm]["sweep_run"]], arm,
                                  arms[arm]["learning_rates"], seeds[0], where)  # fmt: skip
        for run in chosen:
            run_where = f"{where}: runs[{names.index(run['name'])}] ({run['name']}) on {dataset}"
            finals += _final_runs(resolve, budget, run, seeds, paper, run_where)
    return Study(sweeps, finals, validation_size, list(seeds), max_extensions)


def _selection(study: dict, where: str) -> tuple[int, list, int]:
    """The study's ``selection``: the validation size, the seeds, the sweeps' extension cap."""
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
    return validation_size, seeds, max_extensions


def _run_names(study_runs: list, runs: Sequence[str] | None, where: str) -> list[str]:
    """The names of the study's runs, unique, and every name of ``runs`` among them."""
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
    return names


def _check_arms(study_runs: list, arms: dict, by_name: dict[str, Any], where: str) -> None:
    """Each run names an arm; each arm sweeps one of its own runs over a grid of rates."""
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


def _resolver(recipe: dict, overrides: Sequence[str]) -> _Resolve:
    """Resolves a run's values over a dataset's base recipe, the command line's overrides last."""

    def resolve(values: dict, run_where: str) -> TrainConfig:
        try:
            return resolve_config({**recipe, **values}, list(overrides), where=run_where)
        except ConfigError as error:
            raise ConfigError(f"{run_where}: {error}") from error

    return resolve


def _sweep_runs(
    resolve: _Resolve,
    budget: dict,
    base: dict,
    arm: str,
    learning_rates: list[float],
    seed: int,
    where: str,
) -> list[StudyRun]:
    """One arm's sweep on one dataset: its ``sweep_run`` at each rate of its grid, one seed."""
    sweeps = []
    dataset = budget["dataset"]
    for rate in learning_rates:
        run_name = f"sweep-{arm}-lr{_lr_name(rate)}"
        values = {**budget, **base.get("overrides", {}), "learning_rate": rate,
                  "seed": seed, "evaluate_test": False}  # fmt: skip
        config = resolve(values, f"{where}: {run_name} on {dataset}")
        sweeps.append(StudyRun(dataset, run_name, config, {}, arm, "sweep", base=base["name"]))
    return sweeps


def _final_runs(
    resolve: _Resolve,
    budget: dict,
    run: dict,
    seeds: list[int],
    paper: dict,
    run_where: str,
) -> list[StudyRun]:
    """One final run of the study on one dataset, with each seed."""
    row = run.get("paper")
    if row is not None and row not in paper:
        raise StudyError(f"{run_where}: paper row {row!r} is not in the study's 'paper'")
    finals = []
    for seed in seeds:
        values = {**budget, **run.get("overrides", {}), "seed": seed}
        config = resolve(values, run_where)
        finals.append(StudyRun(budget["dataset"], run["name"], config, paper.get(row, {}),
                               run["arm"], "final"))  # fmt: skip
    return finals
