"""The deployment graph of ReActNet: the same function with fewer float ops around the binary convs.

Converted as trained, every ReActNet block costs LCE a trail of float element-wise ops: each
RPReLU becomes ``ADD(shift_in), NEG, RELU, MUL, RELU, ADD, ADD(shift_out)`` and each RSign
threshold an ``ADD`` before ``LceQuantize``. `fold_for_deployment` rebuilds a ReActNet built by
this package (`ReActNetA`, `ReActNetSmall`, or one imported from the official checkpoint) as
a new Keras model that computes the same function with fewer ops, using exact algebra only:

- **Per-channel offsets travel along the residual stream.** The stream is carried as
  \\(c = x + p\\) for a per-channel constant \\(p\\). RPReLU's output shift \\(\\zeta\\) is not
  added: the next consumers absorb it. Adding a constant commutes with the 2x2 average pool
  of the reduction shortcut, with concatenation and with global average pooling, so:
  - the input shift \\(\\gamma\\) of an RPReLU and the offsets arriving through the shortcut go
    into the ``beta`` of the BatchNorm that LCE folds into the binary conv before it
    (\\(\\beta' = \\beta + \\gamma - p\\)): no op at all;
  - an RSign threshold \\(b\\) becomes one ``ADD`` of \\(b - p\\) (none when that is zero,
    e.g. after the stem, whose BatchNorm carries the first threshold);
  - the offset that reaches the classifier goes into its bias (\\(b' = b - pK\\)).
- **PReLU as two ops.** \\(\\mathrm{PReLU}_\\alpha(s) = \\max(s, \\alpha s)\\) when every slope
  \\(\\alpha \\le 1\\) (``MUL, MAXIMUM``; bit-identical to the trained layer's arithmetic), and
  \\(\\min(s, \\alpha s)\\) when every \\(\\alpha \\ge 1\\); mixed slopes use
  \\(s + (\\alpha - 1)\\min(s, 0)\\) (``MINIMUM, MUL, ADD``).

Only float additions are reassociated, so the outputs equal the trained model's up to float
rounding; as for any conversion, ``adambnn verify`` (or `verify_conversion`) against the
*trained* Keras model is the proof on real images. The trained model is not modified.

References:
    - Liu et al., "ReActNet", ECCV 2020, arXiv 2003.03488 (RSign Eq. 1, RPReLU Eq. 3).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import tensorflow as tf

from adambnn_larq.layers import Rotate180, RPReLU, RSign

_PACKAGE = "adambnn_larq"

PReLUForm = Literal["maximum", "minimum", "mixed"]


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FoldedPReLU(tf.keras.layers.Layer):
    r"""PReLU with per-channel slopes \(\alpha\) in as few TFLite ops as the slopes allow.

    ``form="maximum"`` computes \(\max(x, \alpha x)\) (every \(\alpha \le 1\)),
    ``"minimum"`` \(\min(x, \alpha x)\) (every \(\alpha \ge 1\)), ``"mixed"``
    \(x + (\alpha - 1)\min(x, 0)\) (any slopes). Use `prelu_form` to choose.

    Arguments:
        form: one of ``"maximum"``, ``"minimum"``, ``"mixed"``.
    """

    def __init__(self, form: PReLUForm = "mixed", **kwargs):
        super().__init__(**kwargs)
        if form not in ("maximum", "minimum", "mixed"):
            raise ValueError(f"unknown PReLU form {form!r}")
        self.form = form

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.form == "maximum":
            return tf.maximum(inputs, inputs * self.alpha)
        if self.form == "minimum":
            return tf.minimum(inputs, inputs * self.alpha)
        return inputs + (self.alpha - 1.0) * tf.minimum(inputs, 0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "form": self.form}


def prelu_form(alpha: np.ndarray) -> PReLUForm:
    """The cheapest exact `FoldedPReLU` form for the slopes ``alpha``."""
    if np.all(alpha <= 1.0):
        return "maximum"
    if np.all(alpha >= 1.0):
        return "minimum"
    return "mixed"


class NotFoldableError(ValueError):
    """The model is not a ReActNet built by this package (its layer names are unknown)."""


def _clone(layer: tf.keras.layers.Layer, name: str | None = None) -> tf.keras.layers.Layer:
    config = layer.get_config()
    if name is not None:
        config["name"] = name
    return layer.__class__.from_config(config)


def _apply_cloned(layer, inputs, weights=None):
    """Call a fresh copy of ``layer`` on ``inputs`` and give it ``weights`` (default: its own)."""
    clone = _clone(layer)
    outputs = clone(inputs)
    clone.set_weights(layer.get_weights() if weights is None else weights)
    return outputs


def _shifted_batch_norm(layer: tf.keras.layers.BatchNormalization, inputs, shift: np.ndarray):
    """``layer(inputs) + shift`` as one BatchNorm (its beta moved by ``shift``)."""
    if not (layer.center and layer.scale):
        raise NotFoldableError(f"{layer.name}: BatchNorm without beta/gamma cannot absorb shifts")
    gamma, beta, mean, variance = layer.get_weights()
    return _apply_cloned(layer, inputs, [gamma, beta + shift, mean, variance])


def _threshold(name: str, inputs, bias: np.ndarray):
    layer = RSign(name=name)
    outputs = layer(inputs)
    layer.set_weights([bias.astype(np.float32)])
    return outputs


def _prelu(name: str, inputs, alpha: np.ndarray):
    layer = FoldedPReLU(form=prelu_form(alpha), name=name)
    outputs = layer(inputs)
    layer.set_weights([alpha.astype(np.float32)])
    return outputs


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}


class _Layers:
    def __init__(self, model: tf.keras.Model):
        self.by_name = {layer.name: layer for layer in model.layers}
        self.model_name = model.name

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __getitem__(self, name: str) -> tf.keras.layers.Layer:
        try:
            return self.by_name[name]
        except KeyError:
            raise NotFoldableError(
                f"model {self.model_name!r} has no layer {name!r}: only ReActNets built by "
                "adambnn_larq (ReActNetA, ReActNetSmall, imported checkpoints) can be folded"
            ) from None


def _block(layers: _Layers, prefix: str, carried, offset: np.ndarray):
    """One folded block: input carried as x + offset; returns (output carried, its offset)."""
    rsign1 = _weights(layers[f"{prefix}_rsign1"])["bias"]
    rprelu1 = _weights(layers[f"{prefix}_rprelu1"])
    rprelu2 = _weights(layers[f"{prefix}_rprelu2"])
    for name in (f"{prefix}_rprelu1", f"{prefix}_rprelu2"):
        if not isinstance(layers[name], RPReLU):
            raise NotFoldableError(f"{name} is not an RPReLU layer")

    signed = _threshold(f"{prefix}_rsign1", carried, rsign1 - offset)
    z = _apply_cloned(layers[f"{prefix}_conv3x3"], signed)
    shortcut = carried
    if f"{prefix}_pool" in layers:
        shortcut = _apply_cloned(layers[f"{prefix}_pool"], carried)
    # y + shift_in = bn1(z) + (x + offset) - offset + shift_in
    z = _shifted_batch_norm(layers[f"{prefix}_bn1"], z, rprelu1["shift_in"] - offset)
    s1 = tf.keras.layers.Add(name=f"{prefix}_add1")([z, shortcut])
    # r1 = rprelu1(y) - shift_out1: the stream now carries offset -shift_out1.
    r1 = _prelu(f"{prefix}_rprelu1", s1, rprelu1["alpha"])
    offset1 = -rprelu1["shift_out"]

    signed = _threshold(
        f"{prefix}_rsign2", r1, _weights(layers[f"{prefix}_rsign2"])["bias"] - offset1
    )
    channels = r1.shape[-1]
    if f"{prefix}_conv1x1" in layers:
        branches = [("", slice(0, channels))]
    else:
        branches = [("_1", slice(0, channels)), ("_2", slice(channels, 2 * channels))]
    outputs = []
    for suffix, part in branches:
        z = _apply_cloned(layers[f"{prefix}_conv1x1{suffix}"], signed)
        # out + shift_in2 = bn2(z) + (r1 + offset1) - offset1 + shift_in2
        z = _shifted_batch_norm(
            layers[f"{prefix}_bn2{suffix}"], z, rprelu2["shift_in"][part] - offset1
        )
        outputs.append(tf.keras.layers.Add(name=f"{prefix}_add2{suffix}")([z, r1]))
    s2 = (
        outputs[0]
        if len(outputs) == 1
        else tf.keras.layers.Concatenate(name=f"{prefix}_concat")(outputs)
    )
    r2 = _prelu(f"{prefix}_rprelu2", s2, rprelu2["alpha"])
    return r2, -rprelu2["shift_out"]


def fold_for_deployment(model: tf.keras.Model) -> tf.keras.Model:
    """A new Keras model computing ``model``'s function with RPReLU/RSign constants folded.

    Arguments:
        model: a ReActNet built by `ReActNetA` / `ReActNetSmall` (any training step, with or
            without the classifier).

    Returns:
        The deployment model (new layers and weights; ``model`` is not changed). Its name is
        ``model.name``, its input and output shapes are ``model``'s.

    Raises:
        NotFoldableError: ``model`` is not such a ReActNet.
    """
    layers = _Layers(model)
    inputs = tf.keras.Input(shape=model.input_shape[1:], name="image", dtype=model.input.dtype)
    x = Rotate180(name="rotate_input")(inputs)
    if not isinstance(layers["rotate_input"], Rotate180):
        raise NotFoldableError("rotate_input is not a Rotate180 layer")
    x = _apply_cloned(layers["stem_conv"], x)
    # The stem's BatchNorm carries block 1's first threshold, whose ADD then disappears.
    offset = _weights(layers["block1_rsign1"])["bias"]
    x = _shifted_batch_norm(layers["stem_bn"], x, offset)
    index = 1
    while f"block{index}_rsign1" in layers:
        x, offset = _block(layers, f"block{index}", x, offset)
        index += 1
    if "logits" in layers:
        x = _apply_cloned(layers["global_pool"], x)
        dense = layers["logits"]
        kernel, bias = dense.get_weights()
        # mean(x + offset) = mean(x) + offset, and (m - offset) K + b = m K + (b - offset K).
        x = _apply_cloned(dense, x, [kernel, bias - offset @ kernel])
    else:
        x = _threshold("restore_offset", x, -offset)
        x = Rotate180(name="rotate_features")(x)
    return tf.keras.Model(inputs, x, name=model.name)
