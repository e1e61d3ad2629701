"""PyTorch checkpoint import, kept for old scripts: this module forwards every name that
`adambnn_larq.deploy` exports (its ``__all__``), where the code lives."""

from adambnn_larq.deploy import *  # noqa: F403 - the names are deploy's, listed there once
from adambnn_larq.deploy import __all__ as __all__
