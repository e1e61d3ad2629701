"""Dead weights, gradient norms and Adam's second moments: `GradientStatisticsCallback`."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from adambnn_larq import analysis
from adambnn_larq.callbacks.base import StepCsvCallback
from adambnn_larq.rundir import (
    GRADIENTS_DIR,
    GRADIENTS_FILE,
    OPTIMIZER_STEPS_FILE,
    EpochLog,
    atomic_write_bytes,
    epoch_archive,
    npz_bytes,
)

#: A latent weight is "dead" for an epoch when its largest |dL/dw| stayed below this. The
#: per-epoch log10 histograms of max |dL/dw| allow any other threshold afterwards.
DEFAULT_DEAD_THRESHOLD: float = 1e-8


class GradientStatisticsCallback(StepCsvCallback):
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
        self._select_layers()
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
        self._open_step_csv(OPTIMIZER_STEPS_FILE, header, iteration)
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
