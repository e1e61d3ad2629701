"""Save and load the project's Keras models safely and atomically."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import larq as lq
import tensorflow as tf

# models also silences larq's kernel_constraint advice, which the reference rejects.
from adambnn_larq import layers, models, quantizers  # noqa: F401
from adambnn_larq.errors import MissingFileError, ModelFileError, OutputError, UnsafeModelError
from adambnn_larq.rundir import MAX_JSON_BYTES, atomic_replace, parse_json

# What a model file may name. Keras resolves a serialized object by its "module" and
# "class_name" and imports that module if it is not Keras' own, so a file naming
# ``"module": "this"`` (or a .py file beside it) would run code just by being read. Every
# object in a file is therefore checked against this list of the classes this project's models
# (and larq's, and the common Keras building blocks) are made of, before Keras sees the file.
_ALLOWED_CLASSES: dict[str, frozenset[str]] = {
    "keras.layers": frozenset(
        {
            "InputLayer",
            "Conv2D",
            "DepthwiseConv2D",
            "Dense",
            "BatchNormalization",
            "Add",
            "Concatenate",
            "Multiply",
            "AveragePooling2D",
            "MaxPooling2D",
            "GlobalAveragePooling2D",
            "ReLU",
            "PReLU",
            "Activation",
            "ZeroPadding2D",
            "Flatten",
            "Reshape",
            "Dropout",
            "Softmax",
            "Rescaling",
        }
    ),
    "keras.initializers": frozenset(
        {
            "Constant",
            "Zeros",
            "Ones",
            "RandomUniform",
            "RandomNormal",
            "TruncatedNormal",
            "VarianceScaling",
            "GlorotUniform",
            "GlorotNormal",
            "HeUniform",
            "HeNormal",
            "LecunUniform",
            "LecunNormal",
            "Orthogonal",
            "Identity",
        }
    ),
    "keras.regularizers": frozenset({"L1", "L2", "L1L2"}),
    # A layer's dtype policy (data only; LCE conversion then refuses mixed precision itself).
    "keras.mixed_precision": frozenset({"Policy"}),
    "keras.constraints": frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"}),
    "larq.layers": frozenset(
        {
            "QuantConv2D",
            "QuantDense",
            "QuantDepthwiseConv2D",
            "QuantSeparableConv2D",
        }
    ),
    "larq.quantizers": frozenset(
        {
            "ApproxSign",
            "SteSign",
            "SteHeaviside",
            "SwishSign",
            "MagnitudeAwareSign",
            "SteTern",
            "DoReFa",
            "NoOp",
        }
    ),
    "larq.constraints": frozenset({"WeightClip"}),
    "adambnn_larq.layers": frozenset({"RSign", "RPReLU", "Rotate180"}),
    "adambnn_larq.quantizers": frozenset({"ChannelScaledSign", "SpatialFlip"}),
    "tf_keras.src.engine.functional": frozenset({"Functional"}),
    "keras.src.engine.functional": frozenset({"Functional"}),
    "tf_keras.src.engine.sequential": frozenset({"Sequential"}),
    "keras.src.engine.sequential": frozenset({"Sequential"}),
}
# Functions a file may name (activations); Keras looks them up among its own built-ins.
_ALLOWED_FUNCTIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "softmax",
        "sigmoid",
        "hard_sigmoid",
        "tanh",
        "swish",
        "silu",
        "gelu",
        "elu",
        "selu",
        "softplus",
        "softsign",
        "exponential",
    }
)
_FUNCTION_MODULES = frozenset({"keras.activations", "builtins"})
# larq and this project register their classes as "package>Class" (legacy .h5 configs name
# them so); Keras' own are registered under their class name.
_REGISTERED_PREFIX = {"larq.": "larq>", "adambnn_larq.": "adambnn_larq>"}
# Keras resets this part when loading with compile=False, so it is never deserialized.
_NOT_DESERIALIZED = frozenset({"compile_config"})
_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


def _read_config(path: Path) -> dict[str, Any]:
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                entry = archive.getinfo("config.json")
                # The stated size is checked before decompressing, and the read is capped
                # too: the size field of a crafted archive may lie.
                if entry.file_size > MAX_JSON_BYTES:
                    raise ModelFileError(
                        f"{path}: its config.json would decompress to {entry.file_size} bytes; "
                        "not a model file of this project"
                    )
                with archive.open(entry) as member:
                    raw = member.read(MAX_JSON_BYTES + 1)
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            raise ModelFileError(f"{path}: not a readable .keras model file ({error})") from error
        return parse_json(raw, f"{path} (config.json)", error=ModelFileError)
    try:
        with h5py.File(path, "r") as file:
            raw = file.attrs.get("model_config")
    except OSError as error:
        raise ModelFileError(f"{path}: not a readable HDF5 model file ({error})") from error
    if raw is None:
        raise ModelFileError(
            f"{path}: HDF5 file has no 'model_config' attribute; it holds weights only. Build "
            "the architecture (e.g. ReActNetA(...)) and call model.load_weights() instead."
        )
    raw = raw if isinstance(raw, bytes) else str(raw).encode()
    return parse_json(raw, f"{path} (model_config)", error=ModelFileError)


def _registered_names(module: str, class_name: str) -> set[str]:
    names = {class_name}
    for package, prefix in _REGISTERED_PREFIX.items():
        if module.startswith(package):
            names.add(prefix + class_name)
    return names


#: class names a legacy (.h5) config may use without a module: plain or registered.
_LEGACY_NAMES = frozenset(
    name
    for module, classes in _ALLOWED_CLASSES.items()
    for class_name in classes
    for name in _registered_names(module, class_name)
)


def _object_problem(config: dict[str, Any]) -> str | None:
    """Why the serialized object ``config`` may not be deserialized, or None if it may."""
    class_name = config.get("class_name")
    module = config.get("module")
    registered = config.get("registered_name")
    if not isinstance(class_name, str):
        return f"class_name {class_name!r} is not a name"
    if class_name in _CODE_LAYERS or class_name == "__lambda__":
        inner = config.get("config")
        name = inner.get("name", "?") if isinstance(inner, dict) else "?"
        return f"{class_name} '{name}' runs code stored in the file"
    if class_name == "function":
        name = config.get("config")
        if module in _FUNCTION_MODULES and name in _ALLOWED_FUNCTIONS:
            return None
        return f"function {name!r} of module {module!r} is not a Keras activation"
    if module is None:
        if class_name in _LEGACY_NAMES and registered in (None, class_name):
            return None
        return f"class {class_name!r} is not one this project's models are made of"
    if not isinstance(module, str) or module not in _ALLOWED_CLASSES:
        return f"module {module!r} is not one this project's models are made of"
    if class_name not in _ALLOWED_CLASSES[module]:
        return f"class {module}.{class_name} is not one this project's models are made of"
    if registered is not None and registered not in _registered_names(module, class_name):
        return f"registered_name {registered!r} does not name {module}.{class_name}"
    return None


def _unsafe_objects(config: Any, where: str = "config") -> list[str]:
    """Every object in ``config`` (a model file's architecture) that may not be deserialized,
    as ``"where: why"``."""
    found = []
    if isinstance(config, dict):
        if "class_name" in config:
            problem = _object_problem(config)
            if problem:
                found.append(f"{where}: {problem}")
        for key, value in config.items():
            if key not in _NOT_DESERIALIZED:
                found.extend(_unsafe_objects(value, f"{where}.{key}"))
    elif isinstance(config, list):
        for index, value in enumerate(config):
            found.extend(_unsafe_objects(value, f"{where}[{index}]"))
    return found


def check_model_config(config: Any, *, source: str = "model") -> None:
    """Refuse a model architecture that would make Keras import or run code to read it.

    Arguments:
        config: the parsed architecture (``config.json`` of a ``.keras`` file, the
            ``model_config`` attribute of an ``.h5`` file).
        source: the file, for the message.

    Raises:
        UnsafeModelError: naming every object that is not on the allowlist and where it is.
    """
    problems = _unsafe_objects(config)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UnsafeModelError(
            f"{source}: refusing to load: reading it would run code not part of this "
            f"project's models: {shown}{more}. Nothing from the file was imported or run."
        )


def custom_objects() -> dict[str, Any]:
    """Every custom Keras object a saved model of this project may contain."""
    objects = {
        name: getattr(module, name)
        for module in (layers, quantizers)
        for name in dir(module)
        if isinstance(getattr(module, name), type)
    }
    objects.update(
        {name: getattr(lq.layers, name) for name in dir(lq.layers) if name.startswith("Quant")}
    )
    return objects


def load_model(path: str | os.PathLike) -> tf.keras.Model:
    """Load a model saved by this project (.h5 or .keras), without running code from the file.

    The file's architecture is checked before Keras reads it (`check_model_config`): every
    serialized object must be a class of the allowlist (this project's layers and quantizers,
    larq's, the common Keras building blocks); Lambda layers, foreign modules and functions
    are refused, since Keras would import or run them. The model is returned uncompiled.

    Arguments:
        path: a ``.h5``/``.hdf5`` or ``.keras`` file.

    Returns:
        The `tf.keras.Model` with its weights.

    Raises:
        FileNotFoundError: no such file.
        UnsafeModelError: the file names code to run (see `check_model_config`).
        ValueError: the file is not a Keras model file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    check_model_config(_read_config(path), source=str(path))
    kwargs = {"safe_mode": True} if path.suffix == ".keras" else {}
    # Rebuilding the graph without AutoGraph is several times faster (see models._reactnet).
    load = tf.autograph.experimental.do_not_convert(tf.keras.models.load_model)
    return load(path, custom_objects=custom_objects(), compile=False, **kwargs)


def save_model(model: tf.keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model`` (without optimizer) to ``path`` atomically: a complete file or none.

    Arguments:
        model: the model.
        path: destination ending in ``.h5`` or ``.keras``.

    Returns:
        The destination path.
    """
    path = Path(path)
    if path.suffix not in (".h5", ".keras"):
        raise OutputError(f"{path}: model files must end in .h5 or .keras")
    with atomic_replace(path, suffix=path.suffix) as temporary:
        if path.suffix == ".h5":
            with warnings.catch_warnings():
                # HDF5 is what LCE users and the issues ask for; Keras calls it "legacy".
                warnings.filterwarnings("ignore", message=".*HDF5 file.*")
                model.save(temporary, include_optimizer=False)
        else:
            model.save(temporary)
    return path
