"""Real-valued teacher networks for distillation (AdamBNN distills from a frozen teacher)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def SmallTeacher(  # noqa: N802 (Keras/larq-zoo builder naming)
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
            x = tf.keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
            x = tf.keras.layers.ReLU(name=f"{prefix}_relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="small_teacher")
