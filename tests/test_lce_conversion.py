"""LCE conversion end to end, in the spirit of larq-compute-engine's own end2end tests.

Every model gets a short fit first (BatchNorm momentum 0 during it, so the moving statistics
are those of real activations), is converted with the real LCE converter, and run in the real
LCE interpreter against Keras: within LCE's criterion |diff| <= 1e-3 + 1e-3 |keras|, the
same top-1, and the op census asserted exactly. The expected census is derived from the
architecture (docs/method.md §2), not read from a converted file.

Inputs are well-conditioned (`well_conditioned`): every sign input at least SIGN_MARGIN from
zero in Keras, so no CPU's rounding and no interpreter can take the other side of a sign, and
the criterion can be exact on every sample on every machine.

The "keras" route (lce.convert_keras_model, via a SavedModel export) takes 40 s for a single
block on this stack, so it runs on the reduction block only, compared with the graphdef route.
"""

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from larq_compute_engine import testing

import adambnn_larq as ab
from adambnn_larq import cli
from adambnn_larq import deploy as lce_tools
from adambnn_larq.config import SIGN_MARGIN
from adambnn_larq.deploy.verify import sign_inputs
from adambnn_larq.models import reactnet_block

RTOL = ATOL = 1e-3


# ----------------------------------------------------------------------------- helpers


def expected_census(
    *, same_blocks: int, double_blocks: int, stride2_blocks: int, with_stem_and_head: bool
):
    """Ops of ReActNet blocks after LCE conversion, counted from the architecture.

    Per block: two RSign thresholds (ADD) each feeding an LceQuantize; one LceBconv2d per conv
    (BatchNorm folded in); the 3x3 residual ADD; two RPReLUs, each shift-in ADD, NEG, RELU,
    MUL (slope), RELU, ADD (both halves), shift-out ADD; the 1x1 residual ADD (two when the
    block doubles its width, plus a CONCATENATION); an AVERAGE_POOL_2D shortcut at stride 2.
    A whole network adds the input rotation (REVERSE_V2), the stem CONV_2D with its BatchNorm
    folded, the global pool (MEAN) and the classifier (FULLY_CONNECTED).
    """
    blocks = same_blocks + double_blocks
    census = Counter(
        {
            "LceQuantize": 2 * blocks,
            "LceBconv2d": 2 * same_blocks + 3 * double_blocks,
            "ADD": 10 * same_blocks + 11 * double_blocks,
            "NEG": 2 * blocks,
            "RELU": 4 * blocks,
            "MUL": 2 * blocks,
            "CONCATENATION": double_blocks,
            "AVERAGE_POOL_2D": stride2_blocks,
        }
    )
    if with_stem_and_head:
        census.update({"REVERSE_V2": 1, "CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1})
    return +census  # drop zero counts


def short_fit(model, inputs, *, seed=0, steps=1):
    """A few eager Adam steps (eager: tracing a train step here costs minutes).

    BatchNorm momentum is 0 during the fit, so the moving statistics become those of the last
    batch: realistic for inputs of the same distribution.
    """
    rng = np.random.default_rng(seed)
    output_shape = model.output_shape[1:]
    if len(output_shape) == 1:
        targets = rng.integers(0, output_shape[0], len(inputs))
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        targets = rng.normal(size=(len(inputs), *output_shape)).astype(np.float32)
        loss = "mse"
    norms = [
        layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model.compile(tf.keras.optimizers.Adam(1e-3), loss, run_eagerly=True)
    batch = max(1, len(inputs) // steps)
    model.fit(inputs, targets, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def smooth_images(rng, n, size, channels):
    """Images with spatial correlation (upsampled noise) in [-1, 1], unlike i.i.d. pixels."""
    coarse = rng.uniform(-1, 1, (n, max(2, size // 8), max(2, size // 8), channels))
    return tf.image.resize(coarse.astype(np.float32), (size, size)).numpy()


def well_conditioned(model, candidates, n):
    """The first ``n`` of ``candidates`` whose every sign input lies at least SIGN_MARGIN from
    zero in ``model`` (Keras): on them the comparison with any other implementation of the same
    function is exact up to float rounding, whatever the CPU.

    Fails, naming the margins, when fewer qualify: then the network has too many sign inputs
    for the candidates (shrink its input or draw more), never a silently weaker check.
    """
    margins = lce_tools.sign_margins(model, candidates)
    chosen = np.flatnonzero(margins >= SIGN_MARGIN)[:n]
    assert len(chosen) == n, (
        f"{len(chosen)} of {len(candidates)} candidates have every sign input >= {SIGN_MARGIN} "
        f"from zero, {n} needed (largest margins {np.sort(margins)[-n:]})"
    )
    return candidates[chosen]


def assert_differences_are_rounding(model, flatbuffer, images, *, keras_model=None):
    """For networks too large for `well_conditioned` inputs: count the sign flips per layer
    between Keras and LCE and require each image's first flips to be rounding.

    A probe (``model`` with every sign input as an extra output) is converted and run in the
    interpreter; its logits must be those of ``flatbuffer``. Per image, at the first sign
    layer where LCE and Keras disagree every disagreeing element must lie within SIGN_MARGIN of
    zero in Keras (later flips follow from it); an image without any flip must meet LCE's
    criterion and keep its top-1. ``keras_model``: the Keras model ``flatbuffer`` must match
    when ``model`` is a rewritten form of it (folded), default ``model``.

    Returns the number of flipped sign inputs per image and layer.
    """
    keras_model = model if keras_model is None else keras_model
    signs = sign_inputs(model)
    probe = tf.keras.Model(model.inputs, [*model.outputs, *signs])
    probe_file = lce_tools.convert_model(probe, route="graphdef").flatbuffer
    interpreter = testing.Interpreter(probe_file, num_threads=1)
    flips = np.zeros((len(images), len(signs)), int)
    deployed = lce_tools.run_interpreter(flatbuffer, images)
    reference = lce_tools.keras_predict(keras_model, images)
    for i in range(len(images)):
        x = images[i : i + 1]
        keras = [np.asarray(t) for t in probe(x, training=False)]
        lce = interpreter.predict(x)
        np.testing.assert_allclose(lce[0], deployed[i : i + 1], rtol=1e-5, atol=1e-5)
        for layer, (k, t) in enumerate(zip(keras[1:], lce[1:])):
            differ = (k >= 0) != (t >= 0)
            flips[i, layer] = int(differ.sum())
            if flips[i, :layer].sum() == 0 and differ.any():
                closest = float(np.abs(k[differ]).max())
                assert closest < SIGN_MARGIN, (
                    f"image {i}: sign layer {layer} flips an input {closest} from zero: not "
                    "rounding"
                )
        if flips[i].sum() == 0:
            diff = np.abs(deployed[i] - reference[i])
            assert np.all(diff <= ATOL + RTOL * np.abs(reference[i])), (i, diff.max())
            assert deployed[i].argmax() == reference[i].argmax(), i
    return flips


def block_model(stride, out_channels):
    inputs = tf.keras.Input((8, 8, 32))
    outputs = reactnet_block(inputs, out_channels, stride=stride, binary_weights=True, name="b")
    return tf.keras.Model(inputs, outputs, name=f"block_s{stride}_p{out_channels}")


def assert_matches_keras(model, flatbuffer, inputs):
    result = lce_tools.verify_conversion(model, flatbuffer, inputs, atol=ATOL, rtol=RTOL)
    keras = lce_tools.keras_predict(model, inputs)
    tflite = lce_tools.run_interpreter(flatbuffer, inputs)
    np.testing.assert_allclose(tflite, keras, rtol=RTOL, atol=ATOL)
    flat_keras, flat_tflite = keras.reshape(len(keras), -1), tflite.reshape(len(tflite), -1)
    np.testing.assert_array_equal(flat_tflite.argmax(axis=1), flat_keras.argmax(axis=1))
    assert result.passed and result.top1_agreement == 1.0
    assert result.max_abs_diff == pytest.approx(float(np.abs(tflite - keras).max()))
    return result


def no_partial_files(directory: Path):
    return not [p.name for p in directory.iterdir() if p.name.startswith(".tmp-")]


BUILDERS = {
    "block": (lambda: block_model(1, 32), dict(same_blocks=1, double_blocks=0, stride2_blocks=0)),
    "reduction_block": (
        lambda: block_model(2, 64),
        dict(same_blocks=0, double_blocks=1, stride2_blocks=1),
    ),
}


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_block_in_isolation(builder, rng):
    build, counts = BUILDERS[builder]
    model = build()
    short_fit(model, rng.uniform(-1, 1, (16, 8, 8, 32)).astype(np.float32))
    result = lce_tools.convert_model(model, route="graphdef")
    assert result.census == expected_census(**counts, with_stem_and_head=False)
    assert result.all_binary_convs_converted and result.warnings == []
    candidates = rng.uniform(-1, 1, (32, 8, 8, 32)).astype(np.float32)
    assert_matches_keras(model, result.flatbuffer, well_conditioned(model, candidates, 8))


@pytest.mark.slow
def test_keras_and_graphdef_routes_give_the_same_model(rng):
    model = block_model(2, 64)
    short_fit(model, rng.uniform(-1, 1, (16, 8, 8, 32)).astype(np.float32))
    via_keras = lce_tools.convert_model(model, route="keras")
    via_graphdef = lce_tools.convert_model(model, route="graphdef")
    expected = expected_census(
        same_blocks=0, double_blocks=1, stride2_blocks=1, with_stem_and_head=False
    )
    assert via_keras.census == via_graphdef.census == expected
    inputs = well_conditioned(model, rng.uniform(-1, 1, (32, 8, 8, 32)).astype(np.float32), 8)
    assert_matches_keras(model, via_keras.flatbuffer, inputs)
    np.testing.assert_array_equal(
        lce_tools.run_interpreter(via_keras.flatbuffer, inputs),
        lce_tools.run_interpreter(via_graphdef.flatbuffer, inputs),
    )


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """ReActNetSmall (width 1/8, 16x16x1) after a short fit, saved as .h5 and converted
    through the command line (``adambnn convert --route graphdef``); plus ``other.h5``, the
    same model with changed classifier biases (by up to 0.5); ``inputs.npy``, 8 well-conditioned
    smooth images for the first.

    Returns the directory and the convert command's (exit status, stdout, stderr).
    """
    tf.keras.utils.set_random_seed(3)
    directory = tmp_path_factory.mktemp("small")
    # 16x16, not Fashion-MNIST's 28x28: at 28x28 none of 1,024 images keeps its 42,000 sign
    # inputs SIGN_MARGIN from zero (well_conditioned).
    model = ab.ReActNetSmall(input_shape=(16, 16, 1), width_multiplier=0.125)
    short_fit(model, smooth_images(np.random.default_rng(3), 16, 16, 1))
    h5, tflite = directory / "small.h5", directory / "small.tflite"
    ab.save_model(model, h5)
    candidates = smooth_images(np.random.default_rng(4), 1024, 16, 1)
    np.save(directory / "inputs.npy", well_conditioned(model, candidates, 8))
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel, bias + np.linspace(-0.5, 0.5, bias.size, dtype=np.float32)])
    ab.save_model(model, directory / "other.h5")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(
            [
                "convert",
                str(h5),
                "-o",
                str(tflite),
                "--route",
                "graphdef",
                "--report",
                str(directory / "census.json"),
            ]
        )
    return directory, (status, out.getvalue(), err.getvalue())


def test_small_variant_through_the_command_line(small_files, capsys):
    small_files, (status, stdout, stderr) = small_files
    h5, tflite = small_files / "small.h5", small_files / "small.tflite"
    report = small_files / "census.json"
    assert status == 0, stderr
    expected = expected_census(
        same_blocks=8, double_blocks=5, stride2_blocks=2, with_stem_and_head=True
    )
    assert lce_tools.op_census(tflite.read_bytes()) == expected
    assert "binary convs -> LceBconv2d: 31 of 31 (all converted)" in stdout
    assert f"file size: {tflite.stat().st_size:,} bytes" in stdout
    for name, count in expected.items():
        assert f"  {name:<24} {count}\n" in stdout
    assert "converting 'reactnet_small'" in stderr and "done in" in stderr
    saved = json.loads(report.read_text())
    assert saved["census"] == dict(expected) and saved["lce_bconv2d"] == 31
    assert no_partial_files(small_files)

    inputs = small_files / "inputs.npy"
    verify = ["verify", str(h5), str(tflite), "--inputs", str(inputs), "--report", str(report)]
    status = cli.main(verify)
    captured = capsys.readouterr()
    assert status == 0, captured.out
    assert "top-1 agreement: 100.00%" in captured.out and "PASS" in captured.out
    assert f"inputs: 8 ({inputs})" in captured.out
    verification = json.loads(report.read_text())
    assert verification["passed"] is True and verification["samples"] == 8
    assert verification["atol"] == ATOL and verification["rtol"] == RTOL
    assert verification["worst_excess"] <= 0 and verification["top1_agreement"] == 1.0
    assert max(verification["per_sample_max_abs_diff"]) == verification["max_abs_diff"]
    assert min(verification["per_sample_sign_margin"]) >= SIGN_MARGIN


def test_verify_fails_for_a_different_model(small_files, capsys):
    """verify must notice when the .tflite does not compute what the .h5 computes."""
    small_files = small_files[0]
    tflite, other = small_files / "small.tflite", small_files / "other.h5"
    status = cli.main(["verify", str(other), str(tflite), "--samples", "4"])
    captured = capsys.readouterr()
    assert status == 1
    assert "FAIL" in captured.out
    reported = float(captured.out.split("max |keras - tflite|: ")[1].split()[0])
    assert reported == pytest.approx(0.5, rel=0.05)  # the largest bias change


def test_min_within_counts_samples_outside_the_tolerance(small_files):
    """All samples within tolerance for the same model, none for the changed one; below 1,
    ``min_within`` lets a share of the samples (near-zero sign flips) exceed it."""
    import dataclasses

    directory = small_files[0]
    flatbuffer = (directory / "small.tflite").read_bytes()
    inputs = np.load(directory / "inputs.npy")[:4]
    same = lce_tools.verify_conversion(ab.load_model(directory / "small.h5"), flatbuffer, inputs)
    other = lce_tools.verify_conversion(ab.load_model(directory / "other.h5"), flatbuffer, inputs)
    assert (same.within_share, same.passed) == (1.0, True)
    assert other.within_share == 0.0 and not other.passed
    assert "samples within tolerance: 0/4" in other.summary()
    # The same sign inputs (only the classifier's biases changed), all well clear of zero:
    # no difference is rounding.
    assert same.unexplained == 0 and other.unexplained == 4
    assert "from zero (not rounding): 4" in other.summary()
    one_of_four_off = dataclasses.replace(same, within_share=0.75, worst_excess=0.02)
    assert not one_of_four_off.passed  # default: every sample
    assert dataclasses.replace(one_of_four_off, min_within=0.75).passed
    assert not dataclasses.replace(one_of_four_off, min_within=0.8).passed
    assert not dataclasses.replace(one_of_four_off, min_within=0.75, top1_agreement=0.5).passed


@pytest.mark.slow
def test_verify_on_fashion_mnist_images(tmp_path, capsys):
    """The command reads the dataset and reports what `verify_conversion` finds on its images.

    (Whether 16 real images pass depends on the CPU's rounding: at 28x28 every image holds a
    sign input within rounding of zero. The numerics are checked on well-conditioned inputs.)
    """
    pytest.importorskip("adambnn_larq.data")
    from adambnn_larq.data import DEBIAN_FASHION_MNIST_DIR

    if not DEBIAN_FASHION_MNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist)")
    model = ab.ReActNetSmall(width_multiplier=0.125)
    short_fit(model, smooth_images(np.random.default_rng(3), 16, 28, 1))
    h5, tflite = tmp_path / "small.h5", tmp_path / "small.tflite"
    ab.save_model(model, h5)
    tflite.write_bytes(lce_tools.convert_model(model, route="graphdef").flatbuffer)
    status = cli.main(
        ["verify", str(h5), str(tflite), "--dataset", "fashion_mnist", "--samples", "16"]
    )
    captured = capsys.readouterr()
    images, labels, split = lce_tools.dataset_inputs("fashion_mnist", 16, channels=1)
    expected = lce_tools.verify_conversion(
        model, tflite.read_bytes(), images, labels=labels, source=f"fashion_mnist/{split}"
    )
    assert status == (0 if expected.passed else 1), captured.out + captured.err
    assert captured.out.strip() == expected.summary()
    assert "inputs: 16 (fashion_mnist/test)" in captured.out
    assert "top-1 accuracy vs labels: keras" in captured.out
    assert expected.keras_accuracy is not None and expected.tflite_accuracy is not None


@pytest.mark.slow
def test_full_reactnet_a():
    """Full-size ReActNet-A at 224x224: 31 LceBconv2d, one float CONV_2D (the stem)."""
    tf.keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    model = ab.ReActNetA()
    short_fit(model, smooth_images(rng, 2, 224, 3))
    result = lce_tools.convert_model(model, route="graphdef")
    expected = expected_census(
        same_blocks=8, double_blocks=5, stride2_blocks=4, with_stem_and_head=True
    )
    assert result.census == expected
    assert result.census["LceBconv2d"] == 31 and result.census["CONV_2D"] == 1
    assert result.all_binary_convs_converted and result.extra_float_convs == 0
    assert result.warnings == []
    # Size from the parameter counts of docs/method.md §2: 1 bit per binary weight, 4 bytes per
    # float.
    binary_bits = 28_253_184
    floats = 1_025_000 + 864 + 31_744 + 10_912 + 21_888
    estimate = binary_bits / 8 + 4 * floats
    assert result.size_bytes == pytest.approx(estimate, rel=0.05)
    # ~3 million sign inputs an image: no image is well-conditioned, so count the flips.
    flips = assert_differences_are_rounding(model, result.flatbuffer, smooth_images(rng, 4, 224, 3))
    print("sign flips per image (LCE vs Keras):", flips.sum(axis=1))


# ----------------------------------------------------------------------------- audit


def _mixed_model():
    """One accelerated binary conv and three binary layers LCE does not accelerate."""
    inputs = tf.keras.Input((8, 8, 32))
    x = lq.layers.QuantConv2D(
        32,
        3,
        padding="same",
        pad_values=1.0,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        use_bias=False,
        name="bconv",
    )(inputs)
    x = lq.layers.QuantDepthwiseConv2D(
        3,
        padding="same",
        input_quantizer="ste_sign",
        depthwise_quantizer="ste_sign",
        use_bias=False,
        name="bdepthwise",
    )(x)
    x = lq.layers.QuantConv2D(
        32,
        1,
        input_quantizer=lq.quantizers.DoReFa(k_bit=2, mode="activations"),
        kernel_quantizer="ste_sign",
        use_bias=False,
        name="twobit_conv",
    )(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(
        10, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="bdense"
    )(x)
    return tf.keras.Model(inputs, x, name="mixed")


def test_unaccelerated_layers_are_named_and_strict_fails(tmp_path, capsys):
    model = _mixed_model()
    result = lce_tools.convert_model(model, route="graphdef")
    assert result.census["LceBconv2d"] == 1
    assert result.census["DEPTHWISE_CONV_2D"] == 1 and result.census["FULLY_CONNECTED"] == 1
    assert result.binary_convs == ["bconv"] and result.all_binary_convs_converted
    text = "\n".join(result.warnings)
    assert "'bdepthwise'" in text and "binary depthwise" in text
    assert "'bdense'" in text and "binary Dense" in text
    assert "'twobit_conv'" in text and "input_quantizer=2-bit" in text
    assert "'bconv'" not in text
    with pytest.raises(lce_tools.ConversionError, match="strict mode") as error:
        lce_tools.convert_model(model, route="graphdef", strict=True)
    assert "bdepthwise" in str(error.value) and "bdense" in str(error.value)

    h5, output = tmp_path / "mixed.h5", tmp_path / "mixed.tflite"
    ab.save_model(model, h5)
    status = cli.main(["convert", str(h5), "-o", str(output), "--route", "graphdef", "--strict"])
    captured = capsys.readouterr()
    assert status == 2 and "bdense" in captured.err and "Traceback" not in captured.err
    assert not output.exists() and no_partial_files(tmp_path)


def test_step1_model_is_audited_as_not_accelerated():
    inputs = tf.keras.Input((8, 8, 32))
    step1 = tf.keras.Model(
        inputs, reactnet_block(inputs, 64, stride=2, binary_weights=False, name="b")
    )
    findings = lce_tools.audit_binary_layers(step1)
    assert [f.name for f in findings] == ["b_conv3x3", "b_conv1x1_1", "b_conv1x1_2"]
    assert {f.kind for f in findings} == {"unaccelerated"}
    assert all("real-valued weights" in f.reason for f in findings)
    binary = lce_tools.audit_binary_layers(block_model(2, 64))
    assert [(f.name, f.kind, f.reason) for f in binary] == [
        (name, "binary_conv", "") for name in ("b_conv3x3", "b_conv1x1_1", "b_conv1x1_2")
    ]
    assert [f.signature for f in binary] == [(3, 3, 32, 32, 2, 2), *[(1, 1, 32, 32, 1, 1)] * 2]


def test_xcore_target_keeps_zero_padded_binary_convs_float(rng):
    model = block_model(1, 32)
    short_fit(model, rng.uniform(-1, 1, (16, 8, 8, 32)).astype(np.float32))
    result = lce_tools.convert_model(model, route="graphdef", target="xcore")
    assert result.census["LceBconv2d"] == 0 and result.census["CONV_2D"] == 2
    assert result.census["LceDequantize"] == 2
    assert sorted(result.missing_bconvs) == ["b_conv1x1", "b_conv3x3"]
    assert result.extra_float_convs == 2 and not result.all_binary_convs_converted
    assert any("xcore" in message for message in result.warnings)
    # Still the same function, in float.
    candidates = rng.uniform(-1, 1, (32, 8, 8, 32)).astype(np.float32)
    assert_matches_keras(model, result.flatbuffer, well_conditioned(model, candidates, 4))
    with pytest.raises(lce_tools.ConversionError, match="b_conv3x3"):
        lce_tools.convert_model(model, route="graphdef", target="xcore", strict=True)


# ----------------------------------------------------------------------------- int8 I/O


class FakeQuant(tf.keras.layers.Layer):
    """Quantization-aware-training statistics in the graph, what int8 conversion needs."""

    def call(self, inputs):
        return tf.quantization.fake_quant_with_min_max_vars(inputs, -3.0, 3.0)


def test_int8_io_needs_quantization_statistics(rng):
    model = block_model(2, 64)
    with pytest.raises(lce_tools.ConversionError, match="not int8-quantized"):
        lce_tools.convert_model(model, route="graphdef", int8_io=True)
    dummy = lce_tools.convert_model(
        model, route="graphdef", int8_io=True, default_int8_range=(-3, 3)
    )
    assert [e["dtype"] for e in dummy.io["inputs"] + dummy.io["outputs"]] == ["int8", "int8"]
    assert dummy.census["LceBconv2d"] == 3 and dummy.census["QUANTIZE"] > 0
    assert any("latency tests only" in message for message in dummy.warnings)


def test_int8_io_of_a_fake_quantized_model_matches_keras(rng):
    inputs = tf.keras.Input((16, 16, 3))
    x = FakeQuant()(inputs)
    for _ in range(2):
        x = lq.layers.QuantConv2D(
            16, 3, strides=2, input_quantizer="ste_sign", kernel_quantizer="ste_sign"
        )(x)
        x = tf.keras.layers.BatchNormalization()(x)
        x = FakeQuant()(x)
    x = FakeQuant()(tf.keras.layers.GlobalAveragePooling2D()(x))
    model = tf.keras.Model(inputs, x)
    short_fit(model, rng.uniform(-3, 3, (16, 16, 16, 3)).astype(np.float32))
    result = lce_tools.convert_model(model, route="graphdef", int8_io=True)
    assert result.io["inputs"][0]["dtype"] == result.io["outputs"][0]["dtype"] == "int8"
    assert result.census["LceBconv2d"] == 2
    step = result.io["outputs"][0]["scale"]
    assert step == pytest.approx(6 / 255, rel=1e-3)
    x = well_conditioned(model, rng.uniform(-3, 3, (256, 16, 16, 3)).astype(np.float32), 8)
    verification = lce_tools.verify_conversion(model, result.flatbuffer, x, rtol=0)
    # Off by at most one int8 step (LCE's end2end test allows the same).
    assert verification.atol == pytest.approx(1e-3 + step)
    assert verification.passed, verification.summary()


# ----------------------------------------------------------------------------- bad input


def _tiny_binary_model():
    inputs = tf.keras.Input((8, 8, 32))
    x = lq.layers.QuantConv2D(
        32, 1, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="bconv"
    )(inputs)
    return tf.keras.Model(inputs, x, name="tiny")


def _float_model():
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, name="conv")(inputs)
    return tf.keras.Model(inputs, x, name="floaty")


def _mixed_precision_model():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _tiny_binary_model()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_a_model", "cannot load Keras model"),
        ("missing", "model file not found"),
        ("weights_only", "holds weights only"),
        ("no_binary_layers", "has no binary layers"),
        ("mixed_precision", "unsupported dtype policy"),
        ("unwritable_output", "cannot write output"),
        ("not_tflite_suffix", "must end in .tflite"),
    ],
)
def test_convert_bad_input(case, message, tmp_path, capsys):
    source = tmp_path / "model.h5"
    output = tmp_path / "out" / "model.tflite"
    if case == "not_a_model":
        source.write_text("this is not an HDF5 file\n")
    elif case == "weights_only":
        _tiny_binary_model().save_weights(source)
    elif case == "no_binary_layers":
        ab.save_model(_float_model(), source)
    elif case == "mixed_precision":
        ab.save_model(_mixed_precision_model(), source)
    elif case != "missing":
        ab.save_model(_tiny_binary_model(), source)
    if case == "unwritable_output":
        (tmp_path / "out").write_text("a file where the output directory should be")
    if case == "not_tflite_suffix":
        output = tmp_path / "out" / "model.bin"
    status = cli.main(["convert", str(source), "-o", str(output), "--route", "graphdef"])
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not output.exists()
    for directory in (tmp_path, tmp_path / "out"):
        if directory.is_dir():
            assert no_partial_files(directory)


def test_mixed_precision_error_names_the_layer():
    with pytest.raises(lce_tools.ConversionError, match=r"bconv \(mixed_float16\)"):
        lce_tools.convert_model(_mixed_precision_model(), route="graphdef")


def test_census_rejects_bytes_that_are_not_tflite():
    with pytest.raises(ValueError, match="TFL3"):
        lce_tools.op_census(b"\x00" * 64)
    with pytest.raises(ValueError, match="TFL3"):
        lce_tools.io_details(b"")


def test_verify_refuses_mismatched_files(small_files, tmp_path, capsys):
    tflite = small_files[0] / "small.tflite"
    h5 = tmp_path / "tiny.h5"
    ab.save_model(_tiny_binary_model(), h5)
    status = cli.main(["verify", str(h5), str(tflite)])
    captured = capsys.readouterr()
    assert status == 2 and "not the same model" in captured.err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_shape", "the model expects (N, 16, 16, 1)"),
        ("pickled", "not a plain .npy array"),
        ("not_finite", "NaN or infinite"),
        ("missing", "inputs file not found"),
        ("with_dataset", "--inputs and --dataset both give the inputs"),
    ],
)
def test_verify_refuses_bad_inputs_files(case, message, small_files, tmp_path, capsys):
    directory = small_files[0]
    inputs = tmp_path / "inputs.npy"
    if case == "wrong_shape":
        np.save(inputs, np.zeros((2, 28, 28, 1), np.float32))
    elif case == "pickled":  # an object array: loading it would run pickle
        np.save(inputs, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "not_finite":
        np.save(inputs, np.full((1, 16, 16, 1), np.nan, np.float32))
    elif case == "with_dataset":
        np.save(inputs, np.zeros((1, 16, 16, 1), np.float32))
    extra = ["--dataset", "fashion_mnist"] if case == "with_dataset" else []
    model, tflite = directory / "small.h5", directory / "small.tflite"
    status = cli.main(["verify", str(model), str(tflite), "--inputs", str(inputs), *extra])
    captured = capsys.readouterr()
    assert status == 2 and message in captured.err, captured.err
    assert "Traceback" not in captured.err


def test_a_conversion_error_is_not_taken_for_rounding(rng):
    """The flip count's negative control: LCE's stride-2 binary conv on a 2x2 map computes
    something else than Keras (docs/deployment.md), and the first flips are far from zero."""
    inputs = tf.keras.Input((2, 2, 32))
    outputs = reactnet_block(inputs, 64, stride=2, binary_weights=True, name="b")
    model = tf.keras.Model(inputs, outputs)
    short_fit(model, rng.uniform(-1, 1, (16, 2, 2, 32)).astype(np.float32))
    flatbuffer = lce_tools.convert_model(model, route="graphdef").flatbuffer
    x = rng.uniform(-1, 1, (4, 2, 2, 32)).astype(np.float32)
    with pytest.raises(AssertionError, match="not rounding"):
        assert_differences_are_rounding(model, flatbuffer, x)
