import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import adambnn_larq as ab
import reference
from adambnn_larq.layers import Rotate180
from adambnn_larq.models import REACTNET_A_CHANNELS, reactnet_block

# docs/method.md §2: binary conv weights per block and the parameter groups of ReActNet-A.
BINARY_WEIGHTS_PER_BLOCK = [
    11_264,
    45_056,
    163_840,
    180_224,
    655_360,
    720_896,
    *[2_621_440] * 5,
    2_883_584,
    10_485_760,
]


def test_reactnet_a_parameter_count(reactnet_a):
    trainable = sum(v.shape.num_elements() for v in reactnet_a.trainable_variables)
    assert trainable == 29_343_592
    assert reactnet_a.output_shape == (None, 1000)
    assert len(ab.binary_conv_layers(reactnet_a)) == 31


def test_reactnet_a_layer_table(reactnet_a):
    convs = {layer.name: layer for layer in ab.binary_conv_layers(reactnet_a)}
    per_block = [
        sum(
            v.shape.num_elements()
            for name, c in convs.items()
            if name.startswith(f"block{i}_")
            for v in c.trainable_variables
        )
        for i in range(1, 14)
    ]
    assert per_block == BINARY_WEIGHTS_PER_BLOCK
    # Spatial size per block: 224 -> 112 (stem), then halved at blocks 2, 4, 6, 12.
    sizes = [reactnet_a.get_layer(f"block{i}_rprelu2").output_shape for i in range(1, 14)]
    expected_hw = [112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7]
    assert sizes == [(None, h, h, c) for h, c in zip(expected_hw, REACTNET_A_CHANNELS[1:])]
    groups = {"shift": 0, "bn": 0, "alpha": 0}
    for layer in reactnet_a.layers:
        for weight in layer.trainable_weights:
            n = weight.shape.num_elements()
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                groups["bn"] += n
            elif weight.name.split("/")[-1].startswith("alpha"):
                groups["alpha"] += n
            elif isinstance(layer, (ab.layers.RSign, ab.layers.RPReLU)):
                groups["shift"] += n
    assert groups == {"shift": 31_744, "bn": 21_888, "alpha": 10_912}
    assert reactnet_a.get_layer("stem_conv").kernel.shape == (3, 3, 3, 32)
    assert reactnet_a.get_layer("logits").kernel.shape == (1024, 1000)


def test_step1_and_step2_share_variables():
    step1 = ab.ReActNetSmall(binary_weights=False)
    step2 = ab.ReActNetSmall(binary_weights=True)
    describe = lambda m: [(v.name, tuple(v.shape)) for v in m.variables]  # noqa: E731
    assert describe(step1) == describe(step2)
    assert isinstance(
        step2.get_layer("block1_conv3x3").kernel_quantizer, ab.quantizers.ChannelScaledSign
    )
    assert isinstance(step1.get_layer("block1_conv3x3").kernel_quantizer, ab.quantizers.SpatialFlip)


def test_step1_weights_load_into_step2_exactly(tmp_path):
    step1 = ab.ReActNetSmall(binary_weights=False)
    x = np.random.default_rng(1).normal(size=(4, 28, 28, 1)).astype("float32")
    step1(x, training=True)  # move BN statistics away from their initial values
    path = tmp_path / "step1.h5"
    step1.save_weights(path)
    step2 = ab.ReActNetSmall(binary_weights=True, weights=str(path))
    for a, b in zip(step1.variables, step2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_small_variant_shapes_and_widths():
    model = ab.ReActNetSmall(input_shape=(32, 32, 3), num_downsamplings=3, width_multiplier=0.5)
    assert model.output_shape == (None, 10)
    assert model.get_layer("stem_conv").output_shape == (None, 32, 32, 16)
    assert model.get_layer("block13_rprelu2").output_shape == (None, 4, 4, 512)
    features = ab.ReActNetSmall(include_top=False)
    assert features.output_shape == (None, 7, 7, 256)


@pytest.mark.parametrize(
    "builder, kwargs, message",
    [
        (ab.ReActNetA, {"input_shape": (30, 30, 3)}, "odd size 15"),
        (ab.ReActNetSmall, {"input_shape": (28, 28, 1), "num_downsamplings": 3}, "odd size 7"),
        (ab.ReActNetSmall, {"num_downsamplings": 5}, "num_downsamplings"),
        (ab.ReActNetSmall, {"width_multiplier": 0}, "width_multiplier"),
        (ab.ReActNetSmall, {"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_configurations_are_named(builder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        builder(**kwargs)


def test_builders_are_keyword_only():
    with pytest.raises(TypeError):
        ab.ReActNetA((224, 224, 3))


def _random_block_params(rng, channels, out_channels):
    def bn(n):
        return (
            rng.uniform(0.5, 1.5, n),
            rng.normal(0, 0.3, n),
            rng.normal(0, 0.3, n),
            rng.uniform(0.5, 2.0, n),
        )

    p = {
        "move11": rng.normal(0, 0.3, channels),
        "binary_3x3": rng.normal(0, 0.5, (3, 3, channels, channels)),
        "bn1": bn(channels),
        "move12": rng.normal(0, 0.3, channels),
        "prelu1": rng.uniform(-0.5, 0.8, channels),  # negative slopes too
        "move13": rng.normal(0, 0.3, channels),
        "move21": rng.normal(0, 0.3, channels),
        "move22": rng.normal(0, 0.3, out_channels),
        "prelu2": rng.uniform(-0.5, 0.8, out_channels),
        "move23": rng.normal(0, 0.3, out_channels),
    }
    if out_channels == channels:
        p["binary_pw"] = rng.normal(0, 0.5, (1, 1, channels, channels))
        p["bn2"] = bn(channels)
    else:
        for branch in (1, 2):
            p[f"binary_pw_down{branch}"] = rng.normal(0, 0.5, (1, 1, channels, channels))
            p[f"bn2_{branch}"] = bn(channels)
    return p


def _keras_block(channels, out_channels, stride, size, binary_weights, p):
    inputs = tf.keras.Input((size, size, channels))
    x = Rotate180()(inputs)
    x = reactnet_block(x, out_channels, stride=stride, binary_weights=binary_weights, name="b")
    model = tf.keras.Model(inputs, Rotate180()(x))
    model.get_layer("b_rsign1").set_weights([p["move11"]])
    model.get_layer("b_conv3x3").set_weights([p["binary_3x3"]])
    model.get_layer("b_bn1").set_weights(list(p["bn1"]))
    model.get_layer("b_rprelu1").set_weights([p["move12"], p["prelu1"], p["move13"]])
    model.get_layer("b_rsign2").set_weights([p["move21"]])
    if out_channels == channels:
        model.get_layer("b_conv1x1").set_weights([p["binary_pw"]])
        model.get_layer("b_bn2").set_weights(list(p["bn2"]))
    else:
        for branch in (1, 2):
            model.get_layer(f"b_conv1x1_{branch}").set_weights([p[f"binary_pw_down{branch}"]])
            model.get_layer(f"b_bn2_{branch}").set_weights(list(p[f"bn2_{branch}"]))
    model.get_layer("b_rprelu2").set_weights([p["move22"], p["prelu2"], p["move23"]])
    return model


@pytest.mark.parametrize("binary_weights", [True, False])
@pytest.mark.parametrize(
    "channels, out_channels, stride, size",
    [(8, 8, 1, 6), (8, 16, 1, 6), (8, 16, 2, 8), (8, 8, 2, 6)],
)
def test_block_matches_numpy_reference(channels, out_channels, stride, size, binary_weights):
    # A pre-activation within float32 rounding of 0 could flip a sign legitimately, so take
    # the first seed whose data keeps every sign input at least 1e-4 away from 0.
    for seed in range(100):
        rng = np.random.default_rng(seed)
        p = _random_block_params(rng, channels, out_channels)
        x = rng.normal(0, 1.0, (2, size, size, channels))
        margins = [reference.pre_sign_margins(xi, p, stride, binary_weights) for xi in x]
        if min(min(m) for m in margins) > 1e-4:
            break
    else:
        pytest.fail("no seed gave data away from the sign boundary")
    expected = np.stack([reference.block(xi, p, stride, binary_weights) for xi in x])
    model = _keras_block(channels, out_channels, stride, size, binary_weights, p)
    actual = model(x.astype("float32"), training=False).numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=2e-4, rtol=1e-4)


def test_block_reference_detects_wrong_padding():
    """The comparison can fail: asymmetric 'same' padding without rotation differs."""
    rng = np.random.default_rng(3)
    p = _random_block_params(rng, 8, 16)
    x = rng.normal(0, 1.0, (1, 8, 8, 8))
    expected = reference.block(x[0], p, 2)
    inputs = tf.keras.Input((8, 8, 8))
    unrotated = tf.keras.Model(
        inputs, reactnet_block(inputs, 16, stride=2, binary_weights=True, name="b")
    )
    reference_model = _keras_block(8, 16, 2, 8, True, p)
    unrotated.set_weights(reference_model.get_weights())
    actual = unrotated(x.astype("float32"), training=False).numpy()[0]
    assert np.abs(actual - expected).max() > 1e-2


def test_larq_summary_counts_binary_macs():
    model = ab.ReActNetSmall()
    ratio_lines = []
    lq.models.summary(model, print_fn=ratio_lines.append)
    text = "\n".join(ratio_lines)
    assert "Ratio of MACs that are binarized" in text
    ratio = float(text.split("Ratio of MACs that are binarized")[1].split()[0])
    assert ratio > 0.99
