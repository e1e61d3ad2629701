"""Cost of the analysis callbacks: training with and without `paper_callbacks`, side by side.

Trains the small variant (``ReActNetSmall``, default width 0.25 on 28x28x1, binary weights)
with a gradient-tracking trainer and alternates fits without and with the callbacks on the
same compiled model. Inside every fit the first epoch is a warm-up (callback tracing, first
probe pass); the later epochs are timed, per batch (from the first callback's
``on_train_batch_begin`` to the last callback's ``on_train_batch_end``, so every callback's
batch hook is included) and per epoch (including the per-epoch statistics).

Usage::

    python benchmarks/callback_overhead.py [--steps-per-epoch 40] [--epochs 3] [--repeats 2]

Prints the median step time and mean epoch time of both configurations and their ratios, and
the share of the timed epochs spent inside the analysis callbacks' hooks (measured within the
same epochs, so it does not suffer from the drift between fits of a shared machine); the issue
asks for an overhead below 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

# larq needs Keras 2: select it before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import tensorflow as tf

from adambnn_larq import ReActNetSmall
from adambnn_larq.callbacks import paper_callbacks
from adambnn_larq.trainer import BNNTrainer


class _Clock(tf.keras.callbacks.Callback):
    """Time stamps; one instance goes first in the callback list, one last."""

    def __init__(self, first: bool):
        super().__init__()
        self.first = first
        self.batch_begin: list[float] = []
        self.batch_end: list[float] = []
        self.step_end: list[float] = []
        self.epoch_begin: list[float] = []
        self.epoch_end: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        if self.first:
            self.batch_begin.append(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        # The first clock's batch end comes before every other callback's: the step alone.
        (self.step_end if self.first else self.batch_end).append(time.perf_counter())

    def on_epoch_begin(self, epoch, logs=None):
        if self.first:
            self.epoch_begin.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        if not self.first:
            self.epoch_end.append(time.perf_counter())


class _Timed(tf.keras.callbacks.Callback):
    """Forwards every hook to ``inner`` and adds up the time spent in it, per hook kind."""

    _HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_end", "on_epoch_end")

    def __init__(self, inner: tf.keras.callbacks.Callback):
        super().__init__()
        self.inner = inner
        self._supports_tf_logs = getattr(inner, "_supports_tf_logs", False)
        self.seconds = {hook: 0.0 for hook in self._HOOKS}
        self.by_epoch: dict[int, float] = {}  # -1: on_train_begin
        self._epoch = -1

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def _call(self, hook, *args):
        started = time.perf_counter()
        getattr(self.inner, hook)(*args)
        spent = time.perf_counter() - started
        self.seconds[hook] += spent
        self.by_epoch[self._epoch] = self.by_epoch.get(self._epoch, 0.0) + spent

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self.inner.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)


def timed_fit(trainer, images, labels, *, batch_size, epochs, callbacks):
    head, tail = _Clock(first=True), _Clock(first=False)
    trainer.fit(
        images,
        labels,
        batch_size=batch_size,
        epochs=epochs + 1,
        shuffle=False,
        verbose=0,
        callbacks=[head, *callbacks, tail],
    )
    steps = len(images) // batch_size
    batch = [e - b for b, e in zip(head.batch_begin, tail.batch_end)][steps:]  # skip warm-up
    step_only = [e - b for b, e in zip(head.batch_begin, head.step_end)][steps:]
    epoch = [e - b for b, e in zip(head.epoch_begin, tail.epoch_end)][1:]
    return batch, step_only, epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width-multiplier", type=float, default=0.25)
    parser.add_argument("--input-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per fit")
    parser.add_argument("--repeats", type=int, default=2, help="fits per configuration")
    parser.add_argument("--probe-images", type=int, default=64)
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()

    tf.keras.utils.set_random_seed(0)
    size = args.input_size
    student = ReActNetSmall(
        input_shape=(size, size, 1), width_multiplier=args.width_multiplier, binary_weights=True
    )
    trainer = BNNTrainer(student, track_gradients=True)
    trainer.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    count = args.batch_size * args.steps_per_epoch
    images = rng.random((count, size, size, 1), dtype=np.float32)
    labels = rng.integers(0, 10, count)
    probe = images[: args.probe_images]
    print(
        f"ReActNetSmall(width {args.width_multiplier}, {size}x{size}x1), batch {args.batch_size}, "
        f"{args.steps_per_epoch} steps/epoch, {args.epochs} timed epochs x {args.repeats} fits "
        "per configuration; trainer: BNNTrainer(track_gradients=True)",
        flush=True,
    )
    started = time.perf_counter()
    # Trace the train function once before any timing.
    trainer.fit(images[: args.batch_size], labels[: args.batch_size], epochs=1, verbose=0)
    print(f"first fit (tracing): {time.perf_counter() - started:.1f} s", flush=True)

    results = {name: {"batch": [], "step_only": [], "epoch": []} for name in ("without", "with")}
    results["inside_callbacks"], results["with_epoch_for_inside"] = [], []
    with tempfile.TemporaryDirectory() as log_root:
        for repeat in range(args.repeats):
            for name in ("without", "with"):
                callbacks = (
                    [
                        _Timed(c)
                        for c in paper_callbacks(
                            log_dir=Path(log_root) / f"r{repeat}", probe_images=probe
                        )
                    ]
                    if name == "with"
                    else []
                )
                batch, step_only, epoch = timed_fit(
                    trainer,
                    images,
                    labels,
                    batch_size=args.batch_size,
                    epochs=args.epochs,
                    callbacks=callbacks,
                )
                results[name]["batch"] += batch
                results[name]["step_only"] += step_only
                results[name]["epoch"] += epoch
                if callbacks:
                    # Seconds inside the callbacks during the timed epochs (warm-up excluded).
                    inside = [
                        sum(t.by_epoch.get(e, 0.0) for t in callbacks)
                        for e in range(1, args.epochs + 1)
                    ]
                    results["inside_callbacks"] += inside
                    results["with_epoch_for_inside"] += epoch
                for timed in callbacks:  # every epoch of the fit, warm-up included
                    spent = ", ".join(f"{h} {t:.2f} s" for h, t in timed.seconds.items() if t)
                    print(f"    {type(timed.inner).__name__}: {spent}", flush=True)
                print(
                    f"  repeat {repeat + 1}, {name:7s} callbacks: median step "
                    f"{1e3 * statistics.median(batch):.1f} ms "
                    f"(train step alone {1e3 * statistics.median(step_only):.1f} ms), "
                    f"mean epoch {statistics.mean(epoch):.2f} s",
                    flush=True,
                )
    configurations = ("without", "with")
    step = {k: statistics.median(results[k]["batch"]) for k in configurations}
    step_only = {k: statistics.median(results[k]["step_only"]) for k in configurations}
    epoch = {k: statistics.mean(results[k]["epoch"]) for k in configurations}
    inside = sum(results["inside_callbacks"]) / sum(results["with_epoch_for_inside"])
    summary = {
        "trainer": "BNNTrainer(track_gradients=True)",
        "config": vars(args),
        "median_step_s": step,
        "median_train_step_alone_s": step_only,
        "mean_epoch_s": epoch,
        "step_ratio": step["with"] / step["without"],
        "epoch_ratio": epoch["with"] / epoch["without"],
        "share_of_epoch_inside_callbacks": inside,
    }
    print(
        f"median step: {1e3 * step['without']:.1f} ms without, {1e3 * step['with']:.1f} ms with "
        f"callbacks: ratio {summary['step_ratio']:.3f}"
    )
    print(
        f"mean epoch ({args.steps_per_epoch} steps, per-epoch statistics included): "
        f"{epoch['without']:.2f} s without, {epoch['with']:.2f} s with: "
        f"ratio {summary['epoch_ratio']:.3f}"
    )
    print(
        f"time inside the analysis callbacks: {100 * inside:.2f} % of the timed epochs "
        f"with callbacks (overhead ratio {1 / (1 - inside):.3f})"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
