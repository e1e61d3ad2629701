"""Single-image inference latency on this host: LCE binary models against float TFLite.

One table, measured in one run of this script:

- ReActNet-A (this project's step-2 network, random weights) converted with LCE, timed with
  LCE's default binary-conv kernel and with the indirect BGEMM kernel;
- the same architecture with ordinary float convs (`adambnn_larq.deploy.benchmark.float_baseline`),
  converted with ``tf.lite.TFLiteConverter``;
- larq-zoo QuickNet and QuickNetLarge (``weights=None``), converted and timed the same way,
  each beside its own float baseline.

Every model is timed in the LCE interpreter
(`adambnn_larq.deploy.benchmark.time_interpreter`): batch 1,
warm-up runs, then the median and p90 of the timed runs. The ratio column is float median /
this median (above 1: faster than float). Latency does not depend on the weight values.

On x86 the LCE kernels are not the optimized ARM ones, so these ratios say nothing about a
Raspberry Pi; see docs/deployment.md for the published Pi numbers and how to measure your own.

Optionally (``--numerics``, on by default) a short-fitted ReActNet-A is converted and compared
with Keras on smooth random images, next to Keras' own sensitivity to a 1e-6 relative change
of its input (what sign flips of near-zero activations do to a binary network).

Usage:
    python benchmarks/inference.py [--runs 20] [--warmup 3] [--threads 1] [--no-numerics]
        [--output benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import adambnn_larq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import adambnn_larq as ab  # noqa: E402
from adambnn_larq import deploy as lce  # noqa: E402
from adambnn_larq.config import CONVERSION_ROUTES  # noqa: E402
from adambnn_larq.deploy import benchmark  # noqa: E402

MODELS = ("reactnet_a", "quicknet", "quicknet_large")


def build(name: str) -> tf.keras.Model:
    if name == "reactnet_a":
        model = ab.ReActNetA()
        # The reference init U[0, 1e-3) makes every binary filter all +1; the converter then
        # stores identical bitpacked filters once, and the file looks 3.6 MB smaller than a
        # trained one. Random signs give the size of a real model.
        rng = np.random.default_rng(0)
        for layer in ab.binary_conv_layers(model):
            layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
        return model
    import larq_zoo as lqz

    return {"quicknet": lqz.sota.QuickNet, "quicknet_large": lqz.sota.QuickNetLarge}[name](
        weights=None
    )


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_model(name: str, args: argparse.Namespace) -> list[dict]:
    """Convert ``name`` both ways and time every configuration; one row per configuration."""
    start = time.monotonic()
    model = build(name)
    say(f"[{name}] built in {time.monotonic() - start:.0f} s")
    converted = lce.convert_model(model, route=args.route, progress=True)
    say(
        f"[{name}] LCE: {converted.census.get('LceBconv2d', 0)} LceBconv2d of "
        f"{len(converted.binary_convs)} binary convs, {converted.size_bytes / 1e6:.2f} MB"
    )
    for warning in converted.warnings:
        say(f"[{name}] warning: {warning}")
    start = time.monotonic()
    float_flatbuffer = benchmark.convert_float_tflite(benchmark.float_baseline(model))
    say(
        f"[{name}] float TFLite: {len(float_flatbuffer) / 1e6:.2f} MB "
        f"in {time.monotonic() - start:.0f} s"
    )
    configurations = [
        benchmark.Configuration(flatbuffer, label, kernel, threads, xnnpack)
        for threads in args.threads
        for xnnpack in args.xnnpack
        for flatbuffer, label, kernel in (
            (converted.flatbuffer, "lce", "default"),
            (converted.flatbuffer, "lce", "indirect_bgemm"),
            (float_flatbuffer, "float", "float"),
        )
    ]
    # Interleaved rounds: load changes on a shared machine hit every configuration alike.
    timings = benchmark.time_configurations(
        configurations, warmup=args.warmup, runs=args.runs, rounds=args.rounds, progress=True
    )
    rows = []
    for timing in timings:
        reference = next(
            t
            for t in timings
            if t.name == "float" and t.threads == timing.threads and t.xnnpack == timing.xnnpack
        )
        is_float = timing.name == "float"
        rows.append(
            {
                "model": name,
                "variant": "float TFLite" if is_float else "LCE",
                "size_bytes": len(float_flatbuffer) if is_float else converted.size_bytes,
                "lce_bconv2d": 0 if is_float else converted.census.get("LceBconv2d", 0),
                "float_over_this": reference.median_ms / timing.median_ms,
                **{k: v for k, v in vars(timing).items() if k != "name"},
            }
        )
    return rows


def numerics(args: argparse.Namespace) -> dict:
    """ReActNet-A after a short fit: LCE vs Keras, and Keras vs Keras on a perturbed input."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = ab.ReActNetA()

    def smooth(n):
        coarse = rng.uniform(-1, 1, (n, 28, 28, 3)).astype(np.float32)
        return tf.image.resize(coarse, (224, 224)).numpy()

    bn_class = tf.keras.layers.BatchNormalization
    norms = [layer for layer in model.layers if isinstance(layer, bn_class)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become those of the fit batch
    model.compile(
        tf.keras.optimizers.Adam(1e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    model.fit(smooth(4), rng.integers(0, 1000, 4), batch_size=4, epochs=1, verbose=0)
    for layer in norms:
        layer.momentum = 0.9
    converted = lce.convert_model(model, route=args.route, progress=True)
    inputs = smooth(args.numerics_samples)
    result = lce.verify_conversion(model, converted.flatbuffer, inputs)
    keras = lce.keras_predict(model, inputs)
    perturbed = lce.keras_predict(model, inputs * np.float32(1 + 1e-6))
    sensitivity = np.abs(perturbed - keras).reshape(len(inputs), -1).max(axis=1)
    say(result.summary())
    return {
        "samples": len(inputs),
        "lce_vs_keras_max_abs_diff_per_sample": result.per_sample_max_abs_diff,
        "keras_vs_keras_1e-6_input_change_per_sample": [float(v) for v in sensitivity],
        "top1_agreement": result.top1_agreement,
        "logit_std": float(keras.std()),
        "passed_lce_criterion": result.passed,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | variant | kernel | threads | XNNPACK | median ms | p90 ms | float / this "
        "| size MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['kernel']} | {row['threads']} | "
            f"{'on' if row['xnnpack'] else 'off'} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} "
            f"| {row['float_over_this']:.2f} | {row['size_bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--xnnpack",
        choices=("off", "on", "both"),
        default="both",
        help="TFLite's XNNPACK delegate (float ops only) for every model",
    )
    parser.add_argument("--route", choices=CONVERSION_ROUTES, default="graphdef")
    parser.add_argument("--no-numerics", dest="numerics", action="store_false")
    parser.add_argument("--numerics-samples", type=int, default=8)
    parser.add_argument("--output", default="benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    args.xnnpack = {"off": [False], "on": [True], "both": [False, True]}[args.xnnpack]

    start = time.monotonic()
    load_before = os.getloadavg()[0]
    rows = []
    for name in args.models:
        rows.extend(measure_model(name, args))
    load_after = os.getloadavg()[0]
    result = {
        "command": "python benchmarks/inference.py " + " ".join(argv or sys.argv[1:]),
        "host": benchmark.host_info(),
        "load_average_1min_before_after": [load_before, load_after],
        "settings": {
            "runs": args.runs,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "route": args.route,
        },
        "rows": rows,
        "markdown": markdown(rows),
    }
    if args.numerics:
        result["numerics"] = numerics(args)
    result["seconds"] = round(time.monotonic() - start, 1)
    from adambnn_larq.rundir import atomic_write_text

    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(result["markdown"], end="")
    print(f"wrote {Path(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
