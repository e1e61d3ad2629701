"""The C2I ratio per epoch (`C2IRatioCallback`) and the initial signs it compares with
(`save_initial_signs`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from adambnn_larq import analysis
from adambnn_larq.callbacks.base import AnalysisCallback
from adambnn_larq.rundir import (
    C2I_FILE,
    INITIAL_SIGNS_FILE,
    EpochLog,
    atomic_write_bytes,
    npz_bytes,
)

log = logging.getLogger(__name__)


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
        self._select_layers(self.layer_names)
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
