"""LCE conversion and verification: re-exported from `adambnn_larq.deploy.convert`,
`adambnn_larq.deploy.verify` and `adambnn_larq.deploy.flatbuffer`, where the code lives."""

from adambnn_larq.config import (
    CONVERSION_ROUTES,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    INTERPRETER_KERNELS,
    TARGETS,
)
from adambnn_larq.deploy.convert import (
    ConversionResult,
    LayerFinding,
    audit_binary_layers,
    check_dtype_policy,
    convert_file,
    convert_model,
    load_keras_model,
)
from adambnn_larq.deploy.flatbuffer import io_details, op_census
from adambnn_larq.deploy.verify import (
    VerificationResult,
    dataset_inputs,
    keras_predict,
    output_tolerance,
    random_inputs,
    run_interpreter,
    verify_conversion,
)
from adambnn_larq.errors import ConversionError
from adambnn_larq.logs import heartbeat

__all__ = [
    "CONVERSION_ROUTES",
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "INTERPRETER_KERNELS",
    "TARGETS",
    "ConversionError",
    "ConversionResult",
    "LayerFinding",
    "VerificationResult",
    "audit_binary_layers",
    "check_dtype_policy",
    "convert_file",
    "convert_model",
    "dataset_inputs",
    "heartbeat",
    "io_details",
    "keras_predict",
    "load_keras_model",
    "op_census",
    "output_tolerance",
    "random_inputs",
    "run_interpreter",
    "verify_conversion",
]
