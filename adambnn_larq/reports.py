"""``adambnn analyze`` and ``adambnn toy``: plots and a Table-1-style report of the paper's metrics.

``analyze`` reads run directories written by the training commands (``summary.json`` and each
step's ``analysis/`` files from `adambnn_larq.callbacks`) and writes PNG plots (Agg backend)
and ``report.md``; several runs are overlaid for comparison. ``toy`` runs the paper's
two-dimensional toy (`adambnn_larq.analysis.toy_experiment`) and plots both trajectories over
the loss surface. docs/analysis.md explains how to read every plot.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq.cli import (
    CommandError,
    check_output_dir,
    finite_float,
    positive_float,
    positive_int,
)

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


class ReportError(ValueError):
    """A run directory cannot be read: the message names the file and the field."""


# --------------------------------------------------------------------------------------
# Reading run directories
# --------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not valid JSON ({error})") from error


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}, line {number}: not valid JSON ({error})") from error
    return records


def _read_csv(path: Path) -> dict[str, np.ndarray] | None:
    """Columns of a callback CSV as float arrays (empty cells are NaN)."""
    if not path.exists():
        return None
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return None
        rows = [row for row in reader if len(row) == len(header)]
    try:
        values = np.array(
            [[float(cell) if cell else math.nan for cell in row] for row in rows], dtype=np.float64
        ).reshape(len(rows), len(header))
    except ValueError as error:
        raise ReportError(f"{path}: non-numeric value ({error})") from error
    return {name: values[:, index] for index, name in enumerate(header)}


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ReportError(f"{path}: not a readable .npz file ({error})") from error


@dataclasses.dataclass
class StepData:
    """The analysis files of one training step."""

    name: str
    directory: Path
    info: dict
    layers: list[dict]
    ff: dict[str, np.ndarray] | None
    c2i: list[dict]
    saturation: list[dict]
    weights: list[dict]
    gradients: list[dict]
    optimizer_steps: dict[str, np.ndarray] | None

    @property
    def analysis_dir(self) -> Path:
        return self.directory / "analysis"

    @property
    def epochs(self) -> int:
        """Completed epochs recorded by the callbacks."""
        counts = [r["epoch"] for r in self.c2i + self.saturation + self.weights + self.gradients]
        if self.ff is not None and len(self.ff["epoch"]):
            counts.append(int(self.ff["epoch"].max()))
        return max(counts, default=0)

    @property
    def layer_sizes(self) -> dict[str, int]:
        return {entry["name"]: int(entry["size"]) for entry in self.layers}

    def weights_archive(self, epoch: int) -> dict[str, np.ndarray] | None:
        return _read_npz(self.analysis_dir / "weights" / f"epoch_{epoch:04d}.npz")


@dataclasses.dataclass
class RunData:
    """One run directory: its ``summary.json`` and the data of each step."""

    directory: Path
    label: str
    summary: dict
    steps: list[StepData]


def load_run(run_dir: str | os.PathLike, label: str | None = None) -> RunData:
    """Read a run directory written by the training commands.

    Arguments:
        run_dir: directory with ``summary.json`` and one subdirectory per step.
        label: name in plots and tables (default: the summary's ``recipe`` or the directory
            name).

    Returns:
        The `RunData`.

    Raises:
        ReportError: a missing or malformed file or field (named in the message).
    """
    directory = Path(run_dir)
    summary_path = directory / SUMMARY_FILE
    if directory.exists() and not directory.is_dir():
        raise ReportError(
            f"{directory} is a file, not a run directory (the directory `adambnn train` writes, "
            "with summary.json)"
        )
    if not directory.is_dir():
        raise ReportError(f"run directory not found: {directory}")
    if not summary_path.is_file():
        raise ReportError(f"{summary_path} not found: is {directory} a training run directory?")
    summary = _read_json(summary_path)
    if not isinstance(summary, dict):
        raise ReportError(f"{summary_path}: expected a JSON object")
    steps_info = summary.get("steps")
    if not isinstance(steps_info, list) or not steps_info:
        raise ReportError(f"{summary_path}: field 'steps' must be a non-empty list")
    steps = []
    root = directory.resolve()
    for index, info in enumerate(steps_info):
        where = f"{summary_path}: steps[{index}]"
        if not isinstance(info, dict) or not isinstance(info.get("dir"), str):
            raise ReportError(f"{where}: field 'dir' (the step's directory) is missing")
        step_dir = (directory / info["dir"]).resolve()
        if root != step_dir and root not in step_dir.parents:
            raise ReportError(f"{where}: 'dir' {info['dir']!r} points outside the run directory")
        analysis_dir = step_dir / "analysis"
        if not analysis_dir.is_dir():
            raise ReportError(
                f"{analysis_dir} not found: was step {info.get('name', index + 1)!r} trained "
                "with the analysis callbacks (adambnn_larq.callbacks.paper_callbacks)?"
            )
        layers_path = analysis_dir / "layers.json"
        table = _read_json(layers_path) if layers_path.exists() else {}
        layers = table.get("layers") if isinstance(table, dict) else None
        if not isinstance(layers, list) or not all(
            isinstance(e, dict) and {"name", "size"} <= set(e) for e in layers
        ):
            if layers_path.exists():
                raise ReportError(f"{layers_path}: field 'layers' must list {{name, size}} objects")
            layers = []
        steps.append(
            StepData(
                name=str(info.get("name", f"step{index + 1}")),
                directory=step_dir,
                info=info,
                layers=layers,
                ff=_read_csv(analysis_dir / "ff_steps.csv"),
                c2i=_read_jsonl(analysis_dir / "c2i.jsonl"),
                saturation=_read_jsonl(analysis_dir / "saturation.jsonl"),
                weights=_read_jsonl(analysis_dir / "weights.jsonl"),
                gradients=_read_jsonl(analysis_dir / "gradients.jsonl"),
                optimizer_steps=_read_csv(analysis_dir / "optimizer_steps.csv"),
            )
        )
    default_label = summary.get("recipe") or directory.name
    return RunData(directory, label or str(default_label), summary, steps)


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


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    from adambnn_larq.saving import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


def _smooth(values: np.ndarray, points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive windows, so long runs plot as ~``points`` points."""
    window = max(1, len(values) // points)
    usable = len(values) // window * window
    means = values[:usable].reshape(-1, window).mean(axis=1)
    centers = np.arange(len(means)) * window + (window + 1) / 2
    return centers, means


def _epoch_series(run: RunData, records_of, value_of) -> tuple[list, list, list[int]]:
    """Values of per-epoch records over the run (steps concatenated), with step boundaries."""
    xs, ys, boundaries, offset = [], [], [], 0
    for index, step in enumerate(run.steps):
        for record in records_of(step):
            value = value_of(record)
            if value is not None:
                xs.append(offset + record["epoch"])
                ys.append(value)
        offset += step.epochs
        if index < len(run.steps) - 1:
            boundaries.append(offset)
            xs.append(offset)  # NaN breaks the line: the steps are separate curves
            ys.append(math.nan)
    return xs, ys, boundaries


def _colors(count: int) -> list:
    cmap = _pyplot().get_cmap("tab10")
    return [cmap(i % 10) for i in range(count)]


def plot_ff(runs: Sequence[RunData], path: Path) -> Path | None:
    """FF per iteration (window means) and its running mean, steps concatenated."""
    if not any(s.ff is not None and len(s.ff["ff"]) for r in runs for s in r.steps):
        return None
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, layout="constrained")
    for run, color in zip(runs, _colors(len(runs))):
        series = [s.ff["ff"] for s in run.steps if s.ff is not None]
        ff = np.concatenate(series) if series else np.zeros(0)
        if not len(ff):
            continue
        x, y = _smooth(ff)
        top.plot(x, y, color=color, label=run.label)
        running = np.cumsum(ff) / np.arange(1, len(ff) + 1)
        bottom.plot(np.arange(1, len(ff) + 1), running, color=color, label=run.label)
        offset = 0
        for s in series[:-1]:
            offset += len(s)
            for axis in (top, bottom):
                axis.axvline(offset, color=color, linestyle=":", linewidth=1)
    top.set_yscale("symlog", linthresh=1e-6)
    top.set_ylabel("FF ratio (window mean)")
    top.set_title("Flip-flop ratio per iteration (dotted: start of the next step)")
    bottom.set_yscale("symlog", linthresh=1e-6)
    bottom.set_ylabel("FF ratio, mean since start")
    bottom.set_xlabel("iteration (all steps)")
    top.legend(fontsize=8)
    return _save(figure, path)


def plot_c2i(runs: Sequence[RunData], path: Path) -> Path | None:
    """C2I per epoch against the step's start (solid) and the run's start (dashed)."""
    if not any(s.c2i for r in runs for s in r.steps):
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for run, color in zip(runs, _colors(len(runs))):
        x, y, bounds = _epoch_series(run, lambda s: s.c2i, lambda r: r["step_start"]["global"])
        axis.plot(x, y, color=color, marker=".", label=f"{run.label}: vs step start")
        if len(run.steps) > 1:
            x, y, _ = _epoch_series(
                run, lambda s: s.c2i, lambda r: (r.get("run_start") or {}).get("global")
            )
            axis.plot(
                x, y, color=color, linestyle="--", marker=".", label=f"{run.label}: vs run start"
            )
        for bound in bounds:
            axis.axvline(bound, color=color, linestyle=":", linewidth=1)
    axis.set_xlabel("epoch (all steps)")
    axis.set_ylabel("C2I ratio")
    axis.set_title("Share of latent weights with their initial sign")
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_saturation(runs: Sequence[RunData], path: Path) -> Path | None:
    """Saturation per epoch: the first sign activation and all of them pooled."""
    if not any(s.saturation for r in runs for s in r.steps):
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True, layout="constrained")
    for run, color in zip(runs, _colors(len(runs))):
        first = next((s.saturation[0]["layers"] for s in run.steps if s.saturation), {})
        name = next(iter(first), None)
        x, y, bounds = _epoch_series(
            run,
            lambda s: s.saturation,
            lambda r, name=name: r["layers"].get(name) if name else None,
        )
        left.plot(x, y, color=color, marker=".", label=f"{run.label} ({name})")
        x, y, _ = _epoch_series(run, lambda s: s.saturation, lambda r: r["global"])
        right.plot(x, y, color=color, marker=".", label=run.label)
        for bound in bounds:
            for axis in (left, right):
                axis.axvline(bound, color=color, linestyle=":", linewidth=1)
    left.set_title("First binary activation")
    right.set_title("All binary activations")
    left.set_ylabel("share of sign inputs with |a| > 1")
    for axis in (left, right):
        axis.set_xlabel("epoch (all steps; 0 = before training)")
        axis.legend(fontsize=8)
    return _save(figure, path)


def plot_cam(runs: Sequence[RunData], path: Path) -> Path | None:
    """CAM distributions after epoch 1 (weights and update) and SDAM over epochs.

    Uses the last step of each run (the binary-weight step of a two-step run) and its first
    analysed layer, as the paper does with the first binary conv.
    """
    archives = [(run, run.steps[-1], run.steps[-1].weights_archive(1)) for run in runs]
    if not any(archive is not None for *_, archive in archives):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    bins = {}
    for key in ("cam", "update_cam"):  # shared bins, so that runs compare bar by bar
        pooled = [
            archive[f"{key}/{step.layers[0]['name']}"]
            for _, step, archive in archives
            if archive is not None and step.layers and f"{key}/{step.layers[0]['name']}" in archive
        ]
        bins[key] = np.histogram_bin_edges(np.concatenate(pooled), 40) if pooled else 40
    for (run, step, archive), color in zip(archives, _colors(len(runs))):
        if archive is None or not step.layers:
            continue
        layer = step.layers[0]["name"]
        label = f"{run.label} ({step.name}, {layer})"
        for axis, key in ((axes[0, 0], "cam"), (axes[0, 1], "update_cam")):
            values = archive.get(f"{key}/{layer}")
            if values is not None:
                axis.hist(values, bins=bins[key], color=color, alpha=0.5, label=label)
        epochs = [r["epoch"] for r in step.weights]
        axes[1, 0].plot(
            epochs, [r["layers"][layer]["sdam"] for r in step.weights], color=color, marker="."
        )
        updates = [(r["epoch"], r["layers"][layer].get("update_sdam")) for r in step.weights]
        updates = [(e, v) for e, v in updates if v is not None]
        if updates:
            axes[1, 1].plot(*zip(*updates), color=color, marker=".", label=label)
    axes[0, 0].set_title("CAM of the latent weights after epoch 1")
    axes[0, 1].set_title("CAM of the epoch-1 update")
    axes[1, 0].set_title("SDAM of the latent weights")
    axes[1, 1].set_title("SDAM of each epoch's update")
    for axis in axes[0]:
        axis.set_xlabel("mean |w| of an output channel")
        axis.set_ylabel("channels")
        axis.legend(fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
    return _save(figure, path)


def plot_weight_histograms(runs: Sequence[RunData], path: Path) -> Path | None:
    """Final latent-weight histograms: all analysed layers pooled, and the first layer."""
    finals = []
    for run in runs:
        step = run.steps[-1]
        archive = step.weights_archive(step.weights[-1]["epoch"]) if step.weights else None
        finals.append((run, step, archive))
    if not any(archive is not None for *_, archive in finals):
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for (run, step, archive), color in zip(finals, _colors(len(runs))):
        if archive is None or not step.layers:
            continue
        edges = archive["histogram_edges"]
        names = [entry["name"] for entry in step.layers]
        pooled = sum(archive[f"histogram/{name}"] for name in names)
        for axis, counts in ((left, pooled), (right, archive[f"histogram/{names[0]}"])):
            inner = counts[1:-1] / counts.sum() / np.diff(edges)
            axis.stairs(inner, edges, color=color, label=run.label)
        outside = (pooled[0] + pooled[-1]) / pooled.sum()
        left.plot([], [], " ", label=f"  beyond ±{edges[-1]:g}: {100 * outside:.2f} %")
    left.set_title("Latent weights at the end, all analysed layers")
    right.set_title("Latent weights at the end, first analysed layer")
    for axis in (left, right):
        for bound in (-1, 1):
            axis.axvline(bound, color="grey", linestyle=":", linewidth=1)
        axis.set_yscale("log")
        axis.set_xlabel("latent weight")
        axis.set_ylabel("density")
        axis.legend(fontsize=8)
    return _save(figure, path)


def plot_gradients(runs: Sequence[RunData], path: Path) -> Path | None:
    """Gradient norm and Adam's second moment over iterations; dead weights per epoch."""
    if not any(s.optimizer_steps is not None or s.gradients for r in runs for s in r.steps):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
    for run, color in zip(runs, _colors(len(runs))):
        offset = 0
        for step in run.steps:
            table = step.optimizer_steps
            names = [entry["name"] for entry in step.layers]
            if table is not None and len(table["iteration"]) and names:
                x = table["iteration"] + offset
                norms = np.stack([table[f"grad_norm:{n}"] for n in names])
                axes[0].plot(x, np.sqrt((norms**2).sum(axis=0)), color=color)
                sizes = np.array([step.layer_sizes[n] for n in names], dtype=np.float64)
                v = np.stack([table[f"v_mean:{n}"] for n in names])
                if not np.isnan(v).all():
                    axes[1].plot(x, (v * sizes[:, None]).sum(axis=0) / sizes.sum(), color=color)
            if step.ff is not None and len(step.ff["iteration"]):
                offset += int(step.ff["iteration"].max())
        x, y, _ = _epoch_series(run, lambda s: s.gradients, lambda r: r["global"]["dead"])
        axes[2].plot(x, y, color=color, marker=".", label=f"{run.label}: < threshold")
        x, y, _ = _epoch_series(run, lambda s: s.gradients, lambda r: r["global"]["zero"])
        axes[2].plot(x, y, color=color, marker=".", linestyle="--", label=f"{run.label}: exactly 0")
    axes[0].set_title("Gradient L2 norm, all analysed kernels")
    axes[1].set_title("Adam second moment v, mean over weights")
    axes[2].set_title("Dead weights per epoch")
    for axis in axes[:2]:
        axis.set_xlabel("iteration (all steps)")
        axis.set_yscale("log")
    axes[2].set_xlabel("epoch (all steps)")
    axes[2].set_ylabel("share of latent weights")
    axes[2].legend(fontsize=7)
    return _save(figure, path)


PLOTS = {
    "ff_ratio.png": plot_ff,
    "c2i.png": plot_c2i,
    "saturation.png": plot_saturation,
    "cam.png": plot_cam,
    "weight_histograms.png": plot_weight_histograms,
    "gradients.png": plot_gradients,
}


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


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
    progress=None,
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
    from adambnn_larq.saving import atomic_write_text

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


def plot_toy(toy_runs: dict, path: Path, gain: float) -> Path:
    """Both trajectories over the toy's loss surface, and the loss per step."""
    from adambnn_larq.analysis import toy_loss

    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    positions = np.concatenate([run.positions for run in toy_runs.values()])
    low = min(-1.5, positions.min() - 0.2)
    high = max(1.5, positions.max() + 0.2)
    grid = np.linspace(low, high, 400)
    xx, yy = np.meshgrid(grid, grid)
    surface = left.pcolormesh(
        xx, yy, np.log10(toy_loss(xx, yy, gain) + 1e-6), cmap="viridis", shading="auto"
    )
    figure.colorbar(surface, ax=left, label="log10(loss + 1e-6)")
    for bound in (-1, 1):
        left.axvline(bound, color="white", linestyle=":", linewidth=1)
        left.axhline(bound, color="white", linestyle=":", linewidth=1)
    colors = {"sgd": "tab:red", "adam": "tab:orange"}
    for key, run in toy_runs.items():
        left.plot(*run.positions.T, color=colors.get(key), marker=".", markersize=2, label=run.name)
        left.plot(*run.positions[-1], color=colors.get(key), marker="X", markersize=10)
        steps = np.arange(len(run.losses))
        right.plot(steps, run.losses, color=colors.get(key), label=run.name)
    start = next(iter(toy_runs.values())).positions[0]
    left.plot(*start, color="white", marker="o", markersize=8, label="start")
    left.set_xlabel("latent weight x (read-out 1)")
    left.set_ylabel(f"latent weight y (read-out {gain:g})")
    left.set_title("Loss of two binary nodes; dotted: |w| = 1 (flat beyond)")
    left.legend(fontsize=8, loc="lower right")
    right.set_yscale("symlog", linthresh=1e-5)
    right.set_xlabel("step")
    right.set_ylabel("loss")
    right.set_title("Loss per step (minimum 0)")
    right.legend(fontsize=8)
    return _save(figure, path)


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
    from adambnn_larq import analysis
    from adambnn_larq.saving import atomic_write_text

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


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _analyze_command(args: argparse.Namespace) -> int:
    if args.output is None:
        if len(args.run_dirs) > 1:
            raise CommandError("several run directories need --output DIR for the report")
        args.output = str(Path(args.run_dirs[0]) / "report")
    for run_dir in map(Path, args.run_dirs):  # the input's plain mistakes first
        if not run_dir.is_dir():
            raise CommandError(
                f"{run_dir} is a file, not a run directory (what `adambnn train` writes)"
                if run_dir.exists()
                else f"run directory not found: {run_dir}"
            )
    check_output_dir(args.output, "--output")
    try:
        report = analyze(args.run_dirs, args.output, labels=args.labels, progress=print)
    except ReportError as error:
        raise CommandError(str(error)) from error
    print(f"report: {report}")
    return 0


def _toy_command(args: argparse.Namespace) -> int:
    check_output_dir(args.output, "--output")
    result = toy(args.output, steps=args.steps, learning_rate=args.learning_rate, start=args.start)
    for entry in result["optimizers"].values():
        reached = entry["first_step_at_minimum"]
        where = f"reached the minimum at step {reached}" if reached is not None else "stalled"
        x, y = entry["final_position"]
        print(
            f"{entry['name']}: final loss {entry['final_loss']:.3g} at ({x:.3f}, {y:.3f}); {where}"
        )
    print(f"wrote {Path(args.output) / 'toy.png'} and toy.json")
    sys.stdout.flush()
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="plots and a Table-1-style report (FF, C2I, saturation, CAM, histograms) of runs",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training run directories")
    parser.add_argument(
        "--output", help="report directory (default RUN_DIR/report for a single run)"
    )
    parser.add_argument("--labels", nargs="+", help="one name per run for legends and tables")
    parser.set_defaults(func=_analyze_command)

    parser = subparsers.add_parser(
        "toy", help="the paper's 2-D toy: SGD with momentum stalls, Adam reaches the minimum"
    )
    parser.add_argument("--output", default="toy", help="output directory (default ./toy)")
    parser.add_argument("--steps", type=positive_int, default=300)
    parser.add_argument("--learning-rate", type=positive_float, default=0.01)
    parser.add_argument(
        "--start", type=finite_float, nargs=2, default=(-0.5, -0.5), metavar=("X", "Y")
    )
    parser.set_defaults(func=_toy_command)
