"""How far sign inputs stay from zero, and how much LCE moves them: the numbers behind
`adambnn_larq.config.SIGN_MARGIN` (docs/deployment.md, "Rounding and sign flips").

For a small ReActNet with trained-like weights (the tests' `small_reactnet`, 32x32 and 24x24)
it converts a probe model whose outputs are the logits *and* every sign input, runs it in the
LCE interpreter and in Keras, and reports per sign input the largest LCE - Keras difference
on images where no sign flipped, the images with a flipped sign and their Keras margins, and
the share of images whose every sign input keeps SIGN_MARGIN from zero. A second part converts
one reduction block at spatial sizes 2-8 and compares it with Keras.

    python benchmarks/sign_margins.py --output docs/results/deployment/sign_margins.json

About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import adambnn_larq as ab  # first: Keras 2 and oneDNN, as users get them

# isort: split
import numpy as np
import tensorflow as tf

from adambnn_larq import deploy
from adambnn_larq.config import SIGN_MARGIN
from adambnn_larq.deploy.verify import run_interpreter, sign_inputs
from adambnn_larq.hostinfo import machine_summary
from adambnn_larq.models import reactnet_block

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_deploy_graph import trained_like
from test_lce_conversion import short_fit, smooth_images


def probe_differences(size: int, images: int) -> dict:
    tf.keras.utils.set_random_seed(1234)
    rng = np.random.default_rng(0)
    model = ab.ReActNetSmall(
        input_shape=(size, size, 1),
        width_multiplier=0.125,
        num_downsamplings=3,
        kernel_initializer="pytorch_default",
    )
    trained_like(model, rng)
    short_fit(model, smooth_images(rng, 16, size, 1))
    signs = sign_inputs(model)
    probe = tf.keras.Model(model.inputs, [*model.outputs, *signs])
    flatbuffer = deploy.convert_model(probe, route="graphdef").flatbuffer
    x = smooth_images(rng, images, size, 1)
    keras = [np.asarray(t) for t in probe(x, training=False)]
    from larq_compute_engine import testing

    interpreter = testing.Interpreter(flatbuffer, num_threads=1)
    per_image = [interpreter.predict(x[i : i + 1]) for i in range(len(x))]
    lce = [np.concatenate([outputs[j] for outputs in per_image]) for j in range(len(keras))]
    # The interpreter returns the outputs in the model's order; check it by shape.
    assert [a.shape for a in lce] == [k.shape for k in keras]
    flipped = np.zeros(len(x), bool)
    for k, a in zip(keras[1:], lce[1:]):
        flipped |= (np.sign(k) != np.sign(a)).reshape(len(x), -1).any(axis=1)
    differences = np.concatenate(
        [np.abs(k - a)[~flipped].ravel() for k, a in zip(keras[1:], lce[1:])]
    )
    margins = np.min([np.abs(k).reshape(len(x), -1).min(axis=1) for k in keras[1:]], axis=0)
    logits = np.abs(keras[0] - lce[0]).max(axis=1)
    return {
        "input": size,
        "images": len(x),
        "sign_inputs_per_image": int(sum(np.prod(k.shape[1:]) for k in keras[1:])),
        "max_difference_without_flips": float(differences.max()),
        "p999_difference_without_flips": float(np.quantile(differences, 0.999)),
        "images_with_a_flipped_sign": int(flipped.sum()),
        "their_keras_margins": [float(m) for m in margins[flipped]],
        "their_max_logit_difference": [float(d) for d in logits[flipped]],
        "share_with_margin_at_least_SIGN_MARGIN": float(np.mean(margins >= SIGN_MARGIN)),
        "max_logit_difference_where_margin_at_least_SIGN_MARGIN": (
            float(logits[margins >= SIGN_MARGIN].max()) if np.any(margins >= SIGN_MARGIN) else None
        ),
    }


def reduction_block_sizes() -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size in (2, 4, 6, 8):
        inputs = tf.keras.Input((size, size, 32))
        outputs = reactnet_block(inputs, 64, stride=2, binary_weights=True, name="b")
        model = tf.keras.Model(inputs, outputs)
        short_fit(model, rng.uniform(-1, 1, (16, size, size, 32)).astype(np.float32))
        flatbuffer = deploy.convert_model(model, route="graphdef").flatbuffer
        x = rng.uniform(-1, 1, (16, size, size, 32)).astype(np.float32)
        diff = np.abs(run_interpreter(flatbuffer, x) - deploy.keras_predict(model, x)).max()
        rows.append({"input": f"{size}x{size}x32", "stride": 2, "max_abs_diff": float(diff)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--output", help="write the result as JSON here")
    args = parser.parse_args()
    started = time.time()
    result = {
        "command": "python benchmarks/sign_margins.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": machine_summary(),
        "sign_margin": SIGN_MARGIN,
        "probe": [probe_differences(size, args.images) for size in (32, 24)],
        "reduction_block": reduction_block_sizes(),
    }
    result["seconds"] = round(time.time() - started)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
