"""The measurements of the AdamBNN paper as plain functions, and its two-dimensional toy.

Everything here works on NumPy arrays (or reads a Keras model/optimizer) and has no side
effects; `adambnn_larq.callbacks` computes the same quantities on device during training and
`adambnn_larq.reports` reads what the callbacks wrote. Definitions follow docs/method.md §4
and docs/analysis.md:

- sign convention: \\(\\operatorname{sign}(0) = +1\\), as in larq and LCE;
- FF ratio (flip-flop): share of latent weights whose sign changed in one iteration, over all
  analysed kernels together (weighted by parameter count);
- C2I ratio: share of latent weights whose current sign equals their initial sign;
- activation saturation: share of the inputs of a sign activation with \\(|a| > 1\\);
- CAM/SDAM: channel-wise absolute mean of a kernel and its standard deviation over channels;
- dead weights: share of latent weights whose gradient magnitude stayed below a threshold.

References:
    - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization", ICML 2021,
      arXiv 2106.11309 (the FF and C2I definitions, Table 1); docs/method.md §4.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import larq as lq
import numpy as np
import tensorflow as tf

from adambnn_larq.models import binary_conv_layers

#: Default bin edges of the latent-weight histograms: 0.02 wide over [-2, 2], plus one
#: underflow and one overflow bin, so the three peaks (near 0 and beyond ±1) are resolved.
DEFAULT_HISTOGRAM_RANGE: tuple[float, float] = (-2.0, 2.0)
DEFAULT_HISTOGRAM_BINS: int = 200

#: Bin edges (log10 |g|) of the per-weight max-gradient histograms that accompany the dead
#: weight share, so another threshold can be applied afterwards.
GRADIENT_LOG10_EDGES: np.ndarray = np.arange(-16.0, 2.01, 0.25)


# --------------------------------------------------------------------------------------
# Layers and variables
# --------------------------------------------------------------------------------------


def latent_kernel(layer: tf.keras.layers.Layer) -> tf.Variable:
    """The latent (real-valued, trained) kernel variable of ``layer``.

    larq wraps quantized kernels in a `QuantizedVariable`; its ``latent_variable`` is what the
    optimizer updates and what the paper's statistics are about. Plain Keras kernels are
    returned as they are.
    """
    kernel = layer.kernel
    return getattr(kernel, "latent_variable", kernel)


def analysis_layers(
    model: tf.keras.Model, layer_names: Sequence[str] | None = None
) -> list[tf.keras.layers.Layer]:
    """The layers whose latent kernels the statistics are computed on.

    Arguments:
        model: the BNN (a functional or sequential Keras model).
        layer_names: explicit layer names, in the order to report them. Default: the block
            convs of ReActNet (`adambnn_larq.binary_conv_layers`, 31 in ReActNet-A); for other
            larq models every layer with a kernel quantizer.

    Returns:
        The layers, each with a ``kernel``.

    Raises:
        ValueError: an unknown name, a layer without kernel, or no layer found.
    """
    if layer_names is not None:
        by_name = {layer.name: layer for layer in model.layers}
        missing = [name for name in layer_names if name not in by_name]
        if missing:
            raise ValueError(f"model {model.name!r} has no layers named {missing}")
        layers = [by_name[name] for name in layer_names]
        without_kernel = [layer.name for layer in layers if not hasattr(layer, "kernel")]
        if without_kernel:
            raise ValueError(f"layers {without_kernel} have no kernel to analyse")
        return layers

    layers = binary_conv_layers(model)
    if not layers:
        layers = [
            layer
            for layer in model.layers
            if getattr(layer, "kernel_quantizer", None) is not None and hasattr(layer, "kernel")
        ]
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no ReActNet block convs and no layer with a larq kernel "
            "quantizer; pass layer_names=[...] to choose the kernels to analyse"
        )
    return layers


def sign_input_tensors(model: tf.keras.Model) -> list[tuple[str, Any]]:
    """The symbolic inputs of every binary (1-bit) activation quantizer of ``model``.

    A larq layer with a 1-bit ``input_quantizer`` (``approx_sign``, ``ste_sign``, ...)
    binarizes its input, so that input is what the saturation statistic measures. In ReActNet
    these are the outputs of the RSign layers; the two 1x1 branches of a reduction block share
    one input, which is counted once.

    Returns:
        ``(name, tensor)`` pairs in network order, named after the layer producing the tensor.
    """
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    for layer in model.layers:
        quantizer = getattr(layer, "input_quantizer", None)
        if quantizer is None or getattr(quantizer, "precision", None) != 1:
            continue
        tensor = layer.input
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        history = getattr(tensor, "_keras_history", None)
        name = history.layer.name if history is not None else f"{layer.name}_input"
        found.append((name, tensor))
    return found


def second_moment(
    optimizer: tf.keras.optimizers.Optimizer, variable: tf.Variable
) -> tf.Variable | None:
    """Adam's second-moment estimate \\(v\\) of ``variable``, or None if there is none.

    tf-keras 2.16 optimizers keep Adam's \\(v\\) in ``_velocities`` indexed through
    ``_index_dict[_var_key(variable)]`` (there is no public accessor); legacy optimizers expose
    the slot ``"v"`` through ``get_slot``. Loss-scale wrappers are unwrapped. SGD, or an
    optimizer that has not taken its first step yet, gives None.

    Note: Keras' \\(v\\) is not bias-corrected: after \\(t\\) steps of a constant gradient
    \\(g\\) it equals \\((1 - \\beta_2^t) g^2\\).
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    variable = getattr(variable, "latent_variable", variable)
    velocities = getattr(optimizer, "_velocities", None)
    index = getattr(optimizer, "_index_dict", None)
    if velocities is not None and index is not None:
        position = index.get(optimizer._var_key(variable))
        return None if position is None else velocities[position]
    if hasattr(optimizer, "get_slot"):
        try:
            return optimizer.get_slot(variable, "v")
        except (KeyError, ValueError, AttributeError):
            return None
    return None


# --------------------------------------------------------------------------------------
# Metrics on NumPy arrays
# --------------------------------------------------------------------------------------


def nonnegative(weights: np.ndarray) -> np.ndarray:
    """The sign of ``weights`` as a boolean array: True for +1 (w >= 0), False for -1."""
    return np.asarray(weights) >= 0


def _as_signs(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values if values.dtype == np.bool_ else nonnegative(values)


def _check_pairs(first: Sequence[np.ndarray], second: Sequence[np.ndarray], what: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{what}: {len(first)} layers against {len(second)}")
    for index, (a, b) in enumerate(zip(first, second)):
        if np.shape(a) != np.shape(b):
            raise ValueError(f"{what}: layer {index} has shapes {np.shape(a)} and {np.shape(b)}")


def flip_counts(previous: Sequence[np.ndarray], current: Sequence[np.ndarray]) -> np.ndarray:
    """Per layer, how many weights changed sign between ``previous`` and ``current``.

    Arguments:
        previous: per layer, weights (or boolean signs from `nonnegative`) before the step.
        current: per layer, weights (or signs) after the step.

    Returns:
        int64 array, one count per layer.
    """
    _check_pairs(previous, current, "flip_counts")
    return np.array(
        [np.count_nonzero(_as_signs(a) != _as_signs(b)) for a, b in zip(previous, current)],
        dtype=np.int64,
    )


def ff_ratio(
    previous: Sequence[np.ndarray], current: Sequence[np.ndarray]
) -> tuple[float, np.ndarray]:
    """The FF (flip-flop) ratio of one iteration, global and per layer.

    \\(\\mathrm{FF} = \\sum I[\\operatorname{sign}(w_{t+1}) \\ne \\operatorname{sign}(w_t)] /
    N\\); the global value divides the flips of all layers by their total size, so large
    layers weigh more (it is not the mean of the per-layer ratios).

    Arguments:
        previous: per layer, latent weights (or signs) at iteration t.
        current: per layer, latent weights (or signs) at iteration t + 1.

    Returns:
        ``(global_ratio, per_layer_ratios)``.

    References:
        - Liu et al., ICML 2021 (the FF ratio); docs/method.md §4.4.
    """
    counts = flip_counts(previous, current)
    sizes = np.array([np.size(a) for a in previous], dtype=np.float64)
    return float(counts.sum() / sizes.sum()), counts / sizes


def c2i_ratio(
    initial: Sequence[np.ndarray], current: Sequence[np.ndarray]
) -> tuple[float, np.ndarray]:
    """The C2I ratio: share of latent weights whose sign equals their initial sign.

    \\(\\mathrm{C2I} = 1 - \\#\\{\\operatorname{sign}(w) \\ne \\operatorname{sign}(w_0)\\} / N\\)
    (docs/method.md §4.5: the paper's extra factor 1/2 contradicts its own Table 1).

    Arguments:
        initial: per layer, initial weights or boolean signs.
        current: per layer, current weights or signs.

    Returns:
        ``(global_ratio, per_layer_ratios)``.
    """
    counts = flip_counts(initial, current)
    sizes = np.array([np.size(a) for a in initial], dtype=np.float64)
    return float(1.0 - counts.sum() / sizes.sum()), 1.0 - counts / sizes


def saturation(activations: np.ndarray, threshold: float = 1.0) -> float:
    """Share of the inputs of a sign activation with \\(|a| >\\) ``threshold``.

    With the ApproxSign/STE surrogates these inputs get no gradient.
    """
    activations = np.asarray(activations)
    return float(np.count_nonzero(np.abs(activations) > threshold) / activations.size)


def channel_abs_mean(kernel: np.ndarray) -> np.ndarray:
    """CAM: mean \\(|W|\\) over everything but the output channel (Keras layout, last axis).

    For a Keras conv kernel (kh, kw, in, out) this is the paper's
    \\(\\mathrm{CAM}_o = \\operatorname{mean}_{i,k,k} |W_{o,i,k,k}|\\) of the PyTorch layout.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).mean(axis=0)


def sdam(kernel: np.ndarray) -> float:
    """SDAM: the (population) standard deviation over output channels of `channel_abs_mean`."""
    return float(np.std(channel_abs_mean(kernel)))


def share_beyond(weights: np.ndarray, bound: float = 1.0) -> float:
    """Share of latent weights with \\(|w| >\\) ``bound`` (the outer peaks of the histogram)."""
    weights = np.asarray(weights)
    return float(np.count_nonzero(np.abs(weights) > bound) / weights.size)


def histogram_edges(
    value_range: tuple[float, float] = DEFAULT_HISTOGRAM_RANGE, bins: int = DEFAULT_HISTOGRAM_BINS
) -> np.ndarray:
    """Inner bin edges of `weight_histogram` (``bins + 1`` values)."""
    low, high = value_range
    if not high > low or bins < 1:
        raise ValueError(f"histogram range must be increasing and bins >= 1, got {value_range}")
    return np.linspace(low, high, bins + 1)


def weight_histogram(weights: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``weights`` in ``[-inf, e0), [e0, e1), ..., [e_n-1, e_n], (e_n, inf]``.

    Returns:
        int64 array of ``len(edges) + 1`` counts: underflow, the inner bins, overflow.
    """
    weights = np.asarray(weights, dtype=np.float64).ravel()
    edges = np.asarray(edges, dtype=np.float64)
    steps = np.diff(edges)
    if np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        # Equal bins: numpy's fast path (explicit edges would sort all the weights).
        inner, _ = np.histogram(weights, bins=len(steps), range=(edges[0], edges[-1]))
    else:
        inner, _ = np.histogram(weights, bins=edges)
    below = np.count_nonzero(weights < edges[0])
    above = np.count_nonzero(weights > edges[-1])
    return np.concatenate([[below], inner, [above]]).astype(np.int64)


def dead_weight_share(gradient_abs_max: np.ndarray, threshold: float) -> float:
    """Share of weights whose largest gradient magnitude over a window is below ``threshold``.

    Arguments:
        gradient_abs_max: per weight, max |dL/dw| over the window.
        threshold: a weight counts as dead when its max is strictly below it (0 counts only
            weights with exactly zero gradient throughout: use `zero_gradient_share`).
    """
    gradient_abs_max = np.asarray(gradient_abs_max)
    return float(np.count_nonzero(gradient_abs_max < threshold) / gradient_abs_max.size)


def zero_gradient_share(gradient_abs_max: np.ndarray) -> float:
    """Share of weights whose gradient was exactly zero at every step of the window."""
    gradient_abs_max = np.asarray(gradient_abs_max)
    return float(np.count_nonzero(gradient_abs_max == 0) / gradient_abs_max.size)


def gradient_log10_histogram(gradient_abs_max: np.ndarray) -> np.ndarray:
    """Counts of log10 max|g| in `GRADIENT_LOG10_EDGES`, with exact zeros in bin 0.

    Returns:
        int64 array of ``len(GRADIENT_LOG10_EDGES) + 2`` counts: exact zeros, below the first
        edge, the inner bins, above the last edge.
    """
    values = np.asarray(gradient_abs_max, dtype=np.float64).ravel()
    zeros = np.count_nonzero(values == 0)
    logs = np.log10(values[values > 0])
    inner, _ = np.histogram(logs, bins=GRADIENT_LOG10_EDGES)
    below = np.count_nonzero(logs < GRADIENT_LOG10_EDGES[0])
    above = np.count_nonzero(logs > GRADIENT_LOG10_EDGES[-1])
    return np.concatenate([[zeros, below], inner, [above]]).astype(np.int64)


# --------------------------------------------------------------------------------------
# Sign files
# --------------------------------------------------------------------------------------


def load_signs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a sign file written by `adambnn_larq.callbacks.save_initial_signs`.

    Returns:
        Layer name -> boolean array (True where the latent weight was >= 0).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ``.npz`` of boolean arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sign file not found: {path}")
    try:
        # allow_pickle=False: a data file must never run code when read.
        with np.load(path, allow_pickle=False) as archive:
            signs = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz sign file ({error})") from error
    wrong = [name for name, value in signs.items() if value.dtype != np.bool_]
    if wrong:
        raise ValueError(f"{path}: arrays {wrong} are not boolean signs")
    return signs


def match_signs(
    signs: Mapping[str, np.ndarray], layers: Sequence[tf.keras.layers.Layer], source: str
) -> list[np.ndarray]:
    """``signs`` ordered like ``layers``, checking that names and shapes agree.

    Raises:
        ValueError: a layer is missing from ``signs`` or has another shape; names ``source``.
    """
    ordered = []
    for layer in layers:
        if layer.name not in signs:
            raise ValueError(
                f"{source}: no signs for layer {layer.name!r} (it has {sorted(signs)[:5]}...)"
            )
        expected = tuple(latent_kernel(layer).shape)
        if signs[layer.name].shape != expected:
            raise ValueError(
                f"{source}: layer {layer.name!r} has shape {signs[layer.name].shape} in the "
                f"file but {expected} in the model"
            )
        ordered.append(signs[layer.name])
    return ordered


# --------------------------------------------------------------------------------------
# The two-dimensional toy (docs/method.md §4.9)
# --------------------------------------------------------------------------------------

#: Read-out weight of the second binary node in the toy.
TOY_GAIN: float = 0.01
#: Default start of both optimizers.
TOY_START: tuple[float, float] = (-0.5, -0.5)


def _toy_nodes(x: tf.Tensor, y: tf.Tensor, gain: float) -> tf.Tensor:
    # larq's ste_sign: forward sign (sign(0) = +1), backward the clipped identity 1{|w| <= 1}.
    return lq.quantizers.ste_sign(x, clip_value=1.0) + gain * lq.quantizers.ste_sign(
        y, clip_value=1.0
    )


def toy_loss(x: np.ndarray, y: np.ndarray, gain: float = TOY_GAIN) -> np.ndarray:
    r"""The toy's loss, elementwise over arrays of latent weights ``x`` and ``y``.

    Two binary nodes \(b_x = \operatorname{sign}(x)\), \(b_y = \operatorname{sign}(y)\) are
    read out as \(o = b_x + g\, b_y\) with a small read-out weight \(g\) (`TOY_GAIN` = 0.01,
    the share of gradient that reaches a weight whose downstream activations are mostly
    saturated), and compared with the target reached when both signs are +1:

    \[ L(x, y) = \big(\operatorname{sign}(x) + g \operatorname{sign}(y) - (1 + g)\big)^2 \]

    so \(L = 0\) (the minimum) for \(x, y \ge 0\), \(4g^2\) when only \(y\) is wrong, 4 when
    only \(x\) is wrong and \(4(1 + g)^2\) when both are. The optimizers see the surrogate
    gradient of the binary nodes (clipped identity, `toy_gradient`):
    \(\partial L/\partial x = 2(o - 1 - g)\,1\{|x| \le 1\}\),
    \(\partial L/\partial y = 2g(o - 1 - g)\,1\{|y| \le 1\}\): flat wherever \(|x| > 1\)
    (in x) or \(|y| > 1\) (in y), and 1/g times smaller along y.
    """
    sign_x = np.where(np.asarray(x) >= 0, 1.0, -1.0)
    sign_y = np.where(np.asarray(y) >= 0, 1.0, -1.0)
    return np.square(sign_x + gain * sign_y - (1.0 + gain))


def toy_gradient(x: float, y: float, gain: float = TOY_GAIN) -> tuple[float, float]:
    """The surrogate gradient of `toy_loss` at ``(x, y)``, written out by hand."""
    sign_x = 1.0 if x >= 0 else -1.0
    sign_y = 1.0 if y >= 0 else -1.0
    residual = sign_x + gain * sign_y - (1.0 + gain)
    return 2.0 * residual * float(abs(x) <= 1.0), 2.0 * gain * residual * float(abs(y) <= 1.0)


@dataclasses.dataclass
class ToyRun:
    """One optimizer's trajectory on the toy.

    Attributes:
        name: label of the optimizer.
        positions: (steps + 1, 2) latent weights (x, y), the start first.
        losses: (steps + 1,) loss at each position.
    """

    name: str
    positions: np.ndarray
    losses: np.ndarray

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    @property
    def first_step_at_minimum(self) -> int | None:
        """The first step after which the loss is 0, or None if it never got there."""
        hits = np.flatnonzero(self.losses == 0.0)
        return int(hits[0]) if hits.size else None


def run_toy(
    optimizer: tf.keras.optimizers.Optimizer,
    *,
    start: Sequence[float] = TOY_START,
    steps: int = 300,
    gain: float = TOY_GAIN,
    name: str | None = None,
) -> ToyRun:
    """Optimize the toy from ``start`` with a real Keras ``optimizer`` for ``steps`` steps.

    The gradient comes from TensorFlow's autodiff through larq's ``ste_sign`` (not from
    `toy_gradient`), so the toy exercises the same surrogate as a BNN.

    Returns:
        The `ToyRun` with every position and loss.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    position = tf.Variable(np.asarray(start, dtype=np.float32), name="toy_xy")
    # Slots are created before the loop: a tf.function may not create variables in a loop.
    optimizer.build([position])

    @tf.function
    def trajectory() -> tf.Tensor:
        # All steps in one graph: per-step Python dispatch of Keras' optimizer would cost
        # more than the whole computation.
        positions = tf.TensorArray(tf.float32, size=steps + 1).write(0, position.read_value())
        for index in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = tf.square(_toy_nodes(position[0], position[1], gain) - (1.0 + gain))
            optimizer.apply_gradients([(tape.gradient(loss, position), position)])
            positions = positions.write(index + 1, position.read_value())
        return positions.stack()

    positions = trajectory().numpy().astype(np.float64)
    losses = toy_loss(positions[:, 0], positions[:, 1], gain)
    return ToyRun(name or type(optimizer).__name__, positions, losses)


def toy_experiment(
    *,
    start: Sequence[float] = TOY_START,
    steps: int = 300,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    gain: float = TOY_GAIN,
) -> dict[str, ToyRun]:
    """SGD with momentum and Adam (Keras defaults otherwise) from the same start.

    With the defaults SGD drives x through its flat region (x > 1, where its gradient
    vanishes) while y, which gets 1/g = 100 times less gradient, crawls: the loss stays at
    \\(4g^2\\). Adam divides each coordinate's step by the root of its own second moment, so
    y moves as fast as x and the loss reaches its minimum 0.

    Returns:
        ``{"sgd": ToyRun, "adam": ToyRun}``.
    """
    sgd = tf.keras.optimizers.SGD(learning_rate, momentum=momentum)
    adam = tf.keras.optimizers.Adam(learning_rate)
    return {
        "sgd": run_toy(sgd, start=start, steps=steps, gain=gain, name=f"SGD (momentum {momentum})"),
        "adam": run_toy(adam, start=start, steps=steps, gain=gain, name="Adam"),
    }
