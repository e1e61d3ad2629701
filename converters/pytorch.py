"""PyTorch checkpoint import: re-exported from `adambnn_larq.deploy.pytorch_import`, where the
code lives."""

from adambnn_larq.config import ARCHITECTURES
from adambnn_larq.deploy.pytorch_import import (
    REACTNET_A,
    RESNET34,
    ImportReport,
    PyTorchCheckpoint,
    decide_step,
    detect_architecture,
    import_pytorch,
    import_reactnet_a,
    import_resnet34,
    inspect_reactnet_a,
    load_pytorch_checkpoint,
    reactnet_a_expected_shapes,
    resnet34_expected_shapes,
)
from adambnn_larq.errors import CheckpointError

__all__ = [
    "ARCHITECTURES",
    "REACTNET_A",
    "RESNET34",
    "CheckpointError",
    "ImportReport",
    "PyTorchCheckpoint",
    "decide_step",
    "detect_architecture",
    "import_pytorch",
    "import_reactnet_a",
    "import_resnet34",
    "inspect_reactnet_a",
    "load_pytorch_checkpoint",
    "reactnet_a_expected_shapes",
    "resnet34_expected_shapes",
]
