"""Deployment graph transformations: folded RPReLU/RSign constants and compressed weights.

LCE end-to-end style: real converter, real interpreter, outputs compared with the *trained*
Keras model at LCE's tolerance (|diff| <= 1e-3 + 1e-3 |keras|, same top-1), op censuses
derived from the architecture. Models get trained-like weights: non-zero RSign thresholds and
RPReLU shifts, slopes on both sides of 1, then a short fit so BatchNorm statistics are real.
The compressed files are checked against an independent reference: the Keras model with its
weights rounded by hand the way the stored format rounds them. Small models are compared on
well-conditioned images (no sign input within SIGN_MARGIN of zero), so exactly, on any CPU.
"""

import json
from collections import Counter

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from test_lce_conversion import (
    ATOL,
    RTOL,
    assert_differences_are_rounding,
    short_fit,
    smooth_images,
    well_conditioned,
)

import adambnn_larq as ab
from adambnn_larq import deploy as lce_tools
from adambnn_larq.config import COMPRESSED_MIN_AGREEMENT
from adambnn_larq.deploy.compress import compress_weights, compressed_weights
from adambnn_larq.deploy.fold import (
    FoldedPReLU,
    NotFoldableError,
    fold_for_deployment,
    prelu_form,
)
from adambnn_larq.deploy.verify import verify_criteria
from adambnn_larq.layers import RPReLU, RSign


def trained_like(model, rng, *, slopes_above_one=()):
    """Non-zero thresholds and shifts, varied slopes; then a short fit (real BN statistics).

    ``slopes_above_one`` maps RPReLU layer names to "all" (every slope in (1, 1.5)) or "some"
    (a few channels above 1).
    """
    slopes_above_one = dict(slopes_above_one)
    for layer in model.layers:
        if isinstance(layer, RSign):
            (bias,) = layer.get_weights()
            layer.set_weights([rng.normal(0, 0.2, bias.shape).astype(np.float32)])
        elif isinstance(layer, RPReLU):
            shift_in, alpha, shift_out = layer.get_weights()
            alpha = rng.uniform(-0.1, 0.6, alpha.shape)
            if slopes_above_one.get(layer.name) == "all":
                alpha = rng.uniform(1.05, 1.5, alpha.shape)
            elif slopes_above_one.get(layer.name) == "some":
                alpha[::3] = 1.3
            layer.set_weights(
                [
                    rng.normal(0, 0.2, shift_in.shape).astype(np.float32),
                    alpha.astype(np.float32),
                    rng.normal(0, 0.2, shift_out.shape).astype(np.float32),
                ]
            )
    return model


def small_reactnet(rng, **slopes):
    """24x24 inputs: one smooth image in ten keeps its ~31,000 sign inputs SIGN_MARGIN from zero
    (at 32x32, 55,000 sign inputs, none of 64 did; at 16x16 the third downsampling reaches a
    2x2 map, where LCE's stride-2 binary conv differs from Keras: docs/deployment.md)."""
    model = ab.ReActNetSmall(
        input_shape=(24, 24, 1),
        width_multiplier=0.125,
        num_downsamplings=3,
        kernel_initializer="pytorch_default",
    )
    trained_like(model, rng, **slopes)
    short_fit(model, smooth_images(rng, 16, 24, 1))
    return model


def conditioned_images(model, rng, n=8):
    size = model.input_shape[1]
    return well_conditioned(model, smooth_images(rng, 256, size, 1), n)


def assert_close_to_keras(model, flatbuffer, images):
    """LCE's criterion and the same top-1 on every image."""
    result = lce_tools.verify_conversion(model, flatbuffer, images, atol=ATOL, rtol=RTOL)
    assert result.passed, result
    return result


def prelu_layers(model):
    return [layer for layer in model.layers if isinstance(layer, RPReLU)]


def expected_folded_census(model) -> Counter:
    """Ops of a folded ReActNet after LCE, counted from its architecture and slopes.

    Per block: one LceQuantize and one threshold ADD per RSign (none for block 1's first, which
    the stem's BatchNorm carries), one LceBconv2d per conv, the 3x3 residual ADD, one 1x1
    residual ADD per branch (two and a CONCATENATION when the block doubles its width), an
    AVERAGE_POOL_2D at stride 2, and per RPReLU: MUL + MAXIMUM (slopes <= 1), MUL + MINIMUM
    (slopes >= 1) or MINIMUM + MUL + ADD (mixed). No NEG, no RELU, no shift ADDs.
    """
    names = {layer.name for layer in model.layers}
    blocks = sorted({n.split("_")[0] for n in names if n.startswith("block")})
    census = Counter({"REVERSE_V2": 1, "CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1})
    for block in blocks:
        double = f"{block}_conv1x1" not in names
        census["LceQuantize"] += 2
        census["LceBconv2d"] += 3 if double else 2
        census["ADD"] += (2 if block != "block1" else 1) + 1 + (2 if double else 1)
        census["CONCATENATION"] += int(double)
        census["AVERAGE_POOL_2D"] += int(f"{block}_pool" in names)
    for layer in prelu_layers(model):
        alpha = layer.alpha.numpy()
        census["MUL"] += 1
        if np.all(alpha <= 1):
            census["MAXIMUM"] += 1
        elif np.all(alpha >= 1):
            census["MINIMUM"] += 1
        else:
            census["MINIMUM"] += 1
            census["ADD"] += 1
    return +census


# ----------------------------------------------------------------------------- folding


@pytest.mark.slow
def test_folded_model_computes_the_trained_function_in_keras(rng):
    model = small_reactnet(
        rng, slopes_above_one={"block3_rprelu1": "all", "block5_rprelu2": "some"}
    )
    folded = fold_for_deployment(model)
    images = conditioned_images(model, rng)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(folded.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-4)
    forms = {layer.name: layer.form for layer in folded.layers if isinstance(layer, FoldedPReLU)}
    assert forms["block3_rprelu1"] == "minimum" and forms["block5_rprelu2"] == "mixed"
    assert forms["block1_rprelu1"] == "maximum"
    # The trained model is untouched: its RPReLU layers are still there with their shifts.
    assert all(np.any(layer.shift_out.numpy() != 0) for layer in prelu_layers(model))
    assert folded.input_shape == model.input_shape and folded.output_shape == model.output_shape


@pytest.mark.slow
def test_folded_conversion_has_fewer_ops_and_matches_the_trained_model(rng):
    model = small_reactnet(
        rng, slopes_above_one={"block3_rprelu1": "all", "block5_rprelu2": "some"}
    )
    plain = lce_tools.convert_model(model, route="graphdef")
    folded = lce_tools.convert_model(fold_for_deployment(model), route="graphdef")
    assert folded.census == expected_folded_census(model)
    assert plain.census["NEG"] == 26 and folded.census["NEG"] == 0
    assert folded.census["LceBconv2d"] == plain.census["LceBconv2d"] == 31
    assert sum(folded.census.values()) < 0.7 * sum(plain.census.values())
    # The proof that matters: the folded file against the trained (unfolded) Keras model.
    assert_close_to_keras(model, folded.flatbuffer, conditioned_images(model, rng))


def _shift_thresholds(model, shifts):
    """A copy of ``model`` whose RSign thresholds are moved by ``shifts[layer name]``."""
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if layer.name in shifts:
            layer.bias.assign(layer.bias + shifts[layer.name])
    return copy


@pytest.mark.slow
def test_a_rounding_sized_change_cannot_move_the_verdict_on_well_conditioned_images(rng):
    """Another CPU's rounding, played on the Keras side: every sign input moved by +-2e-5 (the
    largest LCE-Keras difference of a sign input measured is 1.9e-5). On well-conditioned
    images (margins >= SIGN_MARGIN = 1e-4) the verdict against the same .tflite stays exact;
    on the worst-conditioned image a shift of the same size flips a sign and moves the outputs.
    """
    model = small_reactnet(rng)
    flatbuffer = lce_tools.convert_model(model, route="graphdef").flatbuffer
    rsigns = [layer for layer in model.layers if isinstance(layer, RSign)]
    shifts = {
        layer.name: rng.choice([-2e-5, 2e-5], layer.bias.shape).astype(np.float32)
        for layer in rsigns
    }
    other_cpu = _shift_thresholds(model, shifts)
    images = conditioned_images(model, rng)
    assert_close_to_keras(model, flatbuffer, images)
    assert_close_to_keras(other_cpu, flatbuffer, images)
    here, there = (lce_tools.keras_predict(m, images) for m in (model, other_cpu))
    quiet = np.abs(here - there).max()
    assert quiet < 1e-4

    # The control: the candidate whose sign input is closest to zero, and a shift just past it
    # (still below 2e-5 when that input is, as in every draw seen) on its threshold.
    candidates = smooth_images(rng, 64, 24, 1)
    probe = tf.keras.Model(model.inputs, [layer.output for layer in rsigns])
    values = [np.asarray(v) for v in probe(candidates, training=False)]
    closest = [np.abs(v).reshape(len(candidates), -1).min(axis=1) for v in values]
    layer_index, image = np.unravel_index(np.argmin(closest), (len(rsigns), len(candidates)))
    value = values[layer_index][image].reshape(-1)
    element = np.argmin(np.abs(value))
    assert abs(value[element]) < 2e-5
    channel = element % rsigns[layer_index].bias.shape[0]  # channels last
    shift = np.zeros(rsigns[layer_index].bias.shape, np.float32)
    shift[channel] = -np.sign(value[element]) * (abs(value[element]) + 1e-6)
    flipped = _shift_thresholds(model, {rsigns[layer_index].name: shift})
    x = candidates[image : image + 1]
    moved = np.abs(lce_tools.keras_predict(flipped, x) - lce_tools.keras_predict(model, x)).max()
    assert moved > 10 * quiet, (moved, quiet)


@pytest.mark.slow
def test_folding_without_the_classifier(rng):
    model = ab.ReActNetSmall(
        input_shape=(16, 16, 1), width_multiplier=0.125, num_downsamplings=2, include_top=False
    )
    trained_like(model, rng)
    short_fit(model, smooth_images(rng, 8, 16, 1))
    folded = fold_for_deployment(model)
    images = conditioned_images(model, rng, 4)
    np.testing.assert_allclose(
        folded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-4, atol=1e-4
    )


def test_a_model_that_is_not_a_reactnet_is_refused():
    inputs = tf.keras.Input((8, 8, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(2, 3)(inputs), name="other")
    with pytest.raises(NotFoldableError, match="'other' has no layer 'rotate_input'"):
        fold_for_deployment(model)


def test_folded_prelu_forms_equal_prelu(rng):
    x = rng.normal(0, 2, (4, 3, 3, 6)).astype(np.float32)
    for alpha in (
        rng.uniform(-0.5, 1.0, 6),
        rng.uniform(1.0, 2.0, 6),
        np.array([0.2, 1.5, -0.3, 1.0, 3.0, 0.0]),
    ):
        expected = np.where(x >= 0, x, alpha * x)
        layer = FoldedPReLU(form=prelu_form(alpha))
        layer.build(x.shape)
        layer.set_weights([alpha.astype(np.float32)])
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-6, atol=1e-6)
        assert FoldedPReLU.from_config(layer.get_config()).form == layer.form


# ----------------------------------------------------------------------------- compression


def _dense_model(rng, outputs=300, inputs=64):
    model = tf.keras.Sequential(
        [
            tf.keras.Input((4, 4, 2)),
            # A binary conv: LCE converts only models with binary layers.
            lq.layers.QuantConv2D(
                inputs,
                3,
                padding="same",
                pad_values=1.0,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                name="conv",
            ),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(outputs, name="logits"),
        ]
    )
    kernel, bias = model.get_layer("logits").get_weights()
    # Per-channel ranges that differ by 100x: one scale for the whole tensor would lose them.
    scales = np.geomspace(0.01, 1.0, outputs).astype(np.float32)
    model.get_layer("logits").set_weights([rng.normal(0, 1, kernel.shape) * scales, bias])
    return model


def _with_weights(model, name, kernel):
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.get_layer(name).set_weights([kernel, model.get_layer(name).get_weights()[1]])
    return copy


@pytest.mark.parametrize("weight_format", ["int8", "float16"])
def test_compressed_weights_compute_the_rounded_model(weight_format, rng):
    model = _dense_model(rng)
    flatbuffer = lce_tools.convert_model(model, route="graphdef").flatbuffer
    result = compress_weights(flatbuffer, weight_format, min_elements=4096)
    kernel = model.get_layer("logits").get_weights()[0]  # [in, out]
    if weight_format == "int8":
        step = np.abs(kernel).max(axis=0) / 127.0  # one scale per output channel
        rounded = np.round(kernel / step) * step
        stored_bytes = kernel.size + 12 * kernel.shape[1]  # float32 scale, int64 zero point
    else:
        rounded = kernel.astype(np.float16).astype(np.float32)
        stored_bytes = 2 * kernel.size
    # Only the classifier qualifies (the binary conv's weights are bitpacked, not float).
    assert [t.op for t in result.tensors] == ["FULLY_CONNECTED"]
    assert result.tensors[0].bytes_after == stored_bytes
    assert result.tensors[0].max_abs_error == pytest.approx(
        np.abs(rounded - kernel).max(), rel=1e-3
    )
    saved = 4 * kernel.size - stored_bytes
    assert result.size_before - result.size_after == pytest.approx(saved, abs=256)
    census = lce_tools.op_census(result.flatbuffer)
    assert census["DEQUANTIZE"] == 1 and census["FULLY_CONNECTED"] == 1
    assert list(compressed_weights(result.flatbuffer).values()) == [weight_format]
    assert compressed_weights(flatbuffer) == {}
    images = rng.uniform(-1, 1, (8, 4, 4, 2)).astype(np.float32)
    reference = _with_weights(model, "logits", rounded)
    np.testing.assert_allclose(
        lce_tools.run_interpreter(result.flatbuffer, images),
        reference.predict(images, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )


def test_compression_errors_and_thresholds(rng):
    model = _dense_model(rng, outputs=10, inputs=8)
    flatbuffer = lce_tools.convert_model(model, route="graphdef").flatbuffer
    untouched = compress_weights(flatbuffer, "int8")  # 80 weights < the default minimum
    assert untouched.tensors == [] and lce_tools.op_census(untouched.flatbuffer) == (
        lce_tools.op_census(flatbuffer)
    )
    with pytest.raises(ValueError, match="unknown weight format 'int4'"):
        compress_weights(flatbuffer, "int4")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        compress_weights(b"not a model at all", "int8")


def test_verify_criteria_exact_and_compressed_files():
    exact = verify_criteria({})
    assert (exact.min_agreement, exact.min_within) == (1.0, 1.0)
    assert (verify_criteria({}, min_agreement=0.5, min_within=0.9).min_within) == 0.9
    compressed = {"w1": "int8", "w2": "float16"}
    default = verify_criteria(compressed)
    assert (default.min_agreement, default.min_within) == (COMPRESSED_MIN_AGREEMENT, 0.0)
    assert "2 weight tensor(s) stored as float16/int8" in default.reason
    assert "not required" in default.reason
    given = verify_criteria(compressed, min_agreement=0.9, min_within=0.5)
    assert (given.min_agreement, given.min_within) == (0.9, 0.5)
    assert ">= 90%" in given.reason and "required as given" in given.reason


# ----------------------------------------------------------------------------- ReActNet-A


@pytest.mark.slow
def test_full_reactnet_a_folded_and_int8_is_under_5_mb():
    """Full-size ReActNet-A: folded census and numerics, then the int8 file size.

    Numerics on the reference initialization after a short fit (as `test_full_reactnet_a`:
    every threshold and shift moves off zero, the network is not chaotic); the file size with
    random-sign binary weights, as trained weights have (identical all-+1 filters of the
    reference initialization are stored once and would make the file look small).
    """
    tf.keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    model = ab.ReActNetA()
    short_fit(model, smooth_images(rng, 2, 224, 3))
    assert all(np.all(layer.shift_out.numpy() != 0) for layer in prelu_layers(model))
    folded = lce_tools.convert_model(model, route="graphdef", fold=True)
    assert folded.census == expected_folded_census(model)
    assert folded.all_binary_convs_converted and folded.census["LceBconv2d"] == 31
    images = smooth_images(rng, 8, 224, 3)
    # ~3 million sign inputs an image: no image keeps them all SIGN_MARGIN from zero, so the
    # flips are counted and each image's first ones must be rounding.
    assert_differences_are_rounding(
        fold_for_deployment(model), folded.flatbuffer, images, keras_model=model
    )
    small = compress_weights(folded.flatbuffer, "int8")
    assert [t.shape for t in small.tensors] == [(1000, 1024)]
    # Against the float classifier of the same file: the same binary part, the same flips.
    exact = lce_tools.run_interpreter(folded.flatbuffer, images)
    tflite = lce_tools.run_interpreter(small.flatbuffer, images)
    np.testing.assert_array_equal(tflite.argmax(axis=1), exact.argmax(axis=1))
    # int8 moves each classifier weight by at most half a step (max |w| / 254 per class).
    assert np.abs(tflite - exact).max() < 0.05 * np.abs(exact).max()

    for layer in ab.binary_conv_layers(model):
        layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    folded = lce_tools.convert_model(model, route="graphdef", fold=True, weights="int8")
    assert folded.compression.size_before > 7_500_000  # float32 classifier: 4.1 MB of it
    assert folded.size_bytes <= 5_000_000


# ----------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_convert_fold_and_int8_weights_then_verify_through_the_command_line(rng, tmp_path, capsys):
    from adambnn_larq import cli

    tf.keras.utils.set_random_seed(3)
    # 256 x 20 = 5,120 classifier weights: above compress_weights' 4,096-element threshold.
    model = ab.ReActNetSmall(
        input_shape=(16, 16, 1), width_multiplier=0.25, num_classes=20, num_downsamplings=2
    )
    trained_like(model, rng)
    short_fit(model, smooth_images(rng, 16, 16, 1))
    model_path, tflite, report = tmp_path / "m.h5", tmp_path / "m.tflite", tmp_path / "r.json"
    model.save(model_path)
    arguments = ["convert", str(model_path), "-o", str(tflite), "--route", "graphdef"]
    arguments += ["--fold", "--weights", "int8", "--report", str(report), "--quiet"]
    assert cli.main(arguments) == 0
    out = capsys.readouterr().out
    assert "folded: RPReLU/RSign constants folded" in out and "weights stored as int8" in out
    written = json.loads(report.read_text())
    assert written["folded"] is True and written["weights"] == "int8"
    assert [t["shape"] for t in written["compressed_tensors"]] == [[20, 256]]
    assert written["census"]["DEQUANTIZE"] == 1 and "NEG" not in written["census"]
    assert written["lce_bconv2d"] == 31 and written["all_binary_convs_converted"]

    inputs = tmp_path / "inputs.npy"
    np.save(inputs, well_conditioned(model, smooth_images(rng, 512, 16, 1), 8))
    verify = ["verify", str(model_path), str(tflite), "--inputs", str(inputs), "--report"]
    assert cli.main([*verify, str(tmp_path / "v.json")]) == 0
    captured = capsys.readouterr()
    assert "1 weight tensor(s) stored as int8" in captured.err and "not required" in captured.err
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["min_agreement"] == 0.99 and result["min_within"] == 0.0
    assert result["top1_agreement"] >= 0.99 and 0 < result["max_abs_diff"] < 0.1
    # Asked explicitly, the elementwise tolerance still applies (and int8 weights miss it).
    assert cli.main([*verify, str(tmp_path / "v2.json"), "--min-within", "1"]) == 1


def test_fold_refuses_a_model_that_is_not_a_reactnet_with_a_clear_error(tmp_path, capsys):
    from adambnn_larq import cli

    inputs = tf.keras.Input((8, 8, 1))
    x = lq.layers.QuantConv2D(
        4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", pad_values=1.0
    )(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x), name="plain")
    model.save(tmp_path / "plain.h5")
    tflite = tmp_path / "plain.tflite"
    arguments = ["convert", str(tmp_path / "plain.h5"), "-o", str(tflite), "--fold", "--quiet"]
    assert cli.main([*arguments, "--route", "graphdef"]) == 2
    assert "cannot fold: model 'plain' has no layer 'rotate_input'" in capsys.readouterr().err
    assert not tflite.exists()
