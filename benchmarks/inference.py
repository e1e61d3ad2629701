"""Single-image inference latency and size on this host: ReActNet-A against the QuickNet family.

One table, every configuration timed in the same interleaved rounds of one run (a busy period
of a shared machine then hits all of them alike; only ratios within the run are meaningful):

- ReActNet-A (this project's step-2 network) with trained-like weights: random-sign binary
  weights (the real file size), non-zero RSign thresholds and RPReLU shifts/slopes (the real op
  count), BatchNorm statistics from a short fit. Three deployments of the same Keras model:
  ``plain`` (converted as trained), ``folded`` (`fold_for_deployment`: RPReLU/RSign constants
  folded, PReLU as MUL + MAXIMUM) and ``folded+int8`` (the classifier stored as int8 per
  output channel, `compress_weights`);
- the same architecture with float convs (`float_baseline`) in plain TFLite, with and
  without XNNPACK (the faster one is the reference);
- larq-zoo QuickNetSmall, QuickNet and QuickNetLarge (``weights=None``: latency and size do not
  depend on the values).

Every LCE model runs with the indirect BGEMM kernel (LCE's fastest on x86) in the LCE
interpreter, 1 thread by default. Binary MACs are counted from each Keras model's binary convs.
``--profile`` adds the op profile (host replay) of ReActNet-A plain and folded.
``--numerics`` compares each ReActNet-A deployment with the Keras model on smooth images.

On x86 the LCE kernels are not the optimized ARM ones: see docs/deployment.md for what these
ratios can and cannot say about a Raspberry Pi.

Usage (docs/deployment.md, about 15 minutes on 2 cores):
    python benchmarks/inference.py --profile --numerics  # -> docs/results/deployment/inference.json
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

import larq as lq
import numpy as np
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq import deploy as lce
from adambnn_larq.deploy import benchmark
from adambnn_larq.deploy.compress import compress_weights
from adambnn_larq.deploy.fold import fold_for_deployment
from adambnn_larq.deploy.profile import profile_host
from adambnn_larq.layers import RPReLU, RSign

QUICKNETS = ("quicknet_small", "quicknet", "quicknet_large")
#: Published ImageNet top-1 (%): AdamBNN paper (ReActNet-A), larq-zoo docs (QuickNet family).
PUBLISHED_TOP1 = {
    "reactnet_a": "70.5 (AdamBNN), 69.4 (ReActNet)",
    "quicknet_small": "59.4",
    "quicknet": "63.3",
    "quicknet_large": "66.9",
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def smooth_images(rng: np.random.Generator, n: int) -> np.ndarray:
    coarse = rng.uniform(-1, 1, (n, 28, 28, 3)).astype(np.float32)
    return tf.image.resize(coarse, (224, 224)).numpy()


def trained_like_reactnet_a(seed: int = 0) -> tf.keras.Model:
    """ReActNet-A whose file size, op count and numerics are those of a trained model."""
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = ab.ReActNetA(kernel_initializer="pytorch_default")  # random signs: real size
    for layer in model.layers:
        if isinstance(layer, RSign):
            layer.set_weights(
                [rng.normal(0, 0.2, w.shape).astype(np.float32) for w in layer.get_weights()]
            )
        elif isinstance(layer, RPReLU):
            shift_in, alpha, shift_out = layer.get_weights()
            layer.set_weights(
                [
                    rng.normal(0, 0.2, shift_in.shape).astype(np.float32),
                    rng.uniform(0.0, 0.5, alpha.shape).astype(np.float32),
                    rng.normal(0, 0.2, shift_out.shape).astype(np.float32),
                ]
            )
    norms = [n for n in model.layers if isinstance(n, tf.keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become those of the fit batch
    model.compile(
        tf.keras.optimizers.Adam(1e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    model.fit(smooth_images(rng, 4), rng.integers(0, 1000, 4), batch_size=4, verbose=0)
    for layer in norms:
        layer.momentum = 0.9
    return model


def quicknet(name: str) -> tf.keras.Model:
    import larq_zoo as lqz  # optional dependency (the benchmark's rivals)

    builders = {
        "quicknet_small": lqz.sota.QuickNetSmall,
        "quicknet": lqz.sota.QuickNet,
        "quicknet_large": lqz.sota.QuickNetLarge,
    }
    return builders[name](weights=None)


def binary_macs(model: tf.keras.Model) -> int:
    """Multiply-accumulates of the convs with 1-bit inputs and 1-bit weights."""
    total = 0
    for layer in model.layers:
        if not isinstance(layer, lq.layers.QuantConv2D):
            continue
        bits = [
            getattr(q, "precision", None) for q in (layer.input_quantizer, layer.kernel_quantizer)
        ]
        names = [
            getattr(q, "__name__", "") for q in (layer.input_quantizer, layer.kernel_quantizer)
        ]
        binary = all(
            b == 1 or n in ("ste_sign", "approx_sign", "swish_sign") for b, n in zip(bits, names)
        )
        if not binary:
            continue
        kh, kw, cin, cout = layer.kernel.shape
        _, oh, ow, _ = layer.output_shape
        total += int(oh * ow * kh * kw * cin * cout)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="op profiles of ReActNet-A")
    parser.add_argument("--numerics", action="store_true", help="each deployment vs Keras")
    parser.add_argument("--numerics-samples", type=int, default=8)
    parser.add_argument("--output", default="docs/results/deployment/inference.json")
    args = parser.parse_args(argv)
    from adambnn_larq.rundir import atomic_write_text, check_writable_file

    check_writable_file(args.output, what="--output")
    start = time.monotonic()
    load_before = os.getloadavg()[0]

    say("[reactnet_a] building with trained-like weights")
    model = trained_like_reactnet_a()
    deployments = {"plain": model, "folded": fold_for_deployment(model)}
    models: dict[str, dict] = {}
    for variant, keras_model in deployments.items():
        converted = lce.convert_model(keras_model, route="graphdef", progress=True)
        models[f"reactnet_a {variant}"] = {
            "model": "reactnet_a",
            "variant": variant,
            "flatbuffer": converted.flatbuffer,
            "census": dict(converted.census),
            "keras": model,
        }
    compressed = compress_weights(models["reactnet_a folded"]["flatbuffer"], "int8")
    say(compressed.summary())
    models["reactnet_a folded+int8"] = {
        "model": "reactnet_a",
        "variant": "folded+int8",
        "flatbuffer": compressed.flatbuffer,
        "census": dict(lce.op_census(compressed.flatbuffer)),
        "keras": model,
    }
    float_flatbuffer = benchmark.convert_float_tflite(benchmark.float_baseline(model))
    for name in QUICKNETS:
        say(f"[{name}] building and converting")
        zoo_model = quicknet(name)
        converted = lce.convert_model(zoo_model, route="graphdef", progress=True)
        models[name] = {
            "model": name,
            "variant": "plain",
            "flatbuffer": converted.flatbuffer,
            "census": dict(converted.census),
            "binary_macs": binary_macs(zoo_model),
        }
    reactnet_macs = binary_macs(model)
    for entry in models.values():
        entry.setdefault("binary_macs", reactnet_macs)

    configurations = [
        benchmark.Configuration(entry["flatbuffer"], label, "indirect_bgemm", args.threads, False)
        for label, entry in models.items()
    ] + [
        benchmark.Configuration(
            float_flatbuffer, f"reactnet_a float xnnpack={x}", "float", args.threads, x
        )
        for x in (False, True)
    ]
    timings = {
        t.name: t
        for t in benchmark.time_configurations(
            configurations, warmup=args.warmup, runs=args.runs, rounds=args.rounds, progress=True
        )
    }
    float_ms = min(timings[f"reactnet_a float xnnpack={x}"].median_ms for x in (False, True))
    large_ms = timings["quicknet_large"].median_ms
    rows = []
    for label, entry in models.items():
        timing = timings[label]
        rows.append(
            {
                "model": entry["model"],
                "variant": entry["variant"],
                "published_top1": PUBLISHED_TOP1[entry["model"]],
                "median_ms": timing.median_ms,
                "p90_ms": timing.p90_ms,
                "over_quicknet_large": timing.median_ms / large_ms,
                "over_own_float": timing.median_ms / float_ms
                if entry["model"] == "reactnet_a"
                else None,
                "size_bytes": len(entry["flatbuffer"]),
                "binary_macs": entry["binary_macs"],
                "lce_bconv2d": entry["census"].get("LceBconv2d", 0),
                "ops": sum(entry["census"].values()),
                "census": entry["census"],
            }
        )
    for x in (False, True):
        timing = timings[f"reactnet_a float xnnpack={x}"]
        rows.append(
            {
                "model": "reactnet_a",
                "variant": f"float TFLite (XNNPACK {'on' if x else 'off'})",
                "published_top1": "",
                "median_ms": timing.median_ms,
                "p90_ms": timing.p90_ms,
                "over_quicknet_large": timing.median_ms / large_ms,
                "over_own_float": timing.median_ms / float_ms,
                "size_bytes": len(float_flatbuffer),
                "binary_macs": 0,
                "lce_bconv2d": 0,
            }
        )
    load_after = os.getloadavg()[0]
    result = {
        "command": "python benchmarks/inference.py " + " ".join(argv or sys.argv[1:]),
        "host": benchmark.host_info(),
        "load_average_1min_before_after": [load_before, load_after],
        "settings": {
            "runs": args.runs,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "kernel": "indirect_bgemm",
        },
        "compression": compressed.summary(),
        "rows": rows,
        "markdown": markdown(rows),
    }
    if args.profile:
        result["profiles"] = {}
        for variant in ("plain", "folded"):
            say(f"[reactnet_a {variant}] op profile (host replay)")
            profile = profile_host(
                models[f"reactnet_a {variant}"]["flatbuffer"], threads=args.threads
            )
            say(profile.table())
            result["profiles"][variant] = profile.to_json() | {"markdown": profile.markdown()}
    if args.numerics:
        rng = np.random.default_rng(1)
        images = smooth_images(rng, args.numerics_samples)
        result["numerics"] = {}
        for label in ("reactnet_a plain", "reactnet_a folded", "reactnet_a folded+int8"):
            check = lce.verify_conversion(model, models[label]["flatbuffer"], images)
            say(f"[{label}] vs Keras: {check.summary()}")
            result["numerics"][label] = {
                "samples": check.samples,
                "max_abs_diff": check.max_abs_diff,
                "top1_agreement": check.top1_agreement,
                "within_share": check.within_share,
            }
    result["seconds"] = round(time.monotonic() - start, 1)
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(result["markdown"], end="")
    print(f"wrote {Path(args.output)}")
    return 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | deployment | ImageNet top-1 % (published) | binary MACs | median ms | p90 ms "
        "| / QuickNetLarge | / own float | size MB | ops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        own = f"{row['over_own_float']:.2f}" if row.get("over_own_float") else "–"
        macs = f"{row['binary_macs'] / 1e9:.2f} G" if row["binary_macs"] else "–"
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['published_top1']} | {macs} | "
            f"{row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['over_quicknet_large']:.2f} | "
            f"{own} | {row['size_bytes'] / 1e6:.2f} | {row.get('ops', '–')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
