"""Import official PyTorch checkpoints (AdamBNN / ReActNet ReActNet-A, torchvision ResNet-34).

The official 70.5 % ReActNet-A exists only as a PyTorch checkpoint; this module turns it, or
torchvision's ResNet-34 teacher, into this project's Keras model, ready for ``adambnn convert``.

Checkpoints are read without running code from them (`adambnn_larq.deploy.pytorch_reader`);
PyTorch is needed for that only (``pip install 'adambnn-larq[pytorch]'``).

Accepted checkpoint forms (docs/method.md §5): the training checkpoint dict (``epoch``,
``state_dict``, ``best_top1_acc``, ``optimizer``) or a bare state_dict, with or without the
``module.`` prefix of ``nn.DataParallel``; binary convs named ``binary_*.weight`` with shape
(O, I, k, k) (AdamBNN) or ``binary_*.weights`` with shape (O·I·k·k, 1) (ReActNet's step-2
code); latent real-valued weights or released ±1 weights; ``num_batches_tracked`` entries
present or not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from adambnn_larq.config import ARCHITECTURES
from adambnn_larq.deploy.pytorch_reader import (
    PyTorchCheckpoint,
    _count,
    _listing,
    load_pytorch_checkpoint,
)
from adambnn_larq.errors import CheckpointError, OutputError
from adambnn_larq.models import REACTNET_A_CHANNELS, ReActNetA
from adambnn_larq.rundir import check_writable_file
from adambnn_larq.saving import save_model
from adambnn_larq.teachers import RESNET34_STAGES, ResNet34

REACTNET_A = "reactnet_a"
RESNET34 = "resnet34"


_REACTNET_A_CHANNELS = REACTNET_A_CHANNELS
_RESNET34_STAGES = RESNET34_STAGES
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class ImportReport:
    """What an import decided, for the user to check.

    Attributes:
        architecture: ``"reactnet_a"`` or ``"resnet34"``.
        num_classes: classifier outputs, read from ``fc.weight``.
        step: 1 or 2 for ReActNet-A (None for ResNet-34).
        step_reason: why that step (the rule of `decide_step` that applied).
        naming: how the binary conv weights were stored (ReActNet-A only).
        notes: warnings worth reading (e.g. latent weights that are exactly 0).
    """

    architecture: str
    num_classes: int
    step: int | None = None
    step_reason: str = ""
    naming: str = ""
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        names = {REACTNET_A: "ReActNet-A", RESNET34: "ResNet-34 (torchvision)"}
        lines = [f"architecture: {names[self.architecture]}, {self.num_classes} classes"]
        if self.naming:
            lines.append(f"binary conv weights: {self.naming}")
        if self.step is not None:
            lines.append(f"step: {self.step} ({self.step_reason})")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


# --------------------------------------------------------------------------- validation


def _reactnet_a_blocks() -> list[tuple[int, int, int]]:
    """(index, C, P) of the 13 blocks."""
    c = _REACTNET_A_CHANNELS
    return [(i, c[i - 1], c[i]) for i in range(1, len(c))]


def _reactnet_a_convs() -> dict[str, tuple[int, ...]]:
    """Binary conv weight key (``.weight`` form) -> torch shape, in network order."""
    convs: dict[str, tuple[int, ...]] = {}
    for i, c, p in _reactnet_a_blocks():
        convs[f"feature.{i}.binary_3x3.weight"] = (c, c, 3, 3)
        names = ("binary_pw",) if p == c else ("binary_pw_down1", "binary_pw_down2")
        for name in names:
            convs[f"feature.{i}.{name}.weight"] = (c, c, 1, 1)
    return convs


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in _BN_FIELDS}


def reactnet_a_expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every key of an official ReActNet-A state_dict (without ``num_batches_tracked``).

    Arguments:
        num_classes: rows of ``fc.weight``.

    Returns:
        Key -> PyTorch shape, 31 binary convs in the AdamBNN ``.weight`` (O, I, k, k) form.
    """
    stem = _REACTNET_A_CHANNELS[0]
    shapes = {"feature.0.conv1.weight": (stem, 3, 3, 3), **_bn_shapes("feature.0.bn1", stem)}
    convs = _reactnet_a_convs()
    for i, c, p in _reactnet_a_blocks():
        block = f"feature.{i}"
        shapes[f"{block}.move11.bias"] = (1, c, 1, 1)
        shapes[f"{block}.binary_3x3.weight"] = convs[f"{block}.binary_3x3.weight"]
        shapes.update(_bn_shapes(f"{block}.bn1", c))
        for name in ("move12", "move13", "move21"):
            shapes[f"{block}.{name}.bias"] = (1, c, 1, 1)
        shapes[f"{block}.prelu1.weight"] = (c,)
        if p == c:
            shapes[f"{block}.binary_pw.weight"] = (c, c, 1, 1)
            shapes.update(_bn_shapes(f"{block}.bn2", c))
        else:
            for branch in (1, 2):
                shapes[f"{block}.binary_pw_down{branch}.weight"] = (c, c, 1, 1)
                shapes.update(_bn_shapes(f"{block}.bn2_{branch}", c))
        shapes[f"{block}.move22.bias"] = (1, p, 1, 1)
        shapes[f"{block}.prelu2.weight"] = (p,)
        shapes[f"{block}.move23.bias"] = (1, p, 1, 1)
    shapes["fc.weight"] = (num_classes, _REACTNET_A_CHANNELS[-1])
    shapes["fc.bias"] = (num_classes,)
    return shapes


def resnet34_expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's ResNet-34 state_dict (without ``num_batches_tracked``)."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **_bn_shapes("bn1", 64)}
    in_channels = 64
    for stage, (channels, blocks) in enumerate(_RESNET34_STAGES, start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            block_in = in_channels if block == 0 else channels
            shapes[f"{prefix}.conv1.weight"] = (channels, block_in, 3, 3)
            shapes.update(_bn_shapes(f"{prefix}.bn1", channels))
            shapes[f"{prefix}.conv2.weight"] = (channels, channels, 3, 3)
            shapes.update(_bn_shapes(f"{prefix}.bn2", channels))
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (channels, block_in, 1, 1)
                shapes.update(_bn_shapes(f"{prefix}.downsample.1", channels))
        in_channels = channels
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def _classes_in(state: Mapping[str, np.ndarray], num_classes: int | None) -> int:
    fc = state.get("fc.weight")
    shape = None if fc is None else tuple(fc.shape)
    found = int(shape[0]) if shape is not None and len(shape) == 2 else None
    if num_classes is not None and num_classes < 1:
        raise CheckpointError(f"num_classes must be positive, got {num_classes}")
    if num_classes is not None and found is not None and found != num_classes:
        raise CheckpointError(
            f"class count mismatch: {num_classes} classes requested, but the checkpoint's "
            f"fc.weight has shape {shape} ({found} classes); omit --num-classes "
            f"to use {found}"
        )
    # Without a usable fc.weight, 1000 lets the key check report it with everything else.
    return num_classes or found or 1000


def _check_entries(
    checkpoint: PyTorchCheckpoint,
    expected: Mapping[str, tuple[int, ...]],
    name: str,
    alternatives: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Check keys and shapes; return expected key -> key actually used in the checkpoint.

    ``alternatives`` maps an expected key to another accepted name (ReActNet's ``.weights``).
    One error lists every missing, unexpected and mis-shaped entry.
    """
    state = checkpoint.state_dict
    alternatives = alternatives or {}
    used: dict[str, str] = {}
    conflicting: set[str] = set()
    missing, wrong_shape = [], []
    for key, shape in expected.items():
        other = alternatives.get(key)
        if key in state and other in state:
            wrong_shape.append(f"{key} and {other} both present (one conv, two weights)")
            conflicting.update((key, other))
            continue
        actual_key = key if key in state or other not in state else other
        if actual_key not in state:
            missing.append(key)
            continue
        used[key] = actual_key
        actual = tuple(state[actual_key].shape)
        accepted = {shape}
        if actual_key != key:  # ReActNet's HardBinaryConv stores (O*I*k*k, 1)
            accepted.add((math.prod(shape), 1))
        if actual not in accepted:
            wanted = " or ".join(str(s) for s in sorted(accepted))
            wrong_shape.append(f"{actual_key} has shape {actual}, expected {wanted}")
    allowed = (
        set(used.values())
        | conflicting
        | {
            f"{key.rsplit('.', 1)[0]}.num_batches_tracked"
            for key in expected
            if key.endswith(".running_mean")
        }
    )
    unexpected = [key for key in state if key not in allowed]
    if missing or unexpected or wrong_shape:
        lines = []
        if len(missing) == len(expected):
            lines.append(f"not a {name} checkpoint: none of its {len(expected)} keys is present")
        else:
            lines.append(f"{checkpoint.path}: does not match {name}")
        if missing:
            lines.append(f"  missing {_count(len(missing), 'key')}: {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected {_count(len(unexpected), 'key')}: {_listing(unexpected)}")
        if wrong_shape:
            lines.append(f"  wrong shape ({len(wrong_shape)}): {_listing(wrong_shape)}")
        raise CheckpointError("\n".join(lines))
    bad_values = [key for key in used.values() if not np.all(np.isfinite(state[key]))]
    negative_var = [
        key for key in used.values() if key.endswith(".running_var") and np.any(state[key] < 0)
    ]
    if bad_values or negative_var:
        problems = []
        if bad_values:
            problems.append(f"NaN or infinite values in {_listing(bad_values)}")
        if negative_var:
            problems.append(f"negative running_var in {_listing(negative_var)}")
        raise CheckpointError(f"{checkpoint.path}: corrupt values: {'; '.join(problems)}")
    return used


def detect_architecture(checkpoint: PyTorchCheckpoint) -> str:
    """``"reactnet_a"`` or ``"resnet34"`` from the state_dict's keys.

    Raises:
        CheckpointError: neither network's stem is in the file.
    """
    keys = checkpoint.state_dict
    if "feature.0.conv1.weight" in keys:
        return REACTNET_A
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return RESNET34
    raise CheckpointError(
        f"{checkpoint.path}: not a ReActNet-A (no 'feature.0.conv1.weight') or torchvision "
        f"ResNet-34 (no 'conv1.weight', 'layer1.0.conv1.weight') checkpoint; its first keys: "
        f"{_listing(list(keys))}"
    )


# --------------------------------------------------------------------------- ReActNet-A


def decide_step(
    checkpoint: PyTorchCheckpoint, binary_kernels: Mapping[str, np.ndarray], naming: set[str]
) -> tuple[int, str]:
    """Tell a step-1 checkpoint (real weights) from a step-2 one (binary weights).

    The two networks have the same variables, so the file cannot always say. Rules, first
    match wins:

    1. ReActNet's step-2 layout ``binary_*.weights`` (O·I·k·k, 1) exists only in step-2
       code -> step 2.
    2. Every binary conv weight is exactly ±1 (a released binarized model) -> step 2. Step 1
       and step 2 compute the same on ±1 weights (alpha = mean|W| = 1), so this is safe.
    3. A training checkpoint's optimizer: the official scripts (AdamBNN and ReActNet) put
       weight decay on the conv weights in step 1 only (5e-6 / 1e-5) and 0 in step 2. Any
       param group with weight decay > 0 -> step 1; all 0 -> step 2.
    4. Otherwise (a bare state_dict of real-valued 4-D weights) -> step 2, the network one
       deploys, with a note; pass ``step=1`` for a step-1 checkpoint.

    Arguments:
        checkpoint: the checkpoint read by `load_pytorch_checkpoint`.
        binary_kernels: the 31 binary conv weights.
        naming: the storage forms found (``".weight"``, ``".weights"``).

    Returns:
        (step, the reason in words).
    """
    if ".weights" in naming:
        return 2, "auto: ReActNet step-2 naming 'binary_*.weights'"
    if all(np.all(np.abs(kernel) == 1.0) for kernel in binary_kernels.values()):
        return 2, (
            f"auto: all {len(binary_kernels)} binary conv weights are exactly ±1 (released "
            "binarized model; step 1 and 2 compute the same on them)"
        )
    decays = checkpoint.weight_decays
    if decays is not None:
        if any(decay > 0 for decay in decays):
            return 1, (
                f"auto: optimizer weight decay {max(decays):g} > 0; the official recipes decay "
                "conv weights only in step 1"
            )
        return 2, "auto: optimizer weight decay 0 in every param group, as in step 2"
    return 2, (
        "auto: a bare state_dict with real-valued conv weights cannot tell step 1 from step 2; "
        "assumed step 2 (binary weights, the deployable network). Use --step 1 if it is a "
        "step-1 checkpoint"
    )


def _torch_kernel(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(O, I, kh, kw) torch kernel -> (kh, kw, I, O) Keras kernel."""
    return np.ascontiguousarray(array.reshape(shape).transpose(2, 3, 1, 0))


def _bn(state: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{name}"] for name in _BN_FIELDS]


def _shift(state: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    return state[key].reshape(-1)


def _reactnet_a_keras_weights(
    state: Mapping[str, np.ndarray], kernels: Mapping[str, np.ndarray]
) -> dict[str, list[np.ndarray]]:
    """Keras layer name (`adambnn_larq.models`) -> its weights, from the torch entries."""
    weights = {
        "stem_conv": [_torch_kernel(state["feature.0.conv1.weight"], (32, 3, 3, 3))],
        "stem_bn": _bn(state, "feature.0.bn1"),
    }
    for i, c, p in _reactnet_a_blocks():
        src, dst = f"feature.{i}", f"block{i}"
        weights[f"{dst}_rsign1"] = [_shift(state, f"{src}.move11.bias")]
        weights[f"{dst}_conv3x3"] = [kernels[f"{src}.binary_3x3.weight"]]
        weights[f"{dst}_bn1"] = _bn(state, f"{src}.bn1")
        weights[f"{dst}_rprelu1"] = [
            _shift(state, f"{src}.move12.bias"),
            state[f"{src}.prelu1.weight"],
            _shift(state, f"{src}.move13.bias"),
        ]
        weights[f"{dst}_rsign2"] = [_shift(state, f"{src}.move21.bias")]
        if p == c:
            weights[f"{dst}_conv1x1"] = [kernels[f"{src}.binary_pw.weight"]]
            weights[f"{dst}_bn2"] = _bn(state, f"{src}.bn2")
        else:
            for branch in (1, 2):
                weights[f"{dst}_conv1x1_{branch}"] = [
                    kernels[f"{src}.binary_pw_down{branch}.weight"]
                ]
                weights[f"{dst}_bn2_{branch}"] = _bn(state, f"{src}.bn2_{branch}")
        weights[f"{dst}_rprelu2"] = [
            _shift(state, f"{src}.move22.bias"),
            state[f"{src}.prelu2.weight"],
            _shift(state, f"{src}.move23.bias"),
        ]
    weights["logits"] = [np.ascontiguousarray(state["fc.weight"].T), state["fc.bias"]]
    return weights


def _assign(model: tf.keras.Model, weights: Mapping[str, list[np.ndarray]]) -> None:
    """Set every weighted layer of ``model`` by name; every layer and entry must match."""
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    if set(layers) != set(weights):
        raise AssertionError(
            f"internal mapping error: layers without weights {sorted(set(layers) - set(weights))},"
            f" weights without layers {sorted(set(weights) - set(layers))}"
        )
    for name, values in weights.items():
        layers[name].set_weights(values)


def _prepare_reactnet_a(
    checkpoint: PyTorchCheckpoint, step: int | str, num_classes: int | None
) -> tuple[ImportReport, dict[str, np.ndarray]]:
    """Validate, decide the step and convert the binary kernels (no TensorFlow needed)."""
    if step not in (1, 2, "auto"):
        raise CheckpointError(f"step must be 1, 2 or 'auto', got {step!r}")
    classes = _classes_in(checkpoint.state_dict, num_classes)
    expected = reactnet_a_expected_shapes(classes)
    convs = _reactnet_a_convs()
    used = _check_entries(
        checkpoint, expected, "ReActNet-A", alternatives={key: f"{key}s" for key in convs}
    )
    state = checkpoint.state_dict
    kernels = {key: _torch_kernel(state[used[key]], shape) for key, shape in convs.items()}
    naming = {".weights" if used[key] != key else ".weight" for key in convs}
    names = {
        ".weight": "AdamBNN naming 'binary_*.weight' (O, I, k, k)",
        ".weights": "ReActNet step-2 naming 'binary_*.weights' (O·I·k·k, 1)",
    }
    report = ImportReport(
        architecture=REACTNET_A,
        num_classes=classes,
        naming=" and ".join(names[form] for form in sorted(naming)),
    )
    if step == "auto":
        report.step, report.step_reason = decide_step(checkpoint, kernels, naming)
    else:
        report.step, report.step_reason = int(step), "set by the caller"
        if report.step == 1 and ".weights" in naming:
            report.notes.append(
                "step 1 requested for weights in ReActNet's step-2 layout; they will be used "
                "as real-valued weights, unbinarized"
            )
    if report.step == 2:
        zeros = sum(int(np.count_nonzero(kernel == 0)) for kernel in kernels.values())
        if zeros:
            report.notes.append(
                f"{zeros} binary conv weights are exactly 0: PyTorch's sign gives 0 there, "
                "larq and LCE give +1 (a binary kernel has no 0), so outputs can differ slightly"
            )
    return report, kernels


def inspect_reactnet_a(
    checkpoint: PyTorchCheckpoint, *, step: int | str = "auto", num_classes: int | None = None
) -> ImportReport:
    """Check a ReActNet-A checkpoint and report what `import_reactnet_a` would do.

    Arguments:
        checkpoint: read by `load_pytorch_checkpoint`.
        step: 1, 2 or "auto" (see `decide_step`).
        num_classes: expected classifier outputs; None takes them from ``fc.weight``.

    Returns:
        The `ImportReport` (step and why, naming, notes); no Keras model is built.

    Raises:
        CheckpointError: as `import_reactnet_a`.
    """
    return _prepare_reactnet_a(checkpoint, step, num_classes)[0]


def import_reactnet_a(
    checkpoint: PyTorchCheckpoint,
    *,
    step: int | str = "auto",
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] = (224, 224, 3),
    log: Callable[[str], None] | None = None,
) -> tuple[tf.keras.Model, ImportReport]:
    """Build this project's ReActNet-A from an AdamBNN/ReActNet checkpoint.

    Arguments:
        checkpoint: read by `load_pytorch_checkpoint`.
        step: 1 (real weights, ``binary_weights=False``), 2 (binary weights), or "auto"
            (see `decide_step`).
        num_classes: expected classifier outputs; None takes them from ``fc.weight``.
        input_shape: input of the Keras model; even sizes at every stride-2 layer.
        log: called with progress lines (e.g. ``print``).

    Returns:
        The Keras model (``ReActNetA``, inference-ready, uncompiled) and an `ImportReport`.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped keys, class count mismatch,
            corrupt values, an input shape the network cannot take.
    """
    report, kernels = _prepare_reactnet_a(checkpoint, step, num_classes)
    if log:
        for line in report.lines():
            log(f"  {line}")
        log(f"building the Keras ReActNet-A (step {report.step}, input {input_shape})")

    try:
        model = ReActNetA(
            input_shape=input_shape,
            num_classes=report.num_classes,
            binary_weights=report.step == 2,
        )
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    _assign(model, _reactnet_a_keras_weights(checkpoint.state_dict, kernels))
    return model, report


# --------------------------------------------------------------------------- ResNet-34


def _resnet34_keras_weights(state: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    weights = {}
    for key, shape in resnet34_expected_shapes(int(state["fc.weight"].shape[0])).items():
        module, _ = key.rsplit(".", 1)
        if len(shape) == 4:
            layer = module.replace(".", "_").replace("downsample_0", "downsample_conv")
            weights[layer] = [_torch_kernel(state[key], shape)]
        elif key.endswith(".running_mean"):
            layer = module.replace(".", "_").replace("downsample_1", "downsample_bn")
            weights[layer] = _bn(state, module)
    weights["logits"] = [np.ascontiguousarray(state["fc.weight"].T), state["fc.bias"]]
    return weights


def import_resnet34(
    checkpoint: PyTorchCheckpoint,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] = (224, 224, 3),
    log: Callable[[str], None] | None = None,
) -> tuple[tf.keras.Model, ImportReport]:
    """Build `adambnn_larq.teachers.ResNet34` from a torchvision ResNet-34 state_dict.

    Arguments:
        checkpoint: read by `load_pytorch_checkpoint` (e.g. torchvision's
            ``resnet34-b627a593.pth``, the teacher of the official recipe).
        num_classes: expected classifier outputs; None takes them from ``fc.weight``.
        input_shape: input of the Keras model (any size, ``None`` allowed).
        log: called with progress lines.

    Returns:
        The Keras model and an `ImportReport`.

    Raises:
        CheckpointError: missing, unexpected or mis-shaped keys, class count mismatch.
    """
    classes = _classes_in(checkpoint.state_dict, num_classes)
    _check_entries(checkpoint, resnet34_expected_shapes(classes), "ResNet-34")
    report = ImportReport(architecture=RESNET34, num_classes=classes)
    if log:
        for line in report.lines():
            log(f"  {line}")
        log(f"building the Keras ResNet-34 (input {input_shape})")

    model = ResNet34(input_shape=input_shape, num_classes=classes)
    _assign(model, _resnet34_keras_weights(checkpoint.state_dict))
    return model, report


# --------------------------------------------------------------------------- one call


def import_pytorch(
    checkpoint_path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    *,
    architecture: str = "auto",
    step: int | str = "auto",
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] = (224, 224, 3),
    log: Callable[[str], None] | None = None,
) -> tuple[tf.keras.Model, ImportReport]:
    """Read a PyTorch checkpoint, build the matching Keras model and optionally save it.

    Arguments:
        checkpoint_path: the PyTorch file (see the module docstring for accepted forms).
        output_path: ``.h5`` or ``.keras`` destination, written atomically only after the
            whole import succeeded; None to skip saving.
        architecture: "auto", "reactnet_a" or "resnet34".
        step: ReActNet-A only: 1, 2 or "auto" (see `decide_step`).
        num_classes: expected classifier outputs (checked against ``fc.weight``).
        input_shape: input of the Keras model.
        log: called with progress lines (e.g. ``print``).

    Returns:
        The Keras model and an `ImportReport`. The saved file loads with
        `adambnn_larq.load_model`.

    Raises:
        CheckpointError: any problem with the file or its content; nothing is written then.
    """
    if architecture not in ("auto", *ARCHITECTURES):
        raise CheckpointError(f"architecture must be auto, reactnet_a or resnet34: {architecture}")
    if output_path is not None:
        try:  # before the (slow) import: a model that cannot be saved is wasted work
            check_writable_file(output_path, what="--output", suffixes=(".h5", ".keras"))
        except OutputError as error:
            raise CheckpointError(str(error)) from error
    if log:
        log(f"reading {checkpoint_path} (weights only, no code is run)")
    checkpoint = load_pytorch_checkpoint(checkpoint_path)
    if log:
        log(f"  {checkpoint.describe()}")
    detected = detect_architecture(checkpoint) if architecture == "auto" else architecture
    if detected == RESNET34:
        if step != "auto":
            raise CheckpointError("step applies to ReActNet-A checkpoints only, not ResNet-34")
        model, report = import_resnet34(
            checkpoint, num_classes=num_classes, input_shape=input_shape, log=log
        )
    else:
        model, report = import_reactnet_a(
            checkpoint, step=step, num_classes=num_classes, input_shape=input_shape, log=log
        )
    if output_path is not None:
        path = save_model(model, output_path)
        if log:
            log(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return model, report
