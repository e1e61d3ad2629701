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

    again = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (
        "already finished" in again.stdout and f"reusing {run_dir / 'model.tflite'}" in again.stdout
    )
