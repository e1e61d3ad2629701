"""Keras callbacks that record the AdamBNN paper's measurements while a BNN trains.

`paper_callbacks` returns all of them with the defaults the training commands use. Each
callback finds the BNN as ``getattr(self.model, "student", self.model)`` (so it works on a
distillation trainer and on a plain Keras model), writes under ``log_dir/analysis/`` and
TensorBoard summaries under ``log_dir/tensorboard/analysis``. The quantities are computed by
`adambnn_larq.analysis`; the files are named, written and resumed by `adambnn_larq.rundir`
(`StepCsv`, `EpochLog`). docs/analysis.md describes every file. Conventions:

- ``iteration`` is the optimizer's step count after the update (1 for the first step); rows of
  per-step files carry it, and TensorBoard's per-step tags use it as step.
- ``epoch`` in per-epoch records counts completed epochs: 0 is the state before the first
  epoch, e the state after epoch e. Per-step rows carry the 1-based epoch they belong to.
- Resuming: a callback constructed again on the same ``log_dir`` reloads what it needs and
  drops records newer than the restored optimizer's iteration (written after the checkpoint
  the run resumed from), so a resumed run reports what an uninterrupted one would. Resume with
  ``fit(initial_epoch=...)`` and the optimizer state restored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata

from adambnn_larq import analysis
from adambnn_larq.rundir import (
    ANALYSIS_DIR,
    C2I_FILE,
    EPOCH_START_FILE,
    FF_STEPS_FILE,
    GRADIENTS_DIR,
    GRADIENTS_FILE,
    INITIAL_SIGNS_FILE,
    LAYERS_FILE,
    OPTIMIZER_STEPS_FILE,
    SATURATION_FILE,
    TENSORBOARD_DIR,
    WEIGHTS_DIR,
    WEIGHTS_FILE,
    EpochLog,
    StepCsv,
    atomic_write_bytes,
    atomic_write_text,
    epoch_archive,
    npz_bytes,
    read_npz,
)

log = logging.getLogger(__name__)

#: A latent weight is "dead" for an epoch when its largest |dL/dw| stayed below this. The
#: per-epoch log10 histograms of max |dL/dw| allow any other threshold afterwards.
DEFAULT_DEAD_THRESHOLD: float = 1e-8

_WRITERS: dict[str, Any] = {}


def _summary_writer(log_dir: Path):
    # One writer per directory, shared by the callbacks: several writers on one directory
    # would each start an event file.
    key = str((log_dir / TENSORBOARD_DIR).resolve())
    if key not in _WRITERS:
        _WRITERS[key] = tf.summary.create_file_writer(key)
    return _WRITERS[key]


def _write_histogram(
    tag: str, counts: np.ndarray, edges: np.ndarray, values: np.ndarray, step: int
) -> None:
    """A TensorBoard histogram from counts already computed (see `weight_histogram`).

    ``tf.summary.histogram`` would bucket every weight again with eager TF ops, which cost
    more than all the other per-epoch statistics together.
    """
    # TensorBoard's histogram tensor: one (left, right, count) row per bucket; the outer
    # buckets of `weight_histogram` reach to the smallest and largest value.
    left = np.concatenate([[min(values.min(), edges[0])], edges])
    right = np.concatenate([edges, [max(values.max(), edges[-1])]])
    table = np.stack([left, right, counts.astype(np.float64)], axis=1)
    tf.summary.write(
        tag,
        tf.constant(table, tf.float64),
        step=step,
        metadata=metadata.create_summary_metadata(display_name=None, description=None),
    )


def save_initial_signs(
    student: tf.keras.Model, path: str | os.PathLike, layer_names: Sequence[str] | None = None
) -> Path:
    """Write the signs of ``student``'s analysed latent kernels to ``path`` (``.npz``).

    The C2I callback writes this file at the start of each step
    (``log_dir/analysis/initial_signs.npz``); pass step 1's file as ``run_start_signs`` to the
    step-2 callbacks to get C2I against the start of the run.

    Arguments:
        student: the BNN.
        path: destination; written atomically.
        layer_names: as in `adambnn_larq.analysis.analysis_layers`.

    Returns:
        The path. The archive maps layer names to boolean arrays (True where w >= 0), read it
        with `adambnn_larq.analysis.load_signs`.
    """
    layers = analysis.analysis_layers(student, layer_names)
    arrays = {
        layer.name: analysis.nonnegative(analysis.latent_kernel(layer).numpy()) for layer in layers
    }
    return atomic_write_bytes(path, npz_bytes(arrays))


class AnalysisCallback(tf.keras.callbacks.Callback):
    """Base of the analysis callbacks: output locations, the BNN, the iteration count.

    Arguments:
        log_dir: the training step's directory; outputs go to ``log_dir/analysis`` and
            ``log_dir/tensorboard/analysis``.
        tensorboard: also write TensorBoard summaries.
    """

    def __init__(self, log_dir: str | os.PathLike, *, tensorboard: bool = True):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.analysis_dir = self.log_dir / ANALYSIS_DIR
        self.tensorboard = tensorboard
        # The batch hooks do not read `logs`; this spares Keras a device-to-host copy per step.
        self._supports_tf_logs = True
        self._epoch = 0
        self._owner = None
        self._end_iteration = -1

    def on_train_begin(self, logs=None):
        # A trainer may call fit once per epoch with the same callbacks: when nothing trained
        # the model since the last fit ended, the device state and totals are still valid.
        if self._owner is self.model and self._end_iteration == self.iteration():
            self._continue_training()
        else:
            self._setup()

    def on_train_end(self, logs=None):
        self._finish()
        self._owner = self.model
        self._end_iteration = self.iteration()

    def _setup(self) -> None:
        """Build the state of a (possibly resumed) training from the model and the files."""
        raise NotImplementedError

    def _continue_training(self) -> None:
        """Continue after a fit of the same model by the same callback."""

    def _finish(self) -> None:
        self._flush_tensorboard()

    @property
    def student(self) -> tf.keras.Model:
        """The BNN: the trainer's ``student``, or the model itself."""
        return getattr(self.model, "student", self.model)

    def iteration(self) -> int:
        """Optimizer updates applied so far."""
        return int(self.model.optimizer.iterations.numpy())

    def _prepare(self) -> None:
        self.analysis_dir.mkdir(parents=True, exist_ok=True)

    def _write_layer_table(self, layers: Sequence[tf.keras.layers.Layer]) -> None:
        table = [
            {
                "name": layer.name,
                "shape": list(analysis.latent_kernel(layer).shape),
                "size": int(np.prod(analysis.latent_kernel(layer).shape)),
            }
            for layer in layers
        ]
        atomic_write_text(self.analysis_dir / LAYERS_FILE, json.dumps({"layers": table}) + "\n")

    def _scalars(self, values: dict[str, float], step: int) -> None:
        if not self.tensorboard or not values:
            return
        with _summary_writer(self.log_dir).as_default():
            for name, value in values.items():
                tf.summary.scalar(name, value, step=step)

    def _flush_tensorboard(self) -> None:
        if self.tensorboard:
            _summary_writer(self.log_dir).flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class FlipRatioCallback(AnalysisCallback):
    """FF ratio of every iteration, global and per layer, and its running mean.

    After each optimizer step the signs of the latent kernels (kept on device as boolean
    variables) are compared with the previous step's in one `tf.function`; only one count per
    layer leaves the device. ``analysis/ff_steps.csv`` gets one row per iteration:
    ``iteration, epoch, ff, ff_mean, flips:<layer>...`` where ``ff`` is this iteration's global
    ratio, ``ff_mean`` the mean over all iterations of the step so far (the paper's Table 1
    number), and ``flips:<layer>`` integer counts (divide by the sizes in ``layers.json``).
    The epoch's mean and the running mean are also added to the epoch logs as ``ff_ratio`` and
    ``ff_ratio_mean``.

    Unlike larq's ``flip_ratio`` metric (per layer, averaged per epoch without the transition
    into the epoch, and 0 for scaled quantizers, whose outputs it casts to int8), this counts
    every update of every analysed latent weight.

    Arguments:
        log_dir: see `AnalysisCallback`.
        layer_names: see `adambnn_larq.analysis.analysis_layers`.
        tensorboard: write ``ff/global`` and ``ff/running_mean`` per iteration and
            ``ff_layer/<name>`` (epoch means) per epoch.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        layer_names: Sequence[str] | None = None,
        tensorboard: bool = True,
    ):
        super().__init__(log_dir, tensorboard=tensorboard)
        self.layer_names = layer_names
        self._csv: StepCsv | None = None

    def _setup(self) -> None:
        self._prepare()
        self._layers = analysis.analysis_layers(self.student, self.layer_names)
        self._write_layer_table(self._layers)
        self._latents = [analysis.latent_kernel(layer) for layer in self._layers]
        self._sizes = np.array([int(np.prod(v.shape)) for v in self._latents], dtype=np.int64)
        self._previous = [
            tf.Variable(tf.greater_equal(v, 0), trainable=False, name="previous_signs")
            for v in self._latents
        ]
        self._count_flips = tf.function(self._flips_on_device, autograph=False)
        names = [layer.name for layer in self._layers]
        header = ["iteration", "epoch", "ff", "ff_mean", *[f"flips:{n}" for n in names]]
        if self._csv is not None:  # an earlier fit of this callback that did not end
            self._csv.close()
        self._csv = StepCsv(self.analysis_dir / FF_STEPS_FILE, header)
        self._last_iteration = self.iteration()
        rows = self._csv.open(self._last_iteration)
        self._total_flips = np.zeros(len(names), dtype=np.int64)
        for row in rows:
            self._total_flips += np.array(row[4:], dtype=np.int64)
        self._count = len(rows)
        if rows and int(rows[-1][0]) != self._last_iteration:
            log.warning(
                "%s ends at iteration %s but training resumes at %d: the running FF mean "
                "covers only the logged iterations",
                self._csv.path,
                rows[-1][0],
                self._last_iteration,
            )
        self._warned_gap = False

    def _flips_on_device(self) -> tf.Tensor:
        counts = []
        for latent, previous in zip(self._latents, self._previous):
            signs = tf.greater_equal(latent, 0)
            counts.append(tf.math.count_nonzero(tf.not_equal(signs, previous), dtype=tf.int64))
            previous.assign(signs)
        return tf.stack(counts)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch_flips = np.zeros_like(self._total_flips)
        self._epoch_count = 0

    def on_train_batch_end(self, batch, logs=None):
        flips = self._count_flips().numpy()
        iteration = self.iteration()
        if iteration != self._last_iteration + 1 and not self._warned_gap:
            self._warned_gap = True
            log.warning(
                "the optimizer advanced from iteration %d to %d in one batch "
                "(steps_per_execution > 1?): FF rows then cover several updates",
                self._last_iteration,
                iteration,
            )
        self._last_iteration = iteration
        self._total_flips += flips
        self._count += 1
        self._epoch_flips += flips
        self._epoch_count += 1
        total_size = self._sizes.sum()
        ff = flips.sum() / total_size
        ff_mean = self._total_flips.sum() / (total_size * self._count)
        self._csv.write([iteration, self._epoch + 1, ff, ff_mean, *flips])
        self._scalars({"ff/global": ff, "ff/running_mean": ff_mean}, iteration)

    def on_epoch_end(self, epoch, logs=None):
        self._csv.flush()
        if self._epoch_count == 0:
            return
        per_layer = self._epoch_flips / (self._sizes * self._epoch_count)
        epoch_mean = self._epoch_flips.sum() / (self._sizes.sum() * self._epoch_count)
        running = self._total_flips.sum() / (self._sizes.sum() * self._count)
        if logs is not None:
            logs["ff_ratio"] = float(epoch_mean)
            logs["ff_ratio_mean"] = float(running)
        values = {f"ff_layer/{layer.name}": r for layer, r in zip(self._layers, per_layer)}
        values["ff_epoch/global"] = epoch_mean
        self._scalars(values, epoch + 1)
        self._flush_tensorboard()

    def _continue_training(self) -> None:
        self._csv.reopen()

    def _finish(self) -> None:
        if self._csv is not None:
            self._csv.close()
        self._flush_tensorboard()

    @property
    def running_mean(self) -> float:
        """FF averaged over every iteration of the step so far."""
        return float(self._total_flips.sum() / (self._sizes.sum() * max(self._count, 1)))


class C2IRatioCallback(AnalysisCallback):
    """C2I ratio per epoch against the signs at the start of the step and of the run.

    At the start of a step (no ``analysis/initial_signs.npz`` yet) the current signs are saved
    there; a resumed step reloads them. ``analysis/c2i.jsonl`` gets one record per epoch:
    ``{"epoch", "iteration", "step_start": {"global", "layers"}, "run_start": ... | null}``.
    The epoch logs get ``c2i`` (and ``c2i_run``).

    Arguments:
        log_dir: see `AnalysisCallback`.
        run_start_signs: step 1's ``initial_signs.npz`` when this is a later step of a
            multi-step run.
        layer_names: see `adambnn_larq.analysis.analysis_layers`.
        tensorboard: write ``c2i/step_start``, ``c2i/run_start`` and per-layer values.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        run_start_signs: str | os.PathLike | None = None,
        layer_names: Sequence[str] | None = None,
        tensorboard: bool = True,
    ):
        super().__init__(log_dir, tensorboard=tensorboard)
        self.run_start_signs = Path(run_start_signs) if run_start_signs is not None else None
        self.layer_names = layer_names

    def _setup(self) -> None:
        self._prepare()
        self._layers = analysis.analysis_layers(self.student, self.layer_names)
        self._write_layer_table(self._layers)
        self._latents = [analysis.latent_kernel(layer) for layer in self._layers]
        self._sizes = np.array([int(np.prod(v.shape)) for v in self._latents], dtype=np.int64)
        iteration = self.iteration()
        path = self.analysis_dir / INITIAL_SIGNS_FILE
        if path.exists():
            step_signs = analysis.match_signs(analysis.load_signs(path), self._layers, str(path))
        else:
            if iteration > 0:
                log.warning(
                    "%s is missing although training is at iteration %d: C2I against the step "
                    "start will use the signs of iteration %d",
                    path,
                    iteration,
                    iteration,
                )
            save_initial_signs(self.student, path, [layer.name for layer in self._layers])
            step_signs = [analysis.nonnegative(v.numpy()) for v in self._latents]
        self._references = [[tf.Variable(s, trainable=False) for s in step_signs]]
        if self.run_start_signs is not None:
            source = str(self.run_start_signs)
            run_signs = analysis.match_signs(
                analysis.load_signs(self.run_start_signs), self._layers, source
            )
            self._references.append([tf.Variable(s, trainable=False) for s in run_signs])
        self._count_same = tf.function(self._same_on_device, autograph=False)
        self._log = EpochLog(self.analysis_dir / C2I_FILE)
        self._log.load(iteration)

    def _same_on_device(self) -> tf.Tensor:
        rows = []
        for reference in self._references:
            rows.append(
                tf.stack(
                    [
                        tf.math.count_nonzero(
                            tf.equal(tf.greater_equal(latent, 0), signs), dtype=tf.int64
                        )
                        for latent, signs in zip(self._latents, reference)
                    ]
                )
            )
        return tf.stack(rows)

    def _measure(self, epochs_done: int, logs: dict | None) -> None:
        same = self._count_same().numpy()
        iteration = self.iteration()
        ratios = []
        for counts in same:
            per_layer = counts / self._sizes
            ratios.append(
                {
                    "global": float(counts.sum() / self._sizes.sum()),
                    "layers": {layer.name: float(r) for layer, r in zip(self._layers, per_layer)},
                }
            )
        run = ratios[1] if len(ratios) > 1 else None
        self._log.put(
            {
                "epoch": epochs_done,
                "iteration": iteration,
                "step_start": ratios[0],
                "run_start": run,
            }
        )
        values = {"c2i/step_start": ratios[0]["global"]}
        if run is not None:
            values["c2i/run_start"] = run["global"]
        for name, ratio in ratios[0]["layers"].items():
            values[f"c2i_layer/{name}"] = ratio
        self._scalars(values, epochs_done)
        if logs is not None:
            logs["c2i"] = ratios[0]["global"]
            if run is not None:
                logs["c2i_run"] = run["global"]

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if not self._log.has_iteration(self.iteration()):
            self._measure(epoch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._measure(epoch + 1, logs)
        self._flush_tensorboard()


class SaturationCallback(AnalysisCallback):
    """Activation saturation per sign activation, on a fixed batch, per epoch.

    The share of the inputs of each binary activation with \\(|a| >\\) ``threshold`` (where
    the ApproxSign/STE gradient is zero), measured in inference mode (BatchNorm uses its
    moving statistics and is not updated) on ``probe_images`` before the first epoch and after
    every epoch. ``analysis/saturation.jsonl``: ``{"epoch", "iteration", "threshold",
    "global", "layers": {<producer layer>: share}}``; "global" pools all sign inputs.

    Arguments:
        log_dir: see `AnalysisCallback`.
        probe_images: a fixed batch of training images (the same every epoch).
        threshold: the saturation bound (1 for ApproxSign and STE).
        batch_size: images per forward pass of the probe.
        tensorboard: write ``saturation/global`` and ``saturation/<layer>``.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        probe_images: np.ndarray,
        *,
        threshold: float = 1.0,
        batch_size: int = 64,
        tensorboard: bool = True,
    ):
        super().__init__(log_dir, tensorboard=tensorboard)
        self.probe_images = np.asarray(probe_images)
        if self.probe_images.ndim < 2 or len(self.probe_images) == 0:
            raise ValueError(
                f"probe_images must be a non-empty batch of images, got shape "
                f"{self.probe_images.shape}"
            )
        self.threshold = float(threshold)
        self.batch_size = batch_size

    def _setup(self) -> None:
        self._prepare()
        entries = analysis.sign_input_tensors(self.student)
        self._enabled = bool(entries)
        if not entries:
            log.warning(
                "model %r has no binary activations: no saturation to measure", self.student.name
            )
            return
        self._names = [name for name, _ in entries]
        probe = tf.keras.Model(self.student.inputs, [tensor for _, tensor in entries])
        threshold = self.threshold

        def count(images):
            outputs = probe(images, training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            saturated = [
                tf.math.count_nonzero(tf.abs(o) > threshold, dtype=tf.int64) for o in outputs
            ]
            sizes = [tf.size(o, out_type=tf.int64) for o in outputs]
            return tf.stack(saturated), tf.stack(sizes)

        # Follow the model: traced unless it trains eagerly (then tracing would cost more than
        # the few probe passes it speeds up).
        eager = getattr(self.model, "run_eagerly", False)
        self._count = count if eager else tf.function(count, autograph=False)
        self._log = EpochLog(self.analysis_dir / SATURATION_FILE)
        self._log.load(self.iteration())

    def measure(self) -> dict[str, float]:
        """Saturation per sign input on the probe batch now, by producer layer name."""
        saturated = np.zeros(len(self._names), dtype=np.int64)
        sizes = np.zeros(len(self._names), dtype=np.int64)
        for start in range(0, len(self.probe_images), self.batch_size):
            batch = tf.convert_to_tensor(
                self.probe_images[start : start + self.batch_size], tf.float32
            )
            counts, totals = self._count(batch)
            saturated += counts.numpy()
            sizes += totals.numpy()
        self._last_totals = (int(saturated.sum()), int(sizes.sum()))
        return {name: float(s / n) for name, s, n in zip(self._names, saturated, sizes)}

    def _record(self, epochs_done: int, logs: dict | None) -> None:
        layers = self.measure()
        saturated, size = self._last_totals
        overall = saturated / size
        self._log.put(
            {
                "epoch": epochs_done,
                "iteration": self.iteration(),
                "threshold": self.threshold,
                "global": overall,
                "layers": layers,
            }
        )
        values = {f"saturation/{name}": share for name, share in layers.items()}
        values["saturation/global"] = overall
        self._scalars(values, epochs_done)
        if logs is not None:
            logs["saturation"] = overall

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self._enabled and not self._log.has_iteration(self.iteration()):
            self._record(epoch, None)

    def on_epoch_end(self, epoch, logs=None):
        if self._enabled:
            self._record(epoch + 1, logs)
            self._flush_tensorboard()


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
        self._layers = analysis.analysis_layers(self.student, self.layer_names)
        self._write_layer_table(self._layers)
        self._latents = [analysis.latent_kernel(layer) for layer in self._layers]
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


class GradientStatisticsCallback(AnalysisCallback):
    """Dead weights per epoch, gradient norms and Adam's second moments per N steps.

    Reads the trainer's gradient contract: ``model.gradient_abs_max`` (one variable per
    analysed kernel, max |dL/dw| since ``model.reset_gradient_tracking()``, which this callback
    calls at the start of every epoch) and ``model.gradient_norms`` (the last step's L2 norm
    per kernel). Adam's \\(v\\) comes from the model's optimizer
    (`adambnn_larq.analysis.second_moment`).

    Outputs: ``analysis/optimizer_steps.csv`` every ``every_steps`` iterations
    (``iteration, epoch, grad_norm:<layer>..., v_mean:<layer>..., sqrt_v_mean:<layer>...``;
    the v columns are empty for optimizers without a second moment) and
    ``analysis/gradients.jsonl`` per epoch (``dead`` and ``zero`` shares per layer and
    global, with the threshold and the window's first iteration) with
    ``analysis/gradients/epoch_NNNN.npz`` holding ``log10_histogram/<layer>`` (see
    `adambnn_larq.analysis.gradient_log10_histogram`) and ``log10_edges``.

    Arguments:
        log_dir: see `AnalysisCallback`.
        dead_threshold: a weight is dead for the epoch when its max |dL/dw| stayed below this.
        every_steps: period of the gradient-norm/second-moment rows.
        tensorboard: write ``dead/``, ``grad_norm/`` and ``adam_v/`` scalars.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        dead_threshold: float = DEFAULT_DEAD_THRESHOLD,
        every_steps: int = 20,
        tensorboard: bool = True,
    ):
        super().__init__(log_dir, tensorboard=tensorboard)
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.dead_threshold = float(dead_threshold)
        self.every_steps = every_steps
        self._csv: StepCsv | None = None

    def _setup(self) -> None:
        missing = [
            name
            for name in ("gradient_abs_max", "gradient_norms", "reset_gradient_tracking")
            if not hasattr(self.model, name)
        ]
        if missing:
            raise ValueError(
                f"model {self.model.name!r} lacks {missing}: dead-weight and gradient statistics "
                "need a trainer that tracks gradients (BNNTrainer(track_gradients=True)); "
                "otherwise leave GradientStatisticsCallback out (paper_callbacks(gradients=False))"
            )
        self._prepare()
        (self.analysis_dir / GRADIENTS_DIR).mkdir(exist_ok=True)
        self._layers = analysis.analysis_layers(self.student)
        self._write_layer_table(self._layers)
        self._latents = [analysis.latent_kernel(layer) for layer in self._layers]
        trackers = list(self.model.gradient_abs_max)
        shapes = [tuple(v.shape) for v in self._latents]
        if [tuple(t.shape) for t in trackers] != shapes:
            raise ValueError(
                f"model.gradient_abs_max has shapes {[tuple(t.shape) for t in trackers]}, "
                f"expected one per analysed kernel: {shapes}"
            )
        self._trackers = trackers
        names = [layer.name for layer in self._layers]
        header = [
            "iteration",
            "epoch",
            *[f"grad_norm:{n}" for n in names],
            *[f"v_mean:{n}" for n in names],
            *[f"sqrt_v_mean:{n}" for n in names],
        ]
        iteration = self.iteration()
        if self._csv is not None:  # an earlier fit of this callback that did not end
            self._csv.close()
        self._csv = StepCsv(self.analysis_dir / OPTIMIZER_STEPS_FILE, header)
        self._csv.open(iteration)
        self._log = EpochLog(self.analysis_dir / GRADIENTS_FILE)
        self._log.load(iteration)
        self._moments_of = None
        self._window_start = iteration

    def _moment_statistics(self):
        if self._moments_of is None:
            moments = [analysis.second_moment(self.model.optimizer, v) for v in self._latents]
            if any(m is None for m in moments):
                self._moments_of = False
            else:
                # Plain Python loops only: no AutoGraph conversion needed.
                @tf.function(autograph=False)
                def statistics():
                    return tf.stack(
                        [tf.stack([tf.reduce_mean(m), tf.reduce_mean(tf.sqrt(m))]) for m in moments]
                    )

                self._moments_of = statistics
        return self._moments_of().numpy() if self._moments_of else None

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.model.reset_gradient_tracking()
        self._window_start = self.iteration()

    def on_train_batch_end(self, batch, logs=None):
        iteration = self.iteration()
        if iteration % self.every_steps:
            return
        norms = np.asarray(self.model.gradient_norms.numpy(), dtype=np.float64)
        moments = self._moment_statistics()
        empty = [None] * len(self._layers)
        v_mean = moments[:, 0] if moments is not None else empty
        sqrt_v = moments[:, 1] if moments is not None else empty
        self._csv.write([iteration, self._epoch + 1, *norms, *v_mean, *sqrt_v])
        values = {"grad_norm/global": float(np.sqrt(np.sum(norms**2)))}
        if moments is not None:
            sizes = np.array([np.prod(v.shape) for v in self._latents], dtype=np.float64)
            values["adam_v/mean"] = float(np.sum(moments[:, 0] * sizes) / sizes.sum())
        self._scalars(values, iteration)

    def on_epoch_end(self, epoch, logs=None):
        self._csv.flush()
        epochs_done = epoch + 1
        maxima = [t.numpy() for t in self._trackers]
        arrays: dict[str, np.ndarray] = {"log10_edges": analysis.GRADIENT_LOG10_EDGES}
        layers = {}
        dead_total = zero_total = size_total = 0
        for layer, values in zip(self._layers, maxima):
            dead = int(np.count_nonzero(values < self.dead_threshold))
            zero = int(np.count_nonzero(values == 0))
            dead_total, zero_total, size_total = (
                dead_total + dead,
                zero_total + zero,
                size_total + values.size,
            )
            layers[layer.name] = {
                "dead": dead / values.size,
                "zero": zero / values.size,
                "max": float(values.max()),
                "median": float(np.median(values)),
            }
            arrays[f"log10_histogram/{layer.name}"] = analysis.gradient_log10_histogram(values)
        atomic_write_bytes(
            epoch_archive(self.analysis_dir / GRADIENTS_DIR, epochs_done), npz_bytes(arrays)
        )
        overall = {"dead": dead_total / size_total, "zero": zero_total / size_total}
        self._log.put(
            {
                "epoch": epochs_done,
                "iteration": self.iteration(),
                "window_start_iteration": self._window_start,
                "threshold": self.dead_threshold,
                "global": overall,
                "layers": layers,
            }
        )
        values = {f"dead/{name}": stats["dead"] for name, stats in layers.items()}
        values["dead/global"] = overall["dead"]
        self._scalars(values, epochs_done)
        if logs is not None:
            logs["dead_weights"] = overall["dead"]
        self._flush_tensorboard()

    def _continue_training(self) -> None:
        self._csv.reopen()

    def _finish(self) -> None:
        if self._csv is not None:
            self._csv.close()
        self._flush_tensorboard()


def paper_callbacks(
    *,
    log_dir: str | os.PathLike,
    probe_images: np.ndarray,
    run_start_signs: str | os.PathLike | None = None,
    layer_names: Sequence[str] | None = None,
    gradients: bool = True,
    dead_threshold: float = DEFAULT_DEAD_THRESHOLD,
    optimizer_every_steps: int = 20,
    saturation_threshold: float = 1.0,
    histogram_range: tuple[float, float] = analysis.DEFAULT_HISTOGRAM_RANGE,
    histogram_bins: int = analysis.DEFAULT_HISTOGRAM_BINS,
    tensorboard: bool = True,
) -> list[tf.keras.callbacks.Callback]:
    """All analysis callbacks of one training step, in the order they should run.

    FF every iteration; C2I, saturation, CAM/SDAM, histograms and dead weights per epoch;
    gradient norms and Adam's second moments every ``optimizer_every_steps`` iterations. Put
    them before checkpointing and CSV-logging callbacks so that the epoch logs they add
    (``ff_ratio``, ``ff_ratio_mean``, ``c2i``, ``c2i_run``, ``saturation``, ``dead_weights``)
    reach those.

    Arguments:
        log_dir: the step's directory (outputs under ``analysis/`` and
            ``tensorboard/analysis``).
        probe_images: a fixed batch of training images for the saturation statistic.
        run_start_signs: for step 2 of a two-step run, step 1's
            ``analysis/initial_signs.npz``.
        layer_names: kernels to analyse (default `adambnn_larq.analysis.analysis_layers`);
            the gradient statistics always follow the trainer's tracked kernels.
        gradients: include `GradientStatisticsCallback` (needs the trainer's gradient
            tracking).
        dead_threshold: see `GradientStatisticsCallback`.
        optimizer_every_steps: see `GradientStatisticsCallback`.
        saturation_threshold: see `SaturationCallback`.
        histogram_range: see `WeightStatisticsCallback`.
        histogram_bins: see `WeightStatisticsCallback`.
        tensorboard: write TensorBoard summaries.

    Returns:
        The callbacks, to pass to ``model.fit(callbacks=...)``.
    """
    callbacks: list[tf.keras.callbacks.Callback] = [
        FlipRatioCallback(log_dir, layer_names=layer_names, tensorboard=tensorboard),
        C2IRatioCallback(
            log_dir,
            run_start_signs=run_start_signs,
            layer_names=layer_names,
            tensorboard=tensorboard,
        ),
        SaturationCallback(
            log_dir, probe_images, threshold=saturation_threshold, tensorboard=tensorboard
        ),
        WeightStatisticsCallback(
            log_dir,
            layer_names=layer_names,
            histogram_range=histogram_range,
            histogram_bins=histogram_bins,
            tensorboard=tensorboard,
        ),
    ]
    if gradients:
        callbacks.append(
            GradientStatisticsCallback(
                log_dir,
                dead_threshold=dead_threshold,
                every_steps=optimizer_every_steps,
                tensorboard=tensorboard,
            )
        )
    return callbacks
