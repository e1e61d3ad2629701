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

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from adambnn_larq import analysis
from adambnn_larq.callbacks.base import AnalysisCallback
from adambnn_larq.callbacks.c2i import C2IRatioCallback, save_initial_signs
from adambnn_larq.callbacks.flips import FlipRatioCallback
from adambnn_larq.callbacks.gradients import DEFAULT_DEAD_THRESHOLD, GradientStatisticsCallback
from adambnn_larq.callbacks.saturation import SaturationCallback
from adambnn_larq.callbacks.weights import WeightStatisticsCallback

__all__ = [
    "DEFAULT_DEAD_THRESHOLD",
    "AnalysisCallback",
    "C2IRatioCallback",
    "FlipRatioCallback",
    "GradientStatisticsCallback",
    "SaturationCallback",
    "WeightStatisticsCallback",
    "paper_callbacks",
    "save_initial_signs",
]


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
