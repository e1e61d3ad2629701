"""ReActNet-A, as trained by AdamBNN, built from Larq layers, and its small-image variant."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import larq as lq
import tensorflow as tf

from adambnn_larq.errors import ConfigError
from adambnn_larq.layers import Rotate180, RPReLU, RSign
from adambnn_larq.quantizers import kernel_quantizer

#: Output channels of the stem (index 0) and of the 13 blocks of ReActNet-A.
REACTNET_A_CHANNELS: tuple[int, ...] = (
    32,
    64,
    128,
    128,
    256,
    256,
    512,
    512,
    512,
    512,
    512,
    512,
    1024,
    1024,
)

#: Blocks (1-based) of ReActNet-A that downsample with stride 2.
REACTNET_A_REDUCTION_BLOCKS: tuple[int, ...] = (2, 4, 6, 12)


class _NoConstraintWarningFilter(logging.Filter):
    """Drop larq's advice to clip binary latent weights: the reference deliberately does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "starved weights" not in record.getMessage()


logging.getLogger("larq.layers_base").addFilter(_NoConstraintWarningFilter())

# PyTorch's BatchNorm2d defaults; Keras' momentum is one minus PyTorch's.
_BN_KWARGS = {"momentum": 0.9, "epsilon": 1e-5}


def _binary_kernel_initializer(binary_weights: bool, kernel_initializer):
    """The reference's initial latent weights unless the caller chose others.

    Binary (step-2) convs start at U[0, 1e-3) like the official HardBinaryConv; real (step-1)
    convs like PyTorch's default ``nn.Conv2d``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Called once per layer: a Keras initializer instance reused unseeded repeats its values.
    """
    if kernel_initializer == "pytorch_default":
        return pytorch_default_initializer()
    if kernel_initializer not in (None, "reference"):
        return tf.keras.initializers.get(kernel_initializer)
    if binary_weights:
        return tf.keras.initializers.RandomUniform(0.0, 1e-3)
    return pytorch_default_initializer()


def pytorch_default_initializer() -> tf.keras.initializers.Initializer:
    """PyTorch's default conv/linear init: kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in))."""
    return tf.keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def _bn(name: str) -> tf.keras.layers.BatchNormalization:
    return tf.keras.layers.BatchNormalization(name=name, **_BN_KWARGS)


def _binary_conv(filters, kernel_size, strides, binary_weights, initializer, name, activations):
    return lq.layers.QuantConv2D(
        filters,
        kernel_size,
        strides=strides,
        # Zero padding applied after the sign (pad_values=0), as the reference pads the
        # binarized activations; see Rotate180 for why "same" is exact at stride 2.
        padding="same",
        pad_values=0.0,
        use_bias=False,
        input_quantizer="approx_sign" if activations else None,
        kernel_quantizer=kernel_quantizer(binary=binary_weights, kernel_size=kernel_size),
        kernel_initializer=initializer,
        name=name,
    )


def _check_even(size: int | None, where: str) -> None:
    if size is not None and size % 2:
        raise ConfigError(
            f"{where} has stride 2 but receives a feature map of odd size {size}: ReActNet's "
            "stride-2 layers need even sizes (the reference's AvgPool shortcut and conv would "
            "disagree in shape). Choose an input size divisible by 2 at every downsampling, "
            "e.g. 224 for ReActNetA, or fewer num_downsamplings for ReActNetSmall."
        )


def reactnet_block(
    x: tf.Tensor,
    out_channels: int,
    *,
    stride: int,
    binary_weights: bool,
    name: str,
    binary_activations: bool = True,
    kernel_initializer=None,
) -> tf.Tensor:
    """One ReActNet-A block from C = ``x.shape[-1]`` to P in {C, 2C} channels (docs/method.md §2).

    ``sign(x + b11) -> bconv3x3 (stride) -> BN -> + shortcut (AvgPool2x2 at stride 2) ->
    RPReLU -> sign(y + b21) -> bconv1x1 (one, or two concatenated when P = 2C) -> BN -> + y ->
    RPReLU``.

    Arguments:
        x: input feature map (NHWC), in the rotated layout of `Rotate180`.
        out_channels: P, equal to or twice the input channels.
        stride: 1 or 2.
        binary_weights: binary (step-2) or real-valued (step-1) conv weights.
        name: prefix of every layer of the block.
        binary_activations: binarize the conv inputs (False only for float baselines and the
            weights-first ablation).
        kernel_initializer: conv kernel initializer; None or "reference" for the reference's.

    Returns:
        The block's output feature map.
    """
    channels = x.shape[-1]
    if out_channels not in (channels, 2 * channels):
        raise ValueError(
            f"{name}: out_channels must be {channels} or {2 * channels}, got {out_channels}"
        )
    if stride == 2:
        _check_even(x.shape[1], f"{name}_conv3x3 (height)")
        _check_even(x.shape[2], f"{name}_conv3x3 (width)")

    def init():
        return _binary_kernel_initializer(binary_weights, kernel_initializer)

    shortcut = x
    y = RSign(name=f"{name}_rsign1")(x)
    y = _binary_conv(
        channels, 3, stride, binary_weights, init(), f"{name}_conv3x3", binary_activations
    )(y)
    y = _bn(f"{name}_bn1")(y)
    if stride == 2:
        shortcut = tf.keras.layers.AveragePooling2D(2, name=f"{name}_pool")(shortcut)
    y = tf.keras.layers.Add(name=f"{name}_add1")([y, shortcut])
    y = RPReLU(name=f"{name}_rprelu1")(y)

    a = RSign(name=f"{name}_rsign2")(y)
    if out_channels == channels:
        z = _binary_conv(
            channels, 1, 1, binary_weights, init(), f"{name}_conv1x1", binary_activations
        )(a)
        z = _bn(f"{name}_bn2")(z)
        out = tf.keras.layers.Add(name=f"{name}_add2")([z, y])
    else:
        branches = []
        for branch in (1, 2):
            z = _binary_conv(
                channels,
                1,
                1,
                binary_weights,
                init(),
                f"{name}_conv1x1_{branch}",
                binary_activations,
            )(a)
            z = _bn(f"{name}_bn2_{branch}")(z)
            branches.append(tf.keras.layers.Add(name=f"{name}_add2_{branch}")([z, y]))
        out = tf.keras.layers.Concatenate(name=f"{name}_concat")(branches)
    return RPReLU(name=f"{name}_rprelu2")(out)


# The layers' calls have no tensor-dependent Python control flow, so converting them with
# AutoGraph while Keras builds the functional graph only costs time (about 4x the build).
@tf.autograph.experimental.do_not_convert
def _reactnet(
    *,
    input_shape: Sequence[int | None],
    channels: Sequence[int],
    stem_stride: int,
    reduction_blocks: Sequence[int],
    num_classes: int,
    include_top: bool,
    binary_weights: bool,
    binary_activations: bool,
    kernel_initializer,
    weights: str | None,
    name: str,
) -> tf.keras.Model:
    if num_classes < 1:
        raise ConfigError(f"num_classes must be positive, got {num_classes}")
    inputs = tf.keras.Input(shape=tuple(input_shape), name="image")
    x = Rotate180(name="rotate_input")(inputs)
    if stem_stride == 2:
        _check_even(x.shape[1], "stem_conv (height)")
        _check_even(x.shape[2], "stem_conv (width)")
    stem_init = (
        pytorch_default_initializer()
        if kernel_initializer in (None, "reference", "pytorch_default")
        else tf.keras.initializers.get(kernel_initializer)
    )
    x = lq.layers.QuantConv2D(
        channels[0],
        3,
        strides=stem_stride,
        padding="same",
        use_bias=False,
        kernel_quantizer=kernel_quantizer(binary=False, kernel_size=3),
        kernel_initializer=stem_init,
        name="stem_conv",
    )(x)
    x = _bn("stem_bn")(x)
    for index in range(1, len(channels)):
        x = reactnet_block(
            x,
            channels[index],
            stride=2 if index in reduction_blocks else 1,
            binary_weights=binary_weights,
            binary_activations=binary_activations,
            kernel_initializer=kernel_initializer,
            name=f"block{index}",
        )
    if include_top:
        x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = tf.keras.layers.Dense(
            num_classes,
            kernel_initializer=pytorch_default_initializer(),
            bias_initializer=pytorch_default_initializer(),
            name="logits",
        )(x)
    else:
        x = Rotate180(name="rotate_features")(x)
    model = tf.keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def ReActNetA(  # CamelCase: the Keras/larq-zoo builder naming
    *,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
    binary_weights: bool = True,
    binary_activations: bool = True,
    kernel_initializer=None,
) -> tf.keras.Model:
    """ReActNet-A, the network of the AdamBNN paper (official PyTorch ``reactnet`` port).

    Binary activations everywhere but the stem and the classifier; binary weights
    (`ChannelScaledSign`) when ``binary_weights``. Outputs logits (no softmax). Matches the
    reference detail by detail: symmetric padding at stride 2, zero padding after the sign,
    BatchNorm eps 1e-5 / momentum 0.9, per-channel PReLU at 0.25, reduction blocks with an
    AvgPool shortcut and two concatenated 1x1 branches.

    | | |
    |---|---|
    | ImageNet top-1 (paper) | 70.5 % (AdamBNN recipe), 69.4 % (ReActNet recipe) |
    | parameters | 29,343,592 trainable (28,253,184 binary); 4.82e9 BOPs, 1.08e7 FLOPs |
    | LCE file | 7.95 MB; see docs/ for measured host latency |

    Arguments:
        input_shape: (height, width, channels); default (224, 224, 3). Sizes must be even at
            every stride-2 layer (224, 192, 160, ... all work).
        num_classes: classifier outputs.
        include_top: add global average pooling and the float classifier; without it the model
            returns the last feature map.
        weights: None (random init) or the path of a weights file of the same architecture.
        binary_weights: True for the step-2 network (binary weights and activations); False for
            the step-1 network (binary activations, real weights), which has the same variables.
        binary_activations: False gives real-valued activations: with ``binary_weights=False``
            the float baseline of the same architecture, with True the weights-first ablation.
        kernel_initializer: None/"reference" for the reference's init (binary latent weights
            U[0, 1e-3), all positive), "pytorch_default" for PyTorch's default conv init in every
            conv (signs random, so C2I is meaningful), or any Keras initializer.

    Returns:
        A `tf.keras.Model`.

    References:
        - Liu et al., "ReActNet", ECCV 2020, arXiv 2003.03488.
        - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization",
          ICML 2021, arXiv 2106.11309.
    """
    return _reactnet(
        input_shape=input_shape or (224, 224, 3),
        channels=REACTNET_A_CHANNELS,
        stem_stride=2,
        reduction_blocks=REACTNET_A_REDUCTION_BLOCKS,
        num_classes=num_classes,
        include_top=include_top,
        binary_weights=binary_weights,
        binary_activations=binary_activations,
        kernel_initializer=kernel_initializer,
        weights=weights,
        name=_model_name("reactnet_a", binary_weights, binary_activations),
    )


def small_channels(width_multiplier: float) -> tuple[int, ...]:
    """ReActNet-A's channel plan scaled by ``width_multiplier`` (at least 4 at the stem)."""
    if width_multiplier <= 0:
        raise ConfigError(f"width_multiplier must be positive, got {width_multiplier}")
    stem = max(4, int(round(REACTNET_A_CHANNELS[0] * width_multiplier)))
    # Every channel count is stem * 2^k, so blocks still either keep or double the width.
    return tuple(stem * c // REACTNET_A_CHANNELS[0] for c in REACTNET_A_CHANNELS)


def ReActNetSmall(  # CamelCase: the Keras/larq-zoo builder naming
    *,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int = 10,
    include_top: bool = True,
    weights: str | None = None,
    binary_weights: bool = True,
    width_multiplier: float = 0.25,
    num_downsamplings: int = 2,
    binary_activations: bool = True,
    kernel_initializer=None,
) -> tf.keras.Model:
    """ReActNet-A's 13 blocks for small images (28-64 px: MNIST, Fashion-MNIST, CIFAR-10).

    Differences from `ReActNetA`, because the ImageNet downsampling leaves too little
    resolution at 32 px: a stride-1 stem, only the first ``num_downsamplings`` of the four
    reduction blocks use stride 2 (the others keep the resolution and still double the
    width), and every width is scaled by ``width_multiplier``. Blocks are identical.

    With the defaults at 28x28x1 (Fashion-MNIST): 28 → 14 → 7 px. See docs/models.md for the
    parameter counts and MACs of the documented configurations.

    Arguments:
        input_shape: default (28, 28, 1); grayscale inputs need no channel repetition.
        num_classes: classifier outputs.
        include_top: as in `ReActNetA`.
        weights: None or the path of a weights file of the same architecture.
        binary_weights: step-2 (True) or step-1 (False) network.
        width_multiplier: scales all channel counts (0.25 → 8 stem channels, 256 at the end).
        num_downsamplings: 0-4 stride-2 reduction blocks, taken in network order.
        binary_activations: as in `ReActNetA`.
        kernel_initializer: as in `ReActNetA`.

    Returns:
        A `tf.keras.Model`.
    """
    if not 0 <= num_downsamplings <= len(REACTNET_A_REDUCTION_BLOCKS):
        raise ConfigError(f"num_downsamplings must be in 0..4, got {num_downsamplings}")
    return _reactnet(
        input_shape=input_shape or (28, 28, 1),
        channels=small_channels(width_multiplier),
        stem_stride=1,
        reduction_blocks=REACTNET_A_REDUCTION_BLOCKS[:num_downsamplings],
        num_classes=num_classes,
        include_top=include_top,
        binary_weights=binary_weights,
        binary_activations=binary_activations,
        kernel_initializer=kernel_initializer,
        weights=weights,
        name=_model_name("reactnet_small", binary_weights, binary_activations),
    )


def _model_name(base: str, binary_weights: bool, binary_activations: bool) -> str:
    if binary_weights and binary_activations:
        return base
    if binary_activations:
        return f"{base}_step1"
    return f"{base}_binary_weights_only" if binary_weights else f"{base}_float"


def binary_conv_layers(model: tf.keras.Model) -> list[lq.layers.QuantConv2D]:
    """The block convs of ``model`` (31 in ReActNet-A), in network order.

    These are the layers whose latent weights the paper's statistics (FF ratio, C2I, CAM) are
    about; they are binary in step 2 and real-valued, with binary inputs, in step 1.
    """
    return [
        layer
        for layer in model.layers
        if isinstance(layer, lq.layers.QuantConv2D) and layer.name.startswith("block")
    ]
