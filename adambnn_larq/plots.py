"""The analysis plots (PNG, Agg backend) of ``adambnn analyze`` and ``adambnn toy``.

docs/analysis.md explains how to read every plot. matplotlib is an optional dependency (the
``plots`` extra) that takes about a second to import: it is imported when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq.rundir import RunData, atomic_write_bytes


def _pyplot() -> Any:
    # Lazy: optional, and a second to import (Agg must be chosen before pyplot loads).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
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


def _epoch_series(
    run: RunData,
    records_of: Callable[[Any], Iterable[Any]],
    value_of: Callable[..., float | None],
) -> tuple[list, list, list[int]]:
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
        first: dict[str, Any] = next(
            (s.saturation[0]["layers"] for s in run.steps if s.saturation), {}
        )
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
        pooled: np.ndarray = np.sum([archive[f"histogram/{name}"] for name in names], axis=0)
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
                iterations = table["iteration"] + offset
                norms = np.stack([table[f"grad_norm:{n}"] for n in names])
                axes[0].plot(iterations, np.sqrt((norms**2).sum(axis=0)), color=color)
                sizes = np.array([step.layer_sizes[n] for n in names], dtype=np.float64)
                v = np.stack([table[f"v_mean:{n}"] for n in names])
                if not np.isnan(v).all():
                    mean = (v * sizes[:, None]).sum(axis=0) / sizes.sum()
                    axes[1].plot(iterations, mean, color=color)
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


def plot_toy(toy_runs: dict, path: Path, gain: float) -> Path:
    """Both trajectories over the toy's loss surface, and the loss per step."""
    # Lazy: analysis imports TensorFlow (3-4 s here), which the run plots do not need.
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
