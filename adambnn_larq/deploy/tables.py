"""The markdown tables of the benchmarks (`benchmark_host`, `benchmark_binary`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fastest_lce(result: dict[str, Any], threads: int) -> dict[str, Any]:
    """The fastest LCE timing (lowest median) at ``threads`` of a `benchmark_host` result."""
    candidates = [t for t in result["timings"] if t["name"] == "lce" and t["threads"] == threads]
    if not candidates:
        raise ValueError(f"no LCE timing at {threads} thread(s) in the result")
    return min(candidates, key=lambda t: t["median_ms"])


def host_headlines(result: dict[str, Any]) -> list[str]:
    """One line per thread count of a `benchmark_host` result, led by the fastest LCE kernel
    measured (on x86 usually indirect_bgemm, several times faster than the default), with its
    ratio to the float model when that was timed, then the other kernels, e.g.
    ``host latency: 0.83 ms (LCE indirect_bgemm kernel, 1 thread, median), 1.57x faster than
    float (1.30 ms); default kernel 3.56 ms``."""
    lines = []
    for threads in sorted({t["threads"] for t in result["timings"] if t["name"] == "lce"}):
        best = fastest_lce(result, threads)
        line = (
            f"host latency: {best['median_ms']:.2f} ms (LCE {best['kernel']} kernel, {threads} "
            f"thread{'s' if threads > 1 else ''}, median)"
        )
        floats = [t for t in result["timings"] if t["name"] == "float" and t["threads"] == threads]
        if floats:
            float_ms = floats[0]["median_ms"]
            ratio = float_ms / best["median_ms"]
            line += (
                f", {ratio:.2f}x faster than float ({float_ms:.2f} ms)"
                if ratio >= 1
                else f", {1 / ratio:.2f}x slower than float ({float_ms:.2f} ms)"
            )
        others = sorted(
            (t for t in result["timings"] if t["name"] == "lce" and t["threads"] == threads),
            key=lambda t: t["median_ms"],
        )[1:]
        if others:
            line += "; " + ", ".join(
                f"{t['kernel']} kernel {t['median_ms']:.2f} ms" for t in others
            )
        lines.append(line)
    return lines


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
