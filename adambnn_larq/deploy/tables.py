"""The markdown tables of the benchmarks (`benchmark_host`, `benchmark_binary`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def host_markdown(result: dict[str, Any], model_name: str) -> str:
    """A markdown table of a `benchmark_host` result."""
    size = {"lce": result["size_bytes"], "float": result.get("float_size_bytes")}
    ratio = {(r["kernel"], r["threads"]): r["float_over_lce"] for r in result["ratios"]}
    lines = [
        "| model | kernel | threads | XNNPACK | median ms | p90 ms | float / this | size MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result["timings"]:
        speedup = ratio.get((t["kernel"], t["threads"]))
        label = model_name if t["name"] == "lce" else f"{model_name} (float TFLite)"
        lines.append(
            f"| {label} | {t['kernel']} | {t['threads']} | {'on' if t['xnnpack'] else 'off'} | "
            f"{t['median_ms']:.1f} | {t['p90_ms']:.1f} | "
            f"{'1.00' if t['name'] == 'float' else (f'{speedup:.2f}' if speedup else '-')} | "
            f"{size[t['name']] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


BINARY_TABLE_HEADER = (
    "| model | board | OS | threads | kernel | Inference (avg) ms | size MB | "
    "CPU MHz before/after | °C before/after |\n|---|---|---|---|---|---|---|---|---|\n"
)


def binary_markdown_rows(result: dict[str, Any]) -> str:
    """One markdown table row per run of a `benchmark_binary` result (see the header)."""
    system = result["system"]
    board = system.get("board") or system.get("machine") or "unknown"
    bits = system.get("userland_bits")
    os_name = (system.get("os") or "?") + (f", {bits}-bit" if bits else "")
    rows = []
    for run in result["runs"]:
        rows.append(
            f"| {Path(result['model']).name} | {board} | {os_name} | {run['threads']} | "
            f"{run['kernel']} | {run['inference_avg_ms']:.2f} | {result['size_bytes'] / 1e6:.2f} "
            f"| {_pair(run, 'cpu_freq_mhz', '{:.0f}')} | {_pair(run, 'temperature_c', '{:.1f}')} |"
        )
    return "\n".join(rows) + "\n"


def _pair(run: dict[str, Any], key: str, fmt: str) -> str:
    values = [run[when].get(key) for when in ("before", "after")]
    return "/".join("?" if v is None else fmt.format(v) for v in values)
