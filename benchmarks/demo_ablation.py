"""Why the Fashion-MNIST recipe is what it is: its changes one at a time, at a reduced budget.

Each variant is a real two-step run of `adambnn_larq.training.train` (teacher, step 1, step 2,
distillation, the analysis callbacks) on the first ``--train-limit`` training images with
``--epochs`` epochs a step, evaluated on the full test split. Variants, each adding one change
to the one before:

1. ``previous``: the recipe before 2026-12-01 (width 0.125, two reductions on 28x28, Adam
   1.25e-3 with the official per-epoch linear schedule: the last epoch of a step at lr 0).
2. ``+schedule``: the per-iteration linear schedule with 0.2 epochs of warm-up, Adam 2e-3.
3. ``+network``: 28x28 padded to 32x32, width 0.25, three reductions (the current recipe).

Usage::

    python benchmarks/demo_ablation.py --output docs/results/demo/ablation.json
    python benchmarks/demo_ablation.py --train-limit 4096 --epochs 2   # quicker, noisier

Prints one line per variant (step-1 and step-2 test top-1, teacher top-1, training seconds)
and writes them as JSON with the machine's CPU. Variants train one after the other, so their
times are comparable only on a quiet machine; the accuracies do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# larq needs Keras 2: select it before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from adambnn_larq.config import resolve_config
from adambnn_larq.hostinfo import machine_summary
from adambnn_larq.recipe_files import load_recipe
from adambnn_larq.training import train

PREVIOUS = {
    "input_size": None,
    "width_multiplier": 0.125,
    "num_downsamplings": 2,
    "learning_rate": 1.25e-3,
    "lr_schedule": "linear",
    "warmup_epochs": 0.0,
}
SCHEDULE = {"learning_rate": 2e-3, "lr_schedule": "step-linear", "warmup_epochs": 0.2}
NETWORK = {"input_size": 32, "width_multiplier": 0.25, "num_downsamplings": 3}

VARIANTS = {
    "previous": PREVIOUS,
    "+schedule": {**PREVIOUS, **SCHEDULE},
    "+network": {**PREVIOUS, **SCHEDULE, **NETWORK},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-limit", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=2, help="epochs a step (>= 2)")
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    recipe = load_recipe("adambnn_fashion_mnist")
    budget = {
        "train_limit": args.train_limit,
        "epochs": args.epochs,
        "teacher_epochs": args.teacher_epochs,
        "validation_size": 5000,
    }
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.variants.split(","):
            config = resolve_config({**recipe, **VARIANTS[name], **budget})
            started = time.perf_counter()
            summary = train(config, Path(scratch) / name.strip("+"), recipe=name, verbose=0)
            steps = {s["name"]: s["test_accuracy"] for s in summary["steps"]}
            result = {
                "variant": name,
                "changes": VARIANTS[name],
                "teacher_test_accuracy": summary.get("teacher_test_accuracy"),
                "step1_test_accuracy": steps["step1"],
                "step2_test_accuracy": steps["step2"],
                "seconds": time.perf_counter() - started,
            }
            results.append(result)
            print(
                f"{name}: step 1 {steps['step1']:.2%}, step 2 {steps['step2']:.2%} (teacher "
                f"{summary.get('teacher_test_accuracy') or 0:.2%}), {result['seconds']:.0f} s",
                flush=True,
            )
    if args.output:
        payload = {"budget": budget, "machine": machine_summary(), "results": results}
        Path(args.output).write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
