"""Read a PyTorch checkpoint safely into NumPy arrays, whatever network it holds; what the
arrays mean per architecture is `adambnn_larq.deploy.pytorch_import`.

A checkpoint is a pickle, and unpickling can run arbitrary code. Files are therefore read with
``torch.load(..., weights_only=True)``, PyTorch's restricted unpickler that only rebuilds
tensors, containers and plain values (plus NumPy scalars, allow-listed here because training
scripts store accuracies as such); anything else is refused before it runs. PyTorch is imported
when a checkpoint is read, not with this module: it is optional and slow to import.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adambnn_larq.errors import CheckpointError

_DATA_PARALLEL_PREFIX = "module."
_MAX_LISTED = 8


@dataclass
class PyTorchCheckpoint:
    """What was read from a checkpoint file, as NumPy arrays.

    Attributes:
        path: the file.
        state_dict: parameter and buffer name -> array (floats as float32), prefix removed.
        container: "training checkpoint" (the dict with ``state_dict``) or "state_dict".
        prefix_stripped: whether every key carried the ``module.`` prefix.
        epoch: the training checkpoint's ``epoch``, if any.
        best_top1_acc: its ``best_top1_acc``, if any.
        weight_decays: ``weight_decay`` of each optimizer param group, if an optimizer is stored.
    """

    path: Path
    state_dict: dict[str, np.ndarray]
    container: str
    prefix_stripped: bool = False
    epoch: int | None = None
    best_top1_acc: float | None = None
    weight_decays: list[float] | None = None

    def describe(self) -> str:
        parts = [f"{self.container}, {len(self.state_dict)} entries"]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.best_top1_acc is not None:
            parts.append(f"best_top1_acc {self.best_top1_acc:.2f}")
        if self.prefix_stripped:
            parts.append(f"'{_DATA_PARALLEL_PREFIX}' prefix removed")
        return ", ".join(parts)


def _safe_globals() -> list[Any]:
    """NumPy scalar types that a training script may have stored (e.g. an accuracy).

    Rebuilding them only constructs a dtype and a scalar from bytes; nothing is called that
    the file chooses. Everything else stays refused by PyTorch's weights-only unpickler.
    """
    allowed: list[Any] = [np.dtype]
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar"])
        except ImportError:
            continue
        allowed.append(module.scalar)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed.extend(getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType"))
    return allowed


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise CheckpointError(
            "reading PyTorch checkpoints needs PyTorch, which is an optional dependency: "
            "pip install 'adambnn-larq[pytorch]' (or pip install torch)"
        ) from error
    return torch


def _torch_load(path: Path) -> Any:
    torch = _import_torch()
    # PyTorch < 2.5 has no allow-list: NumPy scalars are then refused like everything else.
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    allow_numpy = safe_globals(_safe_globals()) if safe_globals else contextlib.nullcontext()
    try:
        with allow_numpy, warnings.catch_warnings():
            # Its own note on pickle protocols > 2; a refusal below says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        refused = re.search(r"GLOBAL ([\w.]+)", message)
        if refused:
            raise CheckpointError(
                f"{path}: refused: unpickling this file would call {refused.group(1)}, and "
                "checkpoints are read without running code. A checkpoint from the official "
                "AdamBNN/ReActNet/torchvision code holds only tensors and plain values; this "
                "file holds something else and was not loaded. (A whole pickled model object? "
                "Save its state_dict() instead.)"
            ) from error
        operand = re.search(r"Unsupported operand (\d+)", message)
        with open(path, "rb") as file:
            head = file.read(2)
        if operand and len(head) == 2 and head[0] == pickle.PROTO[0]:  # a pickle, not garbage
            raise CheckpointError(
                f"{path}: refused: the file is a pickle (pickle protocol {head[1]}) that uses an "
                f"operation the weights-only loader does not allow (opcode {operand.group(1)}); "
                "a pickle can make its reader run any code, so it was not loaded. Checkpoints "
                "written by torch.save (e.g. torch.save(model.state_dict(), PATH)) are read."
            ) from error
        detail = next(
            (line.strip() for line in message.splitlines() if "Unsupported" in line), message
        )
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint: the weights-only loader rejected it "
            f"({detail}). The file is corrupt, or a pickle holding more than tensors and plain "
            "values (which could run code); it was not loaded."
        ) from error
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError... on bad files
        first_line = str(error).splitlines()[0] if str(error) else ""
        detail = f"{type(error).__name__}: {first_line}".rstrip(": ")
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {detail}"
        ) from error


def _to_float(value: Any) -> float | None:
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return number if math.isfinite(number) else None


def _weight_decays(optimizer: Any) -> list[float] | None:
    if not isinstance(optimizer, Mapping):
        return None
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not groups:
        return None
    decays = []
    for group in groups:
        decay = _to_float(group.get("weight_decay", 0.0)) if isinstance(group, Mapping) else None
        if decay is None:
            return None
        decays.append(decay)
    return decays


def _to_numpy(key: str, value: Any, torch: Any) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"state_dict entry '{key}' is a {type(value).__name__}, not a tensor")
    tensor = value.detach()
    if tensor.is_floating_point():
        # float16/bfloat16/float64 checkpoints all become the float32 Keras uses.
        return tensor.to(torch.float32).numpy()
    return tensor.numpy()


def load_pytorch_checkpoint(path: str | os.PathLike) -> PyTorchCheckpoint:
    """Read a PyTorch checkpoint safely and unwrap its state_dict.

    Arguments:
        path: a file written by ``torch.save``: a training checkpoint dict with a
            ``state_dict`` entry, or a bare state_dict.

    Returns:
        A `PyTorchCheckpoint` with NumPy arrays and the training metadata found.

    Raises:
        CheckpointError: missing, truncated, corrupt or unsafe file, no state_dict in it, or
            PyTorch not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    loaded = _torch_load(path)
    torch = _import_torch()
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path}: holds a {type(loaded).__name__}, not a state_dict or a training checkpoint "
            "dict (a saved whole model object cannot be read without running code)"
        )
    checkpoint = PyTorchCheckpoint(path=path, state_dict={}, container="state_dict")
    state = loaded
    if "state_dict" in loaded:
        state = loaded["state_dict"]
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{path}: its 'state_dict' entry is a {type(state).__name__}")
        checkpoint.container = "training checkpoint"
        if "epoch" in loaded:
            epoch = _to_float(loaded["epoch"])
            checkpoint.epoch = None if epoch is None else int(epoch)
        checkpoint.best_top1_acc = _to_float(loaded.get("best_top1_acc"))
        checkpoint.weight_decays = _weight_decays(loaded.get("optimizer"))
    elif not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        keys = ", ".join(repr(key) for key in list(loaded)[:_MAX_LISTED])
        raise CheckpointError(
            f"{path}: neither a state_dict (name -> tensor) nor a training checkpoint with a "
            f"'state_dict' entry; top-level keys: {keys}"
        )
    if not state:
        raise CheckpointError(f"{path}: the state_dict is empty")
    names = [str(key) for key in state]
    checkpoint.prefix_stripped = all(name.startswith(_DATA_PARALLEL_PREFIX) for name in names)
    cut = len(_DATA_PARALLEL_PREFIX) if checkpoint.prefix_stripped else 0
    checkpoint.state_dict = {
        str(key)[cut:]: _to_numpy(str(key), value, torch) for key, value in state.items()
    }
    return checkpoint


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _listing(names: list[str]) -> str:
    """At most `_MAX_LISTED` names, and how many more: a message stays a few lines long."""
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")
