"""Weight quantizers of ReActNet-A as trained by AdamBNN.

Both quantizers can flip the kernel spatially (180° rotation of each 3x3 filter). The network
runs on a 180°-rotated image (see `adambnn_larq.layers.Rotate180`) so that Keras' ``same``
padding lands where PyTorch's symmetric padding puts its used row and column at stride 2;
flipping the filters inside the quantizer keeps the stored weights in the reference
orientation, so they load one to one from PyTorch and LCE still folds the constant flip.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

_PACKAGE = "adambnn_larq"

#: The attributes of larq's quantized layers that can hold a quantizer (QuantConv2D,
#: QuantDepthwiseConv2D, QuantSeparableConv2D, QuantDense).
QUANTIZER_ATTRIBUTES = (
    "input_quantizer",
    "kernel_quantizer",
    "depthwise_quantizer",
    "pointwise_quantizer",
)


def _spatial_flip(kernel: tf.Tensor) -> tf.Tensor:
    return tf.reverse(kernel, axis=[0, 1])


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ChannelScaledSign(lq.quantizers.Quantizer):
    r"""Binary weights with one scale per output channel and the reference gradient.

    Forward: \(q(W)_o = \alpha_o \operatorname{sign}(W_o)\) with
    \(\alpha_o = \operatorname{mean}|W_o|\) over (kh, kw, in), sign(0) = +1.
    Backward: straight-through, \(\partial q / \partial w = 1\) for \(|w| \le 1\), else 0, and
    no gradient through \(\alpha\).

    larq's `MagnitudeAwareSign` has the same forward pass but multiplies the gradient by
    \(\alpha_o\) (about 5e-4 at the reference initialization), which changes what Adam's epsilon
    and coupled weight decay do. Written as ``stop_gradient(q - clip(w)) + clip(w)`` the LCE
    converter still recognizes a binary filter and folds \(\alpha\) into `LceBconv2d`.

    Arguments:
        flip_spatial: reverse the kernel along both spatial axes before quantizing.

    References:
        - Liu et al., "ReActNet", ECCV 2020, arXiv 2003.03488.
        - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization", ICML 2021.
    """

    precision = 1

    def __init__(self, flip_spatial: bool = False, **kwargs):
        self.flip_spatial = flip_spatial
        super().__init__(**kwargs)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.flip_spatial:
            inputs = _spatial_flip(inputs)
        reduce_axes = list(range(len(inputs.shape) - 1))
        scale = tf.stop_gradient(tf.reduce_mean(tf.abs(inputs), axis=reduce_axes))
        clipped = tf.clip_by_value(inputs, -1.0, 1.0)
        binary = scale * lq.math.sign(inputs)
        return tf.stop_gradient(binary - clipped) + clipped

    def get_config(self) -> dict:
        return {**super().get_config(), "flip_spatial": self.flip_spatial}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SpatialFlip(lq.quantizers.Quantizer):
    """Real-valued (32-bit) weights, optionally flipped spatially; the step-1 kernel quantizer.

    It keeps the step-1 network's variables and arithmetic identical to the reference's real
    convolutions while sharing the rotated-image layout of the step-2 network.

    Arguments:
        flip_spatial: reverse the kernel along both spatial axes.
    """

    precision = 32

    def __init__(self, flip_spatial: bool = True, **kwargs):
        self.flip_spatial = flip_spatial
        super().__init__(**kwargs)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return _spatial_flip(inputs) if self.flip_spatial else inputs

    def get_config(self) -> dict:
        return {**super().get_config(), "flip_spatial": self.flip_spatial}


def kernel_quantizer(*, binary: bool, kernel_size: int) -> lq.quantizers.Quantizer:
    """The kernel quantizer of a ReActNet conv: binary (step 2) or real (step 1).

    Arguments:
        binary: binarize the weights (`ChannelScaledSign`), else keep them real (`SpatialFlip`).
        kernel_size: only kernels larger than 1x1 need the spatial flip.
    """
    flip = kernel_size > 1
    return ChannelScaledSign(flip_spatial=flip) if binary else SpatialFlip(flip_spatial=flip)
