"""Settings TensorFlow reads once, on its first import: Keras 2 and oneDNN's CPU kernels.

larq's layers subclass Keras 2 layers; under Keras 3 ``import larq`` fails with an obscure
``AttributeError``. TensorFlow only reads ``TF_USE_LEGACY_KERAS`` (and
``TF_ENABLE_ONEDNN_OPTS``) on its first import, so the variables have to be set before that,
which is why this module runs before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import sys

LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"

_KERAS3_MESSAGE = (
    "adambnn_larq needs Keras 2 (the `tf-keras` package), but TensorFlow was already imported "
    "with Keras {version}. larq 0.14 cannot run on Keras 3. Fix: set the environment variable "
    "TF_USE_LEGACY_KERAS=1 before starting Python (e.g. `export TF_USE_LEGACY_KERAS=1`), or import "
    "adambnn_larq before anything imports tensorflow, and make sure `tf-keras` matching your "
    "TensorFlow version is installed (`pip install -r requirements.txt`)."
)


def ensure_legacy_keras() -> None:
    """Select Keras 2 for TensorFlow, or fail with instructions if it is too late to do so.

    Raises:
        ImportError: TensorFlow was imported earlier with Keras 3 as ``tf.keras``.
    """
    if "tensorflow" not in sys.modules:
        os.environ[LEGACY_KERAS_VARIABLE] = "1"
        return
    # Already imported: this only looks the module up.
    import tensorflow as tf

    # Under TF_USE_LEGACY_KERAS the tf.keras module comes from the tf_keras package.
    if not tf.keras.__name__.startswith("tf_keras"):
        version = getattr(tf.keras, "__version__", "3")
        raise ImportError(_KERAS3_MESSAGE.format(version=version))


def prefer_onednn() -> None:
    """Use TensorFlow's oneDNN CPU kernels unless the user chose (``TF_ENABLE_ONEDNN_OPTS``).

    TensorFlow turns them on by default only on CPUs with AVX-512 VNNI/BF16 or AMX. On an
    AVX2 CPU (the project's 2-core AMD EPYC VM) they make the demo recipe's training steps
    1.6x faster, side by side: TensorFlow's own kernels spend most of a step in the backward
    passes of the small convolutions (docs/results/train-throughput/README.md,
    ``benchmarks/onednn.py``). Too late once TensorFlow is imported; then this does nothing.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ONEDNN_VARIABLE, "1")
