"""The main job end to end on a smoke budget: every stage runs and every artifact appears."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_smoke_runs_every_stage_and_resumes(tmp_path):
    run_dir = tmp_path / "demo"
    command = [
        sys.executable,
        "-m",
        "adambnn_larq",
        "demo",
        "--smoke",
        "--run-dir",
        str(run_dir),
        "--samples",
        "16",
        "--runs",
        "2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for stage in ("1/5 train", "2/5 convert", "3/5 verify", "4/5 benchmark", "5/5 analysis"):
        assert f"=== {stage}" in done.stdout
    assert "=== summary" in done.stdout and "test accuracy: step1" in done.stdout
    summary = json.loads((run_dir / "demo_summary.json").read_text())
    assert summary["smoke"] is True
    assert summary["lce_bconv2d"] == 31
    assert summary["verification"]["samples"] == 16
    # LCE's elementwise criterion (1e-3 + 1e-3·|keras|) and top-1: an untrained smoke model
    # meets near-zero sign inputs, which the CPU's rounding may flip; a difference on an image
    # whose sign inputs all keep SIGN_MARGIN from zero is not rounding.
    assert summary["verification"]["unexplained"] == 0
    assert set(summary["test_accuracy"]) == {"step1", "step2"}
    for name in ("model.tflite", "benchmark.json", "report/report.md", "train/summary.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "model.tflite").stat().st_size == summary["tflite_bytes"]
    timings = json.loads((run_dir / "benchmark.json").read_text())["timings"]
    fastest = min((t for t in timings if t["name"] == "lce"), key=lambda t: t["median_ms"])
    assert (summary["latency_kernel"], summary["latency_ms_median"]) == (
        fastest["kernel"],
        fastest["median_ms"],
    )
    assert f"host latency: {fastest['median_ms']:.2f} ms (LCE {fastest['kernel']}" in done.stdout

    again = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (
        "already finished" in again.stdout and f"reusing {run_dir / 'model.tflite'}" in again.stdout
    )


def test_summary_leads_with_the_fastest_kernel(tmp_path, capsys):
    """The printed latency is the fastest kernel measured, named, with its ratio to float."""
    from adambnn_larq.cli.demo import _print_summary
    from adambnn_larq.deploy.tables import host_headlines

    timing = {
        "timings": [
            {"name": "lce", "kernel": "default", "threads": 1, "median_ms": 3.56},
            {"name": "lce", "kernel": "indirect_bgemm", "threads": 1, "median_ms": 0.83},
            {"name": "float", "kernel": "float", "threads": 1, "median_ms": 1.30},
        ]
    }
    result = {
        "test_accuracy": {"step1": 0.5, "step2": 0.6},
        "teacher_test_accuracy": 0.7,
        "tflite": "model.tflite",
        "tflite_bytes": 365_000,
        "lce_bconv2d": 31,
        "verification": {
            "samples": 16,
            "within_tolerance": 1.0,
            "max_abs_diff": 1e-5,
            "top1_agreement": 1.0,
        },
        "latency_summary": host_headlines(timing)[0],
        "report": "report/report.md",
        "seconds_this_invocation": 1.0,
    }
    _print_summary(tmp_path, result)
    lines = capsys.readouterr().out.splitlines()
    latency = next(line for line in lines if line.startswith("host latency"))
    assert latency == (
        "host latency: 0.83 ms (LCE indirect_bgemm kernel, 1 thread, median), 1.57x faster than "
        "float (1.30 ms); default kernel 3.56 ms"
    )
