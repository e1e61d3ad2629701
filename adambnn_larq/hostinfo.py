"""What machine a measurement ran on: every time this project reports names its CPU."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what `platform` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def onednn_enabled() -> bool | None:
    """Whether the imported TensorFlow runs oneDNN's kernels (None before TensorFlow is
    imported)."""
    if "tensorflow" not in sys.modules:
        return None
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def machine_summary() -> dict[str, object]:
    """Architecture, CPU model, core count, 1-minute load average and whether TensorFlow runs
    oneDNN's kernels (None if not imported), for result files."""
    return {
        "machine": platform.machine(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "onednn": onednn_enabled(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
