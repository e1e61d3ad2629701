"""A trained model converted as trained and folded, both verified on real test images.

Converts the demo's step-2 model (or any ReActNet `.h5` of this project) twice with LCE — as
trained and through `fold_for_deployment` — and compares each file with the trained Keras
model on the first N Fashion-MNIST test images with both LCE binary-conv kernels: op census,
file size, share of images within LCE's elementwise tolerance, top-1 agreement and accuracy.

Usage (docs/deployment.md; about 3 minutes on 2 cores):
    python benchmarks/fold_demo_model.py runs/demo/train/step2/final.h5 --samples 1000 \
        --output docs/results/deployment/fold_demo_model.json
"""

from __future__ import annotations

import argparse
import json
import sys

import adambnn_larq  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from adambnn_larq import deploy as lce
from adambnn_larq.deploy.fold import fold_for_deployment
from adambnn_larq.saving import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a trained ReActNet .h5/.keras of this project")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--output", default="docs/results/deployment/fold_demo_model.json")
    args = parser.parse_args(argv)
    from adambnn_larq.rundir import atomic_write_text, check_writable_file

    check_writable_file(args.output, what="--output")
    model = load_model(args.model)
    height, width, channels = model.input_shape[1:]
    inputs, labels, split = lce.dataset_inputs(
        args.dataset, args.samples, channels=channels, image_size=height
    )
    results = {"model": args.model, "dataset": f"{args.dataset}/{split}", "samples": len(inputs)}
    for name, deployed in (("as trained", model), ("folded", fold_for_deployment(model))):
        converted = lce.convert_model(deployed, route="graphdef")
        for kernel in ("default", "indirect_bgemm"):
            check = lce.verify_conversion(
                model,
                converted.flatbuffer,
                inputs,
                labels=labels,
                min_within=0.98,
                source=f"{args.dataset}/{split}",
                kernel=kernel,
            )
            print(
                f"[{name}, {kernel}] ops {sum(converted.census.values())}, "
                f"{converted.size_bytes:,} bytes\n{check.summary()}",
                flush=True,
            )
            results[f"{name}, {kernel}"] = {
                "census": dict(converted.census),
                "ops": sum(converted.census.values()),
                "size_bytes": converted.size_bytes,
                "within_share": check.within_share,
                "top1_agreement": check.top1_agreement,
                "max_abs_diff": check.max_abs_diff,
                "keras_accuracy": check.keras_accuracy,
                "tflite_accuracy": check.tflite_accuracy,
                "passed": check.passed,
            }
    atomic_write_text(args.output, json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
