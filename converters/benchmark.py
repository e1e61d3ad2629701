"""Latency benchmarks: re-exported from `adambnn_larq.deploy.benchmark` (this host),
`adambnn_larq.deploy.remote` (``lce_benchmark_model``, over ssh) and
`adambnn_larq.deploy.tables` (markdown), where the code lives."""

from adambnn_larq.config import KERNELS
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
from adambnn_larq.deploy.remote import (
    Shell,
    benchmark_binary,
    parse_benchmark_output,
    parse_system_info,
)
from adambnn_larq.deploy.tables import BINARY_TABLE_HEADER, binary_markdown_rows, host_markdown
from adambnn_larq.errors import BenchmarkError

__all__ = [
    "BINARY_TABLE_HEADER",
    "KERNELS",
    "BenchmarkError",
    "Configuration",
    "Shell",
    "Timing",
    "benchmark_binary",
    "benchmark_host",
    "binary_markdown_rows",
    "convert_float_tflite",
    "float_baseline",
    "host_info",
    "host_markdown",
    "parse_benchmark_output",
    "parse_system_info",
    "time_configurations",
    "time_interpreter",
]
