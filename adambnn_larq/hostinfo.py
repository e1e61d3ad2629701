"""What machine a measurement ran on: every time this project reports names its CPU."""

from __future__ import annotations

import os
import platform
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


def machine_summary() -> dict[str, object]:
    """Architecture, CPU model, core count and 1-minute load average, for result files."""
    return {
        "machine": platform.machine(),
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
