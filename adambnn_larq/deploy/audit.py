"""What LCE will make of a Larq Keras model, read from the model before converting it: which
quantized layers become binary kernels (`audit_binary_layers`), which convs are float by design,
whether the dtype policy converts at all, and which binary convs a converted model lacks.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import larq as lq
import tensorflow as tf

from adambnn_larq.errors import ConversionError
from adambnn_larq.quantizers import QUANTIZER_ATTRIBUTES


@dataclasses.dataclass(frozen=True)
class LayerFinding:
    """What LCE will do with one quantized Keras layer.

    Attributes:
        name: the Keras layer name.
        kind: ``"binary_conv"`` (a QuantConv2D with 1-bit inputs and weights, which should
            become an ``LceBconv2d``) or ``"unaccelerated"`` (any other quantized layer).
        reason: why the layer will not be accelerated; empty when it should be.
        signature: (kh, kw, in, out, stride_h, stride_w) for convs, else None.
    """

    name: str
    kind: str
    reason: str = ""
    signature: tuple[int, ...] | None = None


def _precision(quantizer: Any) -> int | None:
    """Bits of a larq quantizer (1 for sign-like ones); None if unquantized or unknown."""
    if quantizer is None:
        return None
    return getattr(quantizer, "precision", None)


def audit_binary_layers(model: tf.keras.Model, *, target: str = "arm") -> list[LayerFinding]:
    """Classify every quantized layer of ``model`` by what LCE will make of it.

    Rules (larq-compute-engine 0.16, checked by the tests of this module):

    - a ``QuantConv2D`` with 1-bit input *and* kernel quantizers (kind ``"binary_conv"``)
      becomes ``LceBconv2d``; on ``target="xcore"`` only without zero padding (a
      ``"same"``/``pad_values=0`` one gets a reason and stays float: measured, not documented);
    - binary ``QuantDense``, ``QuantDepthwiseConv2D`` and every other quantized layer type run
      as float ops;
    - a binary kernel with real-valued inputs, binary inputs with real-valued weights (the
      step-1 network) and multi-bit quantizers run as float ops.

    Arguments:
        model: a Keras model built from larq layers.
        target: ``"arm"`` or ``"xcore"``.

    Returns:
        One `LayerFinding` per layer with any 1-bit or multi-bit quantizer, in model order.
    """
    findings = []
    for layer in _all_layers(model):
        precisions = {
            attribute: _precision(getattr(layer, attribute))
            for attribute in QUANTIZER_ATTRIBUTES
            if getattr(layer, attribute, None) is not None
        }
        if any(p is not None and p < 32 for p in precisions.values()):
            findings.append(_finding(layer, precisions, target))
    return findings


def _finding(
    layer: tf.keras.layers.Layer, precisions: dict[str, int | None], target: str
) -> LayerFinding:
    """What LCE makes of one layer with a quantizer below 32 bits."""
    multi_bit = {a: p for a, p in precisions.items() if p is not None and 1 < p < 32}
    kind_name = type(layer).__name__
    if multi_bit:
        details = ", ".join(f"{a}={p}-bit" for a, p in multi_bit.items())
        return LayerFinding(
            layer.name,
            "unaccelerated",
            f"{kind_name} with a multi-bit quantizer ({details}): LCE accelerates "
            "1-bit layers only, this one runs in float",
        )
    if type(layer) is not lq.layers.QuantConv2D:
        what = {
            "QuantDense": "binary Dense: LCE has no binary fully-connected kernel (it "
            "becomes LceDequantize + float FULLY_CONNECTED); a 1x1 QuantConv2D is the "
            "accelerated equivalent",
            "QuantDepthwiseConv2D": "binary depthwise conv: LCE has no binary depthwise "
            "kernel, it runs as a float DEPTHWISE_CONV_2D",
        }.get(kind_name, f"{kind_name}: LCE accelerates only QuantConv2D, this runs in float")
        return LayerFinding(layer.name, "unaccelerated", what)
    signature = (*layer.kernel.shape, *layer.strides)
    if precisions.get("input_quantizer") != 1:
        return LayerFinding(
            layer.name,
            "unaccelerated",
            "binary kernel but real-valued inputs (no 1-bit input_quantizer): runs "
            "as a float CONV_2D",
            signature,
        )
    if precisions.get("kernel_quantizer") != 1:
        return LayerFinding(
            layer.name,
            "unaccelerated",
            "binary inputs but real-valued weights (a step-1 model?): runs as "
            "LceDequantize + float CONV_2D",
            signature,
        )
    if (
        target == "xcore"
        and layer.padding == "same"
        and float(getattr(layer, "pad_values", 0.0)) == 0.0
    ):
        return LayerFinding(
            layer.name,
            "binary_conv",
            "zero-padded ('same', pad_values=0) binary conv: LCE's xcore target "
            "supports one-padding only, this runs as a float CONV_2D",
            signature,
        )
    return LayerFinding(layer.name, "binary_conv", "", signature)


def _all_layers(model: tf.keras.Model) -> Iterator[tf.keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, type(model)) or hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def _float_conv_signatures(model: tf.keras.Model) -> Counter:
    """Convs of the Keras model that are float by design (no quantizer at all, e.g. a stem)."""
    found: Counter = Counter()
    for layer in _all_layers(model):
        if type(layer).__name__ in ("Conv2D", "QuantConv2D") and isinstance(
            layer, tf.keras.layers.Conv2D
        ):
            quantizers = [getattr(layer, a, None) for a in ("input_quantizer", "kernel_quantizer")]
            if all(_precision(q) in (None, 32) for q in quantizers):
                signature = (*layer.kernel.shape, *layer.strides)
                found[signature] += 1
    return found


def check_dtype_policy(model: tf.keras.Model) -> None:
    """Raise `ConversionError` unless every layer computes in float32 (LCE's requirement)."""
    offending = []
    for layer in _all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        name = getattr(policy, "name", "float32")
        if name != "float32":
            offending.append(f"{layer.name} ({name})")
    if offending:
        shown = ", ".join(offending[:5]) + (" ..." if len(offending) > 5 else "")
        raise ConversionError(
            f"unsupported dtype policy: {len(offending)} layer(s) do not compute in float32: "
            f"{shown}. LCE converts float32 models only; rebuild the model under the "
            "'float32' policy and copy the weights (model.get_weights/set_weights)."
        )


def has_binary_layers(model: tf.keras.Model) -> bool:
    """Whether any layer has a 1-bit larq quantizer (what makes LCE's conversion worth it)."""
    return any(
        _precision(getattr(layer, attribute, None)) == 1
        for layer in _all_layers(model)
        for attribute in QUANTIZER_ATTRIBUTES
    )


def float_convs_by_design(model: tf.keras.Model) -> int:
    """How many convs of the Keras model are float by design (no quantizer, e.g. a stem)."""
    return sum(_float_conv_signatures(model).values())


def missing_bconvs(findings: list[LayerFinding], converted: Counter) -> list[str]:
    """Binary convs without a matching LceBconv2d, matched by (kernel, channels, strides).

    When k of n same-shaped convs are missing, the k cannot be told apart by shape: the
    message then names the whole group.
    """
    groups: dict[tuple | None, list[str]] = {}
    for finding in findings:
        if finding.kind == "binary_conv":
            groups.setdefault(finding.signature, []).append(finding.name)
    missing = []
    for signature, names in groups.items():
        shortfall = len(names) - converted.get(signature, 0)
        if shortfall <= 0:
            continue
        if shortfall == len(names):
            missing.extend(names)
        else:
            missing.append(f"{shortfall} of [{', '.join(names)}]")
    return missing
