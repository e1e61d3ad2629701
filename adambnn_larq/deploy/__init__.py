"""Deployment, above the core: conversion with the Larq Compute Engine, verification against
Keras, latency benchmarks (host and board), and import of official PyTorch checkpoints.

One module per job: `flatbuffer` (read a .tflite), `convert` (audit and convert), `verify`
(interpreter vs Keras), `benchmark` (host timing, float baseline), `remote`
(``lce_benchmark_model`` over ssh), `tables` (their markdown), `pytorch_import` (checkpoints),
`fold` (the deployment graph of a ReActNet: constants folded, fewer float ops), `compress`
(int8/float16 weight storage), `profile` (time per op: host replay, board op profiler),
`interpreter` (the one LCE interpreter factory), `evaluate` (top-1/top-5 of a ``.h5`` or
``.tflite`` over a dataset split), `jobs` (the ``convert``, ``verify`` and
``benchmark`` commands' work, without argparse).
The core (`adambnn_larq` models, training, data, analysis) never imports this package.
"""

from __future__ import annotations

from adambnn_larq.config import (
    ARCHITECTURES,
    CONVERSION_ROUTES,
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    INTERPRETER_KERNELS,
    KERNELS,
    TARGETS,
)
from adambnn_larq.deploy.benchmark import (
    Configuration,
    Timing,
    benchmark_host,
    convert_float_tflite,
    float_baseline,
    host_info,
    time_configurations,
    time_interpreter,
)
from adambnn_larq.deploy.compress import CompressionResult, compress_weights, compressed_weights
from adambnn_larq.deploy.convert import (
    ConversionResult,
    LayerFinding,
    audit_binary_layers,
    check_dtype_policy,
    convert_file,
    convert_model,
    load_keras_model,
)
from adambnn_larq.deploy.evaluate import EvaluationResult, evaluate_model
from adambnn_larq.deploy.flatbuffer import io_details, op_census
from adambnn_larq.deploy.fold import FoldedPReLU, NotFoldableError, fold_for_deployment
from adambnn_larq.deploy.interpreter import lce_interpreter
from adambnn_larq.deploy.profile import OpTime, Profile, parse_op_profile, profile_host
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
from adambnn_larq.deploy.remote import (
    Shell,
    benchmark_binary,
    parse_benchmark_output,
    parse_system_info,
)
from adambnn_larq.deploy.tables import (
    BINARY_TABLE_HEADER,
    binary_markdown_rows,
    host_headlines,
    host_markdown,
)
from adambnn_larq.deploy.verify import (
    VerificationResult,
    dataset_inputs,
    keras_predict,
    output_tolerance,
    random_inputs,
    run_interpreter,
    sign_margins,
    verify_conversion,
)
from adambnn_larq.errors import BenchmarkError, CheckpointError, ConversionError
from adambnn_larq.logs import heartbeat

__all__ = [
    "ARCHITECTURES",
    "CONVERSION_ROUTES",
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "INTERPRETER_KERNELS",
    "KERNELS",
    "TARGETS",
    "BINARY_TABLE_HEADER",
    "BenchmarkError",
    "CheckpointError",
    "CompressionResult",
    "Configuration",
    "ConversionError",
    "ConversionResult",
    "EvaluationResult",
    "FoldedPReLU",
    "ImportReport",
    "LayerFinding",
    "NotFoldableError",
    "OpTime",
    "Profile",
    "PyTorchCheckpoint",
    "REACTNET_A",
    "RESNET34",
    "Shell",
    "Timing",
    "VerificationResult",
    "audit_binary_layers",
    "benchmark_binary",
    "benchmark_host",
    "binary_markdown_rows",
    "check_dtype_policy",
    "compress_weights",
    "compressed_weights",
    "convert_file",
    "convert_float_tflite",
    "convert_model",
    "dataset_inputs",
    "evaluate_model",
    "decide_step",
    "detect_architecture",
    "float_baseline",
    "fold_for_deployment",
    "heartbeat",
    "host_headlines",
    "host_info",
    "host_markdown",
    "import_pytorch",
    "import_reactnet_a",
    "import_resnet34",
    "inspect_reactnet_a",
    "io_details",
    "keras_predict",
    "lce_interpreter",
    "load_keras_model",
    "load_pytorch_checkpoint",
    "op_census",
    "parse_op_profile",
    "output_tolerance",
    "parse_benchmark_output",
    "parse_system_info",
    "profile_host",
    "random_inputs",
    "reactnet_a_expected_shapes",
    "resnet34_expected_shapes",
    "run_interpreter",
    "sign_margins",
    "time_configurations",
    "time_interpreter",
    "verify_conversion",
]
