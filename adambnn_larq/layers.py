"""Keras layers of ReActNet-A: RSign's learnable threshold, RPReLU and the input rotation."""

from __future__ import annotations

import tensorflow as tf

_PACKAGE = "adambnn_larq"


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class RSign(tf.keras.layers.Layer):
    r"""The learnable per-channel threshold of ReActNet's RSign: \(x + b\).

    The sign itself is the ``input_quantizer="approx_sign"`` of the `QuantConv2D` that follows,
    so larq counts binary MACs and LCE turns the pair into ``SUB, LceQuantize, LceBconv2d``.
    The output of this layer is exactly the input of the sign, which is what the activation
    saturation statistic of the AdamBNN paper measures.

    Arguments:
        bias_initializer: initializer of the threshold \(b\) (one value per channel).

    References:
        - Liu et al., "ReActNet", ECCV 2020, arXiv 2003.03488 (Eq. 1, ``move11``/``move21``).
    """

    def __init__(self, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.bias = self.add_weight(
            name="bias", shape=(input_shape[-1],), initializer=self.bias_initializer
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs + self.bias

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class RPReLU(tf.keras.layers.Layer):
    r"""ReActNet's RPReLU: \(\mathrm{PReLU}(x + \gamma) + \zeta\) with per-channel slopes.

    Weights: ``shift_in`` (\(\gamma\), ``move12``), ``alpha`` (PReLU slope, starts at 0.25),
    ``shift_out`` (\(\zeta\), ``move13``), one value per channel each.

    Arguments:
        alpha_initializer: initial PReLU slopes (PyTorch's ``nn.PReLU`` starts at 0.25).

    References:
        - Liu et al., "ReActNet", ECCV 2020, arXiv 2003.03488 (Eq. 3).
    """

    def __init__(self, alpha_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = tf.keras.initializers.get(
            alpha_initializer or tf.keras.initializers.Constant(0.25)
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        self.shift_in = self.add_weight(name="shift_in", shape=(channels,), initializer="zeros")
        self.alpha = self.add_weight(
            name="alpha", shape=(channels,), initializer=self.alpha_initializer
        )
        self.shift_out = self.add_weight(name="shift_out", shape=(channels,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        shifted = inputs + self.shift_in
        # Written like Keras' own PReLU. (TF 2.16 + LCE 0.16 still emit NEG/RELU/MUL, not one
        # PRELU op, for either form: measured in docs/deployment.md.)
        negative = -self.alpha * tf.nn.relu(-shifted)
        return tf.nn.relu(shifted) + negative + self.shift_out

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "alpha_initializer": tf.keras.initializers.serialize(self.alpha_initializer),
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class Rotate180(tf.keras.layers.Layer):
    """Rotate feature maps by 180° (reverse height and width).

    ReActNet-A runs on the rotated image so that Keras/LCE ``same`` padding at stride 2 (which
    pads only bottom/right) computes exactly PyTorch's symmetric padding of the reference; the
    3x3 kernels are flipped to match inside their quantizers. Global pooling undoes the rotation.
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.reverse(inputs, axis=[1, 2])

    def compute_output_shape(self, input_shape):
        return input_shape
