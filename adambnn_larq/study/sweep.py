"""The learning-rate sweep: each arm's rate chosen on the validation split, its grid
extended until the best rate lies inside."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from adambnn_larq.errors import StudyError
from adambnn_larq.study.plan import MAX_EXTENSIONS, StudyRun, _lr_name


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
