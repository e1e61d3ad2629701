"""The activation saturation per sign activation: `SaturationCallback`."""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from adambnn_larq import analysis
from adambnn_larq.callbacks.base import AnalysisCallback
from adambnn_larq.rundir import SATURATION_FILE, EpochLog

log = logging.getLogger(__name__)


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
