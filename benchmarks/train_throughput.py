"""Training throughput: images/s of AdamBNN's step-1 and step-2 training steps, with and
without XLA (``jit_compile``), or at several batch sizes, side by side in one run.

Every configuration is a real recipe step: `BNNTrainer` with distillation from the recipe's
teacher (the small real-valued CNN for the small variant, ResNet-34 for ReActNet-A), Adam with
the per-epoch linear schedule, coupled L2 decay 5e-6 in step 1 and none in step 2. Step 1 has
binary activations and real weights, step 2 binary weights too. Inputs are random images of
the right shape (throughput does not depend on their values).

The compiled trainers of one (model, step) pair are timed in alternating rounds, so a change
in the machine's load hits both the XLA and the non-XLA figure alike; the ratio is the number
to trust on a shared machine. Each step runs Keras's train function on one persistent
iterator (`persistent_steps`), not `train_on_batch`, whose per-call iterator made the step
times of the tables up to 2026-12-02 bimodal.

Usage::

    python benchmarks/train_throughput.py                       # both models, ~20 min on 2 cores
    python benchmarks/train_throughput.py --models small --steps 20
    python benchmarks/train_throughput.py --models cifar10   # the CIFAR-10 recipe's network
    python benchmarks/train_throughput.py --output throughput.json
    python benchmarks/train_throughput.py --models fashion_mnist --batch-sizes 64,128  # ~3 min

``--batch-sizes`` compares batch sizes instead of XLA (without it): the question a recipe's
batch size answers on a CPU is whether a smaller batch, more updates an epoch, costs
throughput. ``fashion_mnist`` is the demo recipe's network as it trains there, from the
teacher's cached logits (``augment=false``: no teacher in the step).

The kernels are the library's default (oneDNN's, `adambnn_larq._compat.prefer_onednn`); the
tables measured before that default (docs/results/train-throughput.md, up to 2026-12-01)
reproduce with ``TF_ENABLE_ONEDNN_OPTS=0``, and ``benchmarks/onednn.py`` compares the two.

Prints, per model and step, the median step time and images/s without and with XLA and the
XLA speed-up (of the medians and of the fastest steps); ``--output`` also writes every timing
as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

# Before TensorFlow: selects Keras 2 (larq needs it) and oneDNN's kernels, as in training.
import adambnn_larq  # noqa: F401

# isort: split
import numpy as np
import tensorflow as tf

from adambnn_larq import ReActNetA, ReActNetSmall
from adambnn_larq.hostinfo import cpu_model_name, onednn_enabled
from adambnn_larq.optim import learning_rate_schedule, make_optimizer
from adambnn_larq.teachers import ResNet34, SmallTeacher
from adambnn_larq.trainer import BNNTrainer

#: name -> (student builder, teacher builder, input shape, classes, default batch)
MODELS = {
    # The Fashion-MNIST recipe's network until 2026-11-30 (docs/results/train-throughput.md).
    "small": (
        lambda **kw: ReActNetSmall(
            width_multiplier=0.125, kernel_initializer="pytorch_default", **kw
        ),
        lambda shape, classes: SmallTeacher(input_shape=shape, num_classes=classes),
        (28, 28, 1),
        10,
        128,
    ),
    # The Fashion-MNIST recipe's network now (recipes/adambnn_fashion_mnist.py); no teacher
    # builder: it trains from cached teacher logits.
    "fashion_mnist": (
        lambda **kw: ReActNetSmall(
            width_multiplier=0.25,
            num_downsamplings=3,
            kernel_initializer="pytorch_default",
            **kw,
        ),
        None,
        (32, 32, 1),
        10,
        64,
    ),
    # The CIFAR-10 recipe's network (recipes/adambnn_cifar10.py) and its wider teacher.
    "cifar10": (
        lambda **kw: ReActNetSmall(
            width_multiplier=0.5, num_downsamplings=3, kernel_initializer="pytorch_default", **kw
        ),
        lambda shape, classes: SmallTeacher(input_shape=shape, num_classes=classes, width=64),
        (32, 32, 3),
        10,
        128,
    ),
    # The paper's network at its ImageNet resolution.
    "reactnet_a": (
        lambda **kw: ReActNetA(**kw),
        lambda shape, classes: ResNet34(input_shape=shape, num_classes=classes),
        (224, 224, 3),
        1000,
        8,
    ),
}

#: step -> (binary weights, weight decay): AdamBNN's two steps.
STEPS = {"step1": (False, 5e-6), "step2": (True, 0.0)}


def make_trainer(model: str, step: str, *, jit_compile: bool, teacher: tf.keras.Model | None):
    build, _, shape, classes, _ = MODELS[model]
    binary_weights, weight_decay = STEPS[step]
    student = build(input_shape=shape, num_classes=classes, binary_weights=binary_weights)
    trainer = BNNTrainer(student, teacher=teacher, weight_decay=weight_decay)
    schedule = learning_rate_schedule("linear", 1.25e-3, epochs=256, steps_per_epoch=1000)
    trainer.compile(make_optimizer("adam", schedule), jit_compile=jit_compile)
    return trainer


def persistent_steps(model: tf.keras.Model, batch: tuple) -> Callable[[], dict]:
    """A function that runs one training step of ``model`` on ``batch`` per call, through one
    persistent iterator over the repeated batch and Keras's own compiled train function.

    Not `train_on_batch`: it builds a new `tf.data` iterator every call, and the call returns
    only when a helper thread of that iterator wakes from a sleep of doubling timeouts (20,
    40, ... 5,120 ms), with both CPUs idle meanwhile. Its step times snap to 10·(2^k − 1) ms and
    measure that wait, not the computation (docs/results/train-throughput.md, "Method").
    ``fit`` keeps one iterator per epoch, as this does.
    """
    function = model.make_train_function()
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return lambda: function(iterator)


def step_times(trainer, batch: tuple, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps on the same batch, after one untimed step.

    ``batch`` is ``(images, labels)`` or ``(images, labels, teacher_logits)`` (Keras passes a
    third element through to `BNNTrainer.train_step` as the cached logits). The first step
    after switching trainers is slower (caches and the memory pool belong to the other
    trainer's step until then, and a new iterator starts), so each round starts with a step
    it does not time.
    """
    step = persistent_steps(trainer, batch)
    step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        # Reading the loss waits for the step's result, as train_on_batch's numpy logs did.
        loss = float(step()["loss"])
        times.append(time.perf_counter() - started)
    if not np.isfinite(loss):
        raise RuntimeError(f"the loss is {loss}: the benchmark is not training")
    return times


def random_batch(model: str, batch_size: int) -> tuple:
    """Random inputs of the model's shape (throughput does not depend on their values), with
    random teacher logits for a model that trains from cached ones."""
    _, build_teacher, shape, classes, _ = MODELS[model]
    rng = np.random.default_rng(0)
    batch = (
        rng.standard_normal((batch_size, *shape), dtype=np.float32),
        rng.integers(0, classes, batch_size),
    )
    if build_teacher is None:
        batch += (rng.standard_normal((batch_size, classes), dtype=np.float32),)
    return batch


def _teacher(model: str) -> tf.keras.Model | None:
    _, build_teacher, shape, classes, _ = MODELS[model]
    return None if build_teacher is None else build_teacher(shape, classes)


def _step_statistics(times: list[float], batch_size: int) -> dict:
    median = statistics.median(times)
    return {
        "median_step_s": median,
        "fastest_step_s": min(times),
        "images_per_second": batch_size / median,
        "fastest_images_per_second": batch_size / min(times),
        "step_times_s": times,
    }


def _alternating_times(trainers: dict, batches: dict, steps: int, rounds: int) -> dict:
    """Step times of each trainer on its batch, timed in alternating rounds, so that a change
    in the machine's load hits every configuration alike."""
    times = {key: [] for key in trainers}
    for _ in range(rounds):
        for key, trainer in trainers.items():
            times[key] += step_times(trainer, batches[key], steps)
    return times


def benchmark_batch_sizes(
    model: str, step: str, *, batch_sizes: list[int], steps: int, rounds: int
) -> dict:
    """Images/s of one (model, step) at each batch size, without XLA, in alternating rounds."""
    teacher = _teacher(model)
    trainers, batches = {}, {}
    for batch_size in batch_sizes:
        tf.keras.utils.set_random_seed(0)
        print(f"  {model} {step}: building and compiling, batch {batch_size}", flush=True)
        trainers[batch_size] = make_trainer(model, step, jit_compile=False, teacher=teacher)
        batches[batch_size] = random_batch(model, batch_size)
        step_times(trainers[batch_size], batches[batch_size], 1)  # tracing
    times = _alternating_times(trainers, batches, steps, rounds)
    return {
        "model": model,
        "step": step,
        "input_shape": MODELS[model][2],
        "batch_sizes": {size: _step_statistics(times[size], size) for size in batch_sizes},
    }


def benchmark(model: str, step: str, *, batch_size: int, steps: int, rounds: int) -> dict:
    batch = random_batch(model, batch_size)
    teacher = _teacher(model)
    trainers, compile_seconds = {}, {}
    for jit in (False, True):
        tf.keras.utils.set_random_seed(0)
        print(f"  {model} {step}: building and compiling, XLA {'on' if jit else 'off'}", flush=True)
        started = time.perf_counter()
        trainers[jit] = make_trainer(model, step, jit_compile=jit, teacher=teacher)
        step_times(trainers[jit], batch, 1)  # tracing (and XLA compilation)
        compile_seconds[jit] = time.perf_counter() - started
    times = _alternating_times(trainers, {False: batch, True: batch}, steps, rounds)
    shape = MODELS[model][2]
    result = {"model": model, "step": step, "batch_size": batch_size, "input_shape": shape}
    for jit, name in ((False, "no_xla"), (True, "xla")):
        result[name] = {
            **_step_statistics(times[jit], batch_size),
            "build_and_compile_s": compile_seconds[jit],
        }
    result["xla_speedup"] = result["no_xla"]["median_step_s"] / result["xla"]["median_step_s"]
    # Kept for the results measured with train_on_batch (up to 2026-12-02), whose per-call
    # iterator wait reached the median; with a persistent iterator both ratios should agree.
    result["xla_speedup_fastest"] = (
        result["no_xla"]["fastest_step_s"] / result["xla"]["fastest_step_s"]
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="small,reactnet_a", help="comma-separated")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--batch-size", type=int, help="default: 128 small/cifar10, 8 ReActNet-A")
    parser.add_argument(
        "--batch-sizes", help="comma-separated: compare these batch sizes (no XLA) instead"
    )
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    models = args.models.split(",")
    for model in models:
        if model not in MODELS:
            parser.error(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    try:
        batch_sizes = [int(size) for size in (args.batch_sizes or "").split(",") if size]
    except ValueError:
        parser.error(f"--batch-sizes takes comma-separated integers, got {args.batch_sizes!r}")

    print(
        f"TensorFlow {tf.__version__} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.rounds} rounds of {args.steps} steps per configuration",
        flush=True,
    )
    results = []
    if batch_sizes:
        for model in models:
            for step in STEPS:
                result = benchmark_batch_sizes(
                    model, step, batch_sizes=batch_sizes, steps=args.steps, rounds=args.rounds
                )
                results.append(result)
                print(_batch_line(result), flush=True)
        _write(args.output, results)
        return
    for model in models:
        batch_size = args.batch_size or MODELS[model][4]
        for step in STEPS:
            result = benchmark(
                model, step, batch_size=batch_size, steps=args.steps, rounds=args.rounds
            )
            results.append(result)
            no_xla, xla = result["no_xla"], result["xla"]
            print(
                f"{model} {step} (batch {batch_size}, {result['input_shape']}): "
                f"{no_xla['images_per_second']:.1f} img/s without XLA "
                f"({no_xla['median_step_s'] * 1e3:.0f} ms/step), "
                f"{xla['images_per_second']:.1f} img/s with XLA "
                f"({xla['median_step_s'] * 1e3:.0f} ms/step): XLA speed-up "
                f"{result['xla_speedup']:.2f}x (fastest steps: "
                f"{result['xla_speedup_fastest']:.2f}x); build+compile "
                f"{no_xla['build_and_compile_s']:.0f} s / {xla['build_and_compile_s']:.0f} s",
                flush=True,
            )
    _write(args.output, results)


def _batch_line(result: dict) -> str:
    sizes = result["batch_sizes"]
    first = next(iter(sizes.values()))
    parts = [
        f"batch {size}: {r['images_per_second']:.1f} img/s ({r['median_step_s'] * 1e3:.0f} "
        f"ms/step; {r['images_per_second'] / first['images_per_second']:.2f}x, fastest "
        f"steps {r['fastest_images_per_second'] / first['fastest_images_per_second']:.2f}x)"
        for size, r in sizes.items()
    ]
    return f"{result['model']} {result['step']} ({result['input_shape']}): " + "; ".join(parts)


def _write(path: str | None, results: list[dict]) -> None:
    if path:
        with open(path, "w") as file:
            json.dump(
                {
                    "tensorflow": tf.__version__,
                    "cpu": cpu_model_name(),
                    "onednn": onednn_enabled(),
                    "results": results,
                },
                file,
                indent=2,
            )


if __name__ == "__main__":
    main()
