"""The shared base of the analysis callbacks and their TensorBoard writers.

See `adambnn_larq.callbacks` for the conventions every callback follows.
"""

from __future__ import annotations

import json
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
    LAYERS_FILE,
    TENSORBOARD_DIR,
    StepCsv,
    atomic_write_text,
)

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

    def _select_layers(self, layer_names: Sequence[str] | None = None) -> None:
        """The binary layers analysed (``_layers``), their latent kernels (``_latents``) and
        sizes (``_sizes``), recorded in ``layers.json``."""
        self._layers = analysis.analysis_layers(self.student, layer_names)
        self._write_layer_table(self._layers)
        self._latents = [analysis.latent_kernel(layer) for layer in self._layers]
        self._sizes = np.array([int(np.prod(v.shape)) for v in self._latents], dtype=np.int64)

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


class StepCsvCallback(AnalysisCallback):
    """An analysis callback that writes a row a training iteration into one `StepCsv`, kept
    open across the fit calls of one training and closed when it ends."""

    def __init__(self, log_dir: str | os.PathLike, *, tensorboard: bool = True):
        super().__init__(log_dir, tensorboard=tensorboard)
        self._csv: StepCsv | None = None

    def _open_step_csv(self, name: str, header: list[str], iteration: int) -> list:
        """(Re)open ``analysis/name`` at ``iteration``; returns its rows up to there."""
        if self._csv is not None:  # an earlier fit of this callback that did not end
            self._csv.close()
        self._csv = StepCsv(self.analysis_dir / name, header)
        return self._csv.open(iteration)

    def _continue_training(self) -> None:
        self._csv.reopen()

    def _finish(self) -> None:
        if self._csv is not None:
            self._csv.close()
        self._flush_tensorboard()
