"""AdamBNN in Larq: ReActNet-A, the two-step Adam recipe, and LCE deployment.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, which larq needs, and
oneDNN's CPU kernels unless ``TF_ENABLE_ONEDNN_OPTS`` is set; import it before anything imports
TensorFlow, or set ``TF_USE_LEGACY_KERAS=1`` (and ``TF_ENABLE_ONEDNN_OPTS=1``) yourself. The public
names below are imported on first use, so ``import adambnn_larq`` itself is cheap: the
``adambnn`` command (`adambnn_larq.cli`) imports this package first and must not pay for
TensorFlow before it knows the command (see the measurement in ``cli/__init__.py``).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from adambnn_larq._compat import ensure_legacy_keras, prefer_onednn

ensure_legacy_keras()
prefer_onednn()

# One source of truth: pyproject.toml's version, as installed.
try:
    __version__ = metadata.version("adambnn-larq")
except metadata.PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"

_LAZY_ATTRIBUTES = {
    "ReActNetA": "adambnn_larq.models",
    "ReActNetSmall": "adambnn_larq.models",
    "binary_conv_layers": "adambnn_larq.models",
    "SmallTeacher": "adambnn_larq.teachers",
    "ResNet34": "adambnn_larq.teachers",
    "load_model": "adambnn_larq.saving",
    "save_model": "adambnn_larq.saving",
}

__all__ = sorted(_LAZY_ATTRIBUTES)


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'adambnn_larq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_ATTRIBUTES])
