"""CAM/SDAM of the latent kernels and their updates, and weight histograms:
`WeightStatisticsCallback`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from adambnn_larq import analysis
from adambnn_larq.callbacks.base import AnalysisCallback, _summary_writer, _write_histogram
from adambnn_larq.rundir import (
    EPOCH_START_FILE,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    EpochLog,
    atomic_write_bytes,
    epoch_archive,
    npz_bytes,
    read_npz,
)


class WeightStatisticsCallback(AnalysisCallback):
    """CAM/SDAM of the latent kernels and of each epoch's update, and weight histograms.

    Before the first epoch and after every epoch, per analysed layer: CAM (mean |W| per output
    channel) and SDAM (its standard deviation over channels) of the latent kernel and of the
    epoch's update \\(W_{end} - W_{start}\\), the share of weights beyond ±1, and a histogram.
    Outputs: ``analysis/weights.jsonl`` (one record per epoch with the summary numbers) and
    ``analysis/weights/epoch_NNNN.npz`` (``cam/<layer>``, ``update_cam/<layer>``,
    ``histogram/<layer>`` and ``histogram_edges``; see `adambnn_larq.analysis.weight_histogram`
    for the bin layout). The epoch-start weights are also kept in
    ``analysis/epoch_start_weights.npz`` so that a run resumed within an epoch still reports
    the whole epoch's update.

    Arguments:
        log_dir: see `AnalysisCallback`.
        layer_names: see `adambnn_larq.analysis.analysis_layers`.
        histogram_range: inner range of the histogram bins.
        histogram_bins: number of inner bins.
        tensorboard: write ``sdam/``, ``update_sdam/``, ``beyond_one/`` scalars and
            ``latent/<layer>`` histograms.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        layer_names: Sequence[str] | None = None,
        histogram_range: tuple[float, float] = analysis.DEFAULT_HISTOGRAM_RANGE,
        histogram_bins: int = analysis.DEFAULT_HISTOGRAM_BINS,
        tensorboard: bool = True,
    ):
        super().__init__(log_dir, tensorboard=tensorboard)
        self.layer_names = layer_names
        self.edges = analysis.histogram_edges(histogram_range, histogram_bins)

    def _setup(self) -> None:
        self._prepare()
        (self.analysis_dir / WEIGHTS_DIR).mkdir(exist_ok=True)
        self._select_layers(self.layer_names)
        self._log = EpochLog(self.analysis_dir / WEIGHTS_FILE)
        self._log.load(self.iteration())
        self._start: list[np.ndarray] | None = None

    def _current(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._latents]

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        iteration = self.iteration()
        current = self._current()
        path = self.analysis_dir / EPOCH_START_FILE
        start = None
        if path.exists():
            saved = read_npz(path)
            if int(saved["__epoch__"]) == epoch and int(saved["__iteration__"]) < iteration:
                # Resumed within this epoch: the update is measured from the epoch's start.
                start = [saved[layer.name] for layer in self._layers]
        if start is None:
            start = current
            arrays = {layer.name: w for layer, w in zip(self._layers, current)}
            arrays["__epoch__"] = np.array(epoch)
            arrays["__iteration__"] = np.array(iteration)
            atomic_write_bytes(path, npz_bytes(arrays))
        self._start = start
        if not self._log.has_iteration(iteration):
            self._record(epoch, current, None)

    def on_epoch_end(self, epoch, logs=None):
        self._record(epoch + 1, self._current(), self._start)
        self._flush_tensorboard()

    def _record(
        self, epochs_done: int, current: list[np.ndarray], start: list[np.ndarray] | None
    ) -> None:
        arrays: dict[str, np.ndarray] = {"histogram_edges": self.edges}
        layers: dict[str, dict] = {}
        values: dict[str, float] = {}
        for index, (layer, weights) in enumerate(zip(self._layers, current)):
            cam = analysis.channel_abs_mean(weights)
            stats = {
                "sdam": float(np.std(cam)),
                "cam_mean": float(cam.mean()),
                "cam_min": float(cam.min()),
                "cam_max": float(cam.max()),
                "abs_mean": float(np.abs(weights).mean()),
                "beyond_one": analysis.share_beyond(weights, 1.0),
            }
            arrays[f"cam/{layer.name}"] = cam
            arrays[f"histogram/{layer.name}"] = analysis.weight_histogram(weights, self.edges)
            if start is not None:
                update_cam = analysis.channel_abs_mean(weights - start[index])
                stats.update(
                    update_sdam=float(np.std(update_cam)),
                    update_cam_mean=float(update_cam.mean()),
                    update_cam_min=float(update_cam.min()),
                    update_cam_max=float(update_cam.max()),
                )
                arrays[f"update_cam/{layer.name}"] = update_cam
                values[f"update_sdam/{layer.name}"] = stats["update_sdam"]
            layers[layer.name] = stats
            values[f"sdam/{layer.name}"] = stats["sdam"]
            values[f"beyond_one/{layer.name}"] = stats["beyond_one"]
        atomic_write_bytes(
            epoch_archive(self.analysis_dir / WEIGHTS_DIR, epochs_done), npz_bytes(arrays)
        )
        self._log.put({"epoch": epochs_done, "iteration": self.iteration(), "layers": layers})
        self._scalars(values, epochs_done)
        if self.tensorboard:
            with _summary_writer(self.log_dir).as_default():
                for layer, weights in zip(self._layers, current):
                    counts = arrays[f"histogram/{layer.name}"]
                    _write_histogram(
                        f"latent/{layer.name}", counts, self.edges, weights, epochs_done
                    )
