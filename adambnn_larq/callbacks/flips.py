"""The flip-flop (FF) ratio of every iteration: `FlipRatioCallback`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from adambnn_larq.callbacks.base import StepCsvCallback
from adambnn_larq.rundir import FF_STEPS_FILE

log = logging.getLogger(__name__)


class FlipRatioCallback(StepCsvCallback):
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

    def _setup(self) -> None:
        self._prepare()
        self._select_layers(self.layer_names)
        self._previous = [
            tf.Variable(tf.greater_equal(v, 0), trainable=False, name="previous_signs")
            for v in self._latents
        ]
        self._count_flips = tf.function(self._flips_on_device, autograph=False)
        names = [layer.name for layer in self._layers]
        header = ["iteration", "epoch", "ff", "ff_mean", *[f"flips:{n}" for n in names]]
        self._last_iteration = self.iteration()
        rows = self._open_step_csv(FF_STEPS_FILE, header, self._last_iteration)
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

    @property
    def running_mean(self) -> float:
        """FF averaged over every iteration of the step so far."""
        return float(self._total_flips.sum() / (self._sizes.sum() * max(self._count, 1)))
