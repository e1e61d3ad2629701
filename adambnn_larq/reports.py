"""``adambnn analyze`` and ``adambnn toy`` as functions: the numbers and the markdown report
of the paper's metrics, over run directories (read with `adambnn_larq.rundir.load_run`).

`analyze` reads run directories written by the training commands (``summary.json`` and each
step's ``analysis/`` files from `adambnn_larq.callbacks`) and writes the plots
(`adambnn_larq.plots`) and ``report.md``; several runs are overlaid for comparison. `toy` runs
the paper's two-dimensional toy (`adambnn_larq.analysis.toy_experiment`) and plots both
trajectories over the loss surface. docs/analysis.md explains how to read every plot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq.errors import ReportError
from adambnn_larq.plots import PLOTS, plot_toy
from adambnn_larq.rundir import (
    REPORT_FILE,
    RunData,
    StepData,
    atomic_write_text,
    load_run,
)

# --------------------------------------------------------------------------------------
# Summary numbers
# --------------------------------------------------------------------------------------


def _record_at(records: list[dict], epoch: int) -> dict | None:
    return next((r for r in records if r["epoch"] == epoch), None)


def step_summary(step: StepData) -> dict[str, Any]:
    """The per-step numbers of the report (None where the data is missing)."""
    out: dict[str, Any] = {"name": step.name, "epochs": step.epochs}
    if step.ff is not None and len(step.ff["ff"]):
        ff = step.ff["ff"]
        first_epoch = ff[step.ff["epoch"] == 1]
        out.update(iterations=len(ff), ff_mean=float(ff.mean()))
        if len(first_epoch):
            out["ff_first_epoch"] = float(first_epoch.mean())
    if step.c2i:
        last = step.c2i[-1]
        out["c2i_step"] = last["step_start"]["global"]
        out["c2i_run"] = (last.get("run_start") or {}).get("global")
    if step.saturation:
        first_name = next(iter(step.saturation[0]["layers"]), None)
        after_first = _record_at(step.saturation, 1)
        last = step.saturation[-1]
        if first_name is not None and after_first is not None:
            out.update(
                saturation_layer=first_name,
                saturation_first=after_first["layers"][first_name],
                saturation_last=last["layers"][first_name],
            )
    if step.weights and step.layers:
        first_layer = step.layers[0]["name"]
        after_first = _record_at(step.weights, 1)
        if after_first is not None:
            stats = after_first["layers"][first_layer]
            out.update(sdam_layer=first_layer, sdam_epoch1=stats["sdam"])
            out["update_sdam_epoch1"] = stats.get("update_sdam")
        sizes = step.layer_sizes
        last = step.weights[-1]["layers"]
        total = sum(sizes[name] for name in last)
        out["beyond_one"] = sum(last[name]["beyond_one"] * sizes[name] for name in last) / total
    if step.gradients:
        out["dead"] = step.gradients[-1]["global"]["dead"]
        out["dead_threshold"] = step.gradients[-1]["threshold"]
    if "test_accuracy" in step.info:
        out["test_accuracy"] = step.info["test_accuracy"]
    return out


def run_summary(run: RunData) -> dict[str, Any]:
    """The Table-1 row of a run: schedule, weight decay, FF, C2I, top-1."""
    summary = run.summary
    ff = [s.ff["ff"] for s in run.steps if s.ff is not None and len(s.ff["ff"])]
    last = run.steps[-1]
    c2i_step = last.c2i[-1]["step_start"]["global"] if last.c2i else None
    if len(run.steps) == 1:
        c2i_run = c2i_step  # one step: its start is the run's start
    else:
        c2i_run = ((last.c2i[-1].get("run_start") or {}).get("global")) if last.c2i else None
    step_decays = [s.info.get("weight_decay") for s in run.steps]
    if all(d is not None for d in step_decays) and len(run.steps) > 1:
        decay = ", ".join(f"{s.name}: {_number(d)}" for s, d in zip(run.steps, step_decays))
    else:
        decay = _number(summary.get("weight_decay"))
    mode = summary.get("weight_decay_mode")
    return {
        "label": run.label,
        "schedule": summary.get("schedule", f"{len(run.steps)}-step"),
        "optimizer": summary.get("optimizer"),
        "weight_decay": decay + (f" ({mode})" if mode else ""),
        "ff": float(np.concatenate(ff).mean()) if ff else None,
        "c2i_run": c2i_run,
        "c2i_step": c2i_step,
        "top1": summary.get("final_test_accuracy"),
    }


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:.3g}"
    return str(value)


def _ratio(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _small(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3e}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def markdown_report(runs: Sequence[RunData], figures: Sequence[str]) -> str:
    """The text of ``report.md``."""
    lines = ["# AdamBNN analysis", ""]
    lines += [f"- **{run.label}**: `{run.directory}`" for run in runs]
    lines += [
        "",
        "## Summary (the paper's Table 1)",
        "",
        "FF: mean over every iteration of the run (all steps). C2I: at the end, against the "
        "signs at the start of the run and of the last step. Top-1: `final_test_accuracy`, %.",
        "",
        "| run | schedule | optimizer | weight decay | FF ratio | C2I (run start) | "
        "C2I (last step start) | top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        row = run_summary(run)
        lines.append(
            f"| {row['label']} | {row['schedule']} | {row['optimizer'] or 'n/a'} | "
            f"{row['weight_decay']} | {_small(row['ff'])} | {_ratio(row['c2i_run'])} | "
            f"{_ratio(row['c2i_step'])} | {_percent(row['top1'])} |"
        )
    lines += [
        "",
        "## Per step",
        "",
        "FF epoch 1: the early-epoch FF the paper suggests choosing the weight decay by. "
        "Saturation: first binary activation after epoch 1 → at the end. SDAM: first analysed "
        "layer after epoch 1 (weights / that epoch's update). Beyond ±1: share of latent "
        "weights at the end. Dead: share of weights whose max |gradient| in the last epoch "
        "stayed below the threshold.",
        "",
        "| run | step | epochs | iterations | FF mean | FF epoch 1 | C2I (step start) | "
        "saturation | SDAM | update SDAM | beyond ±1 | dead | test top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for step in run.steps:
            s = step_summary(step)
            saturation = (
                f"{_percent(s['saturation_first'])} → {_percent(s['saturation_last'])} %"
                if "saturation_first" in s
                else "n/a"
            )
            dead = f"{_percent(s['dead'])} % (< {s['dead_threshold']:g})" if "dead" in s else "n/a"
            lines.append(
                f"| {run.label} | {s['name']} | {s['epochs']} | {s.get('iterations', 'n/a')} | "
                f"{_small(s.get('ff_mean'))} | {_small(s.get('ff_first_epoch'))} | "
                f"{_ratio(s.get('c2i_step'))} | {saturation} | {_small(s.get('sdam_epoch1'))} | "
                f"{_small(s.get('update_sdam_epoch1'))} | {_percent(s.get('beyond_one'))} % | "
                f"{dead} | {_percent(s.get('test_accuracy'))} |"
            )
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in figures]
    missing = sorted(set(PLOTS) - set(figures))
    if missing:
        lines += ["", f"Not drawn (no data in these runs): {', '.join(missing)}."]
    lines += ["", "Definitions and how to read the plots: docs/analysis.md.", ""]
    return "\n".join(lines)


def analyze(
    run_dirs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Read ``run_dirs`` and write the plots and ``report.md`` to ``output_dir``.

    Every run is read and checked before anything is written, so bad input leaves no partial
    report; each file is written atomically.

    Arguments:
        run_dirs: run directories (``summary.json`` + step directories).
        output_dir: where the PNGs and ``report.md`` go (created).
        labels: one name per run (default: the recipe name or the directory name).
        progress: called with a message per stage (e.g. ``print``).

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: unreadable input, named in the message.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ReportError(f"{len(labels)} labels for {len(run_dirs)} run directories")
    say = progress or (lambda message: None)
    runs = []
    for index, run_dir in enumerate(run_dirs):
        say(f"reading {run_dir}")
        runs.append(load_run(run_dir, labels[index] if labels else None))
    seen: dict[str, int] = {}
    for run in runs:  # identical labels would make the legends ambiguous
        seen[run.label] = seen.get(run.label, 0) + 1
    for run in runs:
        if seen[run.label] > 1:
            run.label = f"{run.label} ({run.directory.name})"
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, plot in PLOTS.items():
        say(f"writing {output / name}")
        if plot(runs, output / name) is not None:
            figures.append(name)
    report = output / REPORT_FILE
    atomic_write_text(report, markdown_report(runs, figures))
    say(f"wrote {report}")
    return report


# --------------------------------------------------------------------------------------
# The toy
# --------------------------------------------------------------------------------------


def toy(
    output_dir: str | os.PathLike,
    *,
    steps: int = 300,
    learning_rate: float = 0.01,
    start: Sequence[float] = (-0.5, -0.5),
) -> dict[str, Any]:
    """Run the toy, write ``toy.png`` and ``toy.json`` to ``output_dir``.

    Returns:
        The content of ``toy.json``: parameters and, per optimizer, final position and loss
        and the first step at the minimum.
    """
    # Lazy: analysis imports TensorFlow (3-4 s here), which `analyze` does not need.
    from adambnn_larq import analysis

    runs = analysis.toy_experiment(start=start, steps=steps, learning_rate=learning_rate)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    plot_toy(runs, output / "toy.png", analysis.TOY_GAIN)
    result = {
        "start": list(map(float, start)),
        "steps": steps,
        "learning_rate": learning_rate,
        "gain": analysis.TOY_GAIN,
        "minimum_loss": 0.0,
        "optimizers": {
            key: {
                "name": run.name,
                "final_position": run.positions[-1].tolist(),
                "final_loss": run.final_loss,
                "first_step_at_minimum": run.first_step_at_minimum,
            }
            for key, run in runs.items()
        },
    }
    atomic_write_text(output / "toy.json", json.dumps(result, indent=2) + "\n")
    return result
