"""Real-valued teacher networks for distillation (AdamBNN distills from a frozen teacher)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def SmallTeacher(  # CamelCase: the Keras/larq-zoo builder naming
    *,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int = 10,
    width: int = 32,
) -> tf.keras.Model:
    """A small real-valued CNN, the teacher of the small-image recipes (stage 0).

    Three stages of two 3x3 conv-BN-ReLU layers (width, 2·width, 4·width channels) with 2x2
    max pooling between them, global average pooling and a dense classifier; outputs logits.
    It plays the role ResNet-34 plays for ImageNet in the official recipe.

    Arguments:
        input_shape: default (28, 28, 1).
        num_classes: classifier outputs.
        width: channels of the first stage.

    Returns:
        A `tf.keras.Model`.
    """
    inputs = tf.keras.Input(shape=tuple(input_shape or (28, 28, 1)), name="image")
    x = inputs
    for stage, channels in enumerate((width, 2 * width, 4 * width), start=1):
        if stage > 1:
            x = tf.keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for conv in (1, 2):
            prefix = f"stage{stage}_conv{conv}"
            x = tf.keras.layers.Conv2D(channels, 3, padding="same", use_bias=False, name=prefix)(x)
            # momentum 0.9: short CPU runs need moving statistics that settle in ~100 steps.
            x = tf.keras.layers.BatchNormalization(name=f"{prefix}_bn", momentum=0.9)(x)
            x = tf.keras.layers.ReLU(name=f"{prefix}_relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="small_teacher")


#: Blocks per stage and channels of ResNet-34 (He et al. 2016, torchvision's layout).
RESNET34_STAGES: tuple[tuple[int, int], ...] = ((64, 3), (128, 4), (256, 6), (512, 3))

# PyTorch's BatchNorm2d defaults; Keras' momentum is one minus PyTorch's.
_TORCH_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _torch_conv(x, filters, kernel_size, stride, name):
    """A bias-free conv with PyTorch's symmetric zero padding (kernel_size // 2 per side).

    At stride 1 Keras' ``same`` is that padding; at stride 2 ``same`` pads only bottom/right,
    so the padding is explicit there.
    """
    pad = kernel_size // 2
    padding = "same"
    if stride > 1 and pad:
        x = tf.keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    return tf.keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding=padding,
        use_bias=False,
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        kernel_initializer=tf.keras.initializers.VarianceScaling(
            2.0, "fan_out", "untruncated_normal"
        ),
        name=name,
    )(x)


def _basic_block(x, channels, stride, name):
    shortcut = x
    y = _torch_conv(x, channels, 3, stride, f"{name}_conv1")
    y = tf.keras.layers.BatchNormalization(name=f"{name}_bn1", **_TORCH_BN)(y)
    y = tf.keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _torch_conv(y, channels, 3, 1, f"{name}_conv2")
    y = tf.keras.layers.BatchNormalization(name=f"{name}_bn2", **_TORCH_BN)(y)
    if stride != 1 or x.shape[-1] != channels:
        shortcut = _torch_conv(x, channels, 1, stride, f"{name}_downsample_conv")
        shortcut = tf.keras.layers.BatchNormalization(name=f"{name}_downsample_bn", **_TORCH_BN)(
            shortcut
        )
    y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return tf.keras.layers.ReLU(name=f"{name}_relu2")(y)


def ResNet34(  # CamelCase: the Keras/larq-zoo builder naming
    *,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int = 1000,
    include_top: bool = True,
    weights: str | None = None,
) -> tf.keras.Model:
    """ResNet-34 exactly as torchvision builds it: the teacher of the official AdamBNN recipe.

    Same arithmetic as ``torchvision.models.resnet34``: 7x7 stride-2 stem with symmetric
    padding 3, 3x3 stride-2 max pooling with padding 1, BasicBlocks with the stride on the
    first 3x3 conv and a 1x1 conv + BN shortcut where the shape changes, BatchNorm eps 1e-5,
    global average pooling and a dense classifier; outputs logits. Keras' ``same`` padding is
    asymmetric at stride 2, so stride-2 layers pad explicitly. Float only (never converted
    with LCE). Layer names follow torchvision's keys with ``_`` for ``.`` (``layer2_0_conv1``,
    ``layer2_0_downsample_conv``), the classifier is ``logits``;
    `adambnn_larq.deploy.pytorch_import` imports torchvision's ImageNet weights into it. Inputs
    are NHWC images normalized like torchvision's (mean 0.485, 0.456, 0.406; std 0.229, 0.224,
    0.225).

    Arguments:
        input_shape: (height, width, channels); default (224, 224, 3). Any size works,
            including ``(None, None, 3)``.
        num_classes: classifier outputs.
        include_top: add global average pooling and the classifier; without it the model
            returns the last feature map (512 channels).
        weights: None (random init) or the path of a weights file of the same architecture.

    Returns:
        A `tf.keras.Model` with 21,797,672 trainable parameters at 1000 classes.

    References:
        - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
          arXiv 1512.03385.
        - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization",
          ICML 2021, arXiv 2106.11309 (ResNet-34 teacher).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    inputs = tf.keras.Input(shape=tuple(input_shape or (224, 224, 3)), name="image")
    x = _torch_conv(inputs, 64, 7, 2, "conv1")
    x = tf.keras.layers.BatchNormalization(name="bn1", **_TORCH_BN)(x)
    x = tf.keras.layers.ReLU(name="relu")(x)
    # Zero padding equals PyTorch's -inf padding of the max pool here: its inputs are >= 0.
    x = tf.keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = tf.keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (channels, blocks) in enumerate(RESNET34_STAGES, start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, channels, stride, f"layer{stage}_{block}")
    if include_top:
        x = tf.keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = tf.keras.layers.Dense(
            num_classes,
            # PyTorch's nn.Linear default: U(+-1/sqrt(fan_in)).
            kernel_initializer=tf.keras.initializers.VarianceScaling(
                1.0 / 3.0, "fan_in", "uniform"
            ),
            name="logits",
        )(x)
    model = tf.keras.Model(inputs, x, name="resnet34")
    if weights is not None:
        model.load_weights(weights)
    return model
