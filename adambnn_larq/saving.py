"""Save and load the project's Keras models safely and atomically."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import tensorflow as tf


def _default_mode() -> int:
    """Permissions a plain open() would give (mkstemp's files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# Layers whose deserialization runs code (marshalled Python bytecode or arbitrary TF functions
# named in the file); a model file is data and must never run code to be read.
_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


class UnsafeModelError(ValueError):
    """A model file asks to run code (a Lambda layer) to be deserialized."""


def _read_config(path: Path) -> dict[str, Any]:
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable .keras model file ({error})") from error
    try:
        with h5py.File(path, "r") as file:
            raw = file.attrs.get("model_config")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 model file ({error})") from error
    if raw is None:
        raise ValueError(
            f"{path}: HDF5 file has no 'model_config' attribute; it holds weights only. Build "
            "the architecture (e.g. ReActNetA(...)) and call model.load_weights() instead."
        )
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _find_code_layers(config: Any) -> list[str]:
    found = []
    if isinstance(config, dict):
        if config.get("class_name") in _CODE_LAYERS:
            layer_name = config.get("config", {}).get("name", "?")
            found.append(f"{config['class_name']} '{layer_name}'")
        for value in config.values():
            found.extend(_find_code_layers(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(_find_code_layers(value))
    return found


def custom_objects() -> dict[str, Any]:
    """Every custom Keras object a saved model of this project may contain."""
    import larq as lq

    # models also silences larq's kernel_constraint advice, which the reference rejects.
    from adambnn_larq import layers, models, quantizers  # noqa: F401

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

    The file's architecture is checked before deserialization: Lambda-style layers, which
    would execute code stored in the file, are refused. The model is returned uncompiled.

    Arguments:
        path: a ``.h5``/``.hdf5`` or ``.keras`` file.

    Returns:
        The `tf.keras.Model` with its weights.

    Raises:
        FileNotFoundError: no such file.
        UnsafeModelError: the file contains Lambda layers.
        ValueError: the file is not a Keras model file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    code_layers = _find_code_layers(_read_config(path))
    if code_layers:
        raise UnsafeModelError(
            f"{path}: refusing to load a model with layers that execute stored code: "
            f"{', '.join(code_layers)}"
        )
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
        raise ValueError(f"{path}: model files must end in .h5 or .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=".tmp-")
    os.close(handle)
    try:
        if path.suffix == ".h5":
            with warnings.catch_warnings():
                # HDF5 is what LCE users and the issues ask for; Keras calls it "legacy".
                warnings.filterwarnings("ignore", message=".*HDF5 file.*")
                model.save(temporary, include_optimizer=False)
        else:
            model.save(temporary)
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so readers see the old or the new content, never a mix."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_write_text`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, _default_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
