"""Runs that must give the single-device uninterrupted result: kill -9 and resume,
MirroredStrategy over two logical CPUs, MultiWorkerMirroredStrategy over two processes.

They share one reference run (a module fixture), so they live in their own file: test
distribution (`pytest -n 2 --dist loadfile`) keeps a file on one worker.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from test_training import TINY

import adambnn_larq as ab

RECIPE = """
def get_config(smoke=False):
    return {config!r}
"""


def _cli_train(recipe, run_dir, *args, env=None):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adambnn_larq",
            "train",
            str(recipe),
            "--run-dir",
            str(run_dir),
            "--verbose",
            "0",
            *args,
        ],
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process):
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    return output


def _final_weights(run_dir):
    return [v.numpy() for v in ab.load_model(run_dir / "step1" / "final.h5").variables]


def _first_epoch_loss(run_dir):
    header, row = (run_dir / "step1" / "log.csv").read_text().splitlines()[:2]
    return float(row.split(",")[header.split(",").index("loss")])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """A three-epoch one-step recipe and its uninterrupted single-device run directory."""
    root = tmp_path_factory.mktemp("reference")
    recipe = root / "tiny_one_step.py"
    recipe.write_text(RECIPE.format(config=dict(TINY, epochs=3, schedule="one-step")))
    assert "(1 replica(s))" in _finish(_cli_train(recipe, root / "run"))
    return recipe, root / "run"


@pytest.mark.slow
def test_kill_and_resume_gives_the_uninterrupted_result(reference_run, tmp_path):
    recipe, reference = reference_run
    interrupted = _cli_train(recipe, tmp_path / "resumed")
    state = tmp_path / "resumed" / "step1" / "checkpoints" / "checkpoint"
    deadline = time.time() + 900
    while not state.exists() and time.time() < deadline:
        time.sleep(0.2)
        assert interrupted.poll() is None, interrupted.stdout.read()
    interrupted.send_signal(signal.SIGKILL)  # mid-run: at least one epoch is done, not all
    interrupted.wait()
    assert not (tmp_path / "resumed" / "step1" / "result.json").exists()

    output = _finish(_cli_train(recipe, tmp_path / "resumed"))
    assert "resuming after epoch" in output
    for a, b in zip(_final_weights(reference), _final_weights(tmp_path / "resumed")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    log = (tmp_path / "resumed" / "step1" / "log.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in log[1:]} == {"0", "1", "2"}


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# BatchNorm normalizes each replica's half batch separately (as Keras does without
# SyncBatchNorm), so the distributed losses agree closely with the single-device one but not
# to the last digit.
DISTRIBUTED_LOSS_RTOL = 0.02


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(reference_run, tmp_path):
    """Two logical CPUs sharing one global batch give the single-device training loss."""
    recipe, reference = reference_run
    output = _finish(
        _cli_train(recipe, tmp_path / "run", "--strategy", "mirrored", "--cpu-devices", "2")
    )
    assert "(2 replica(s))" in output
    assert _first_epoch_loss(tmp_path / "run") == pytest.approx(
        _first_epoch_loss(reference), rel=DISTRIBUTED_LOSS_RTOL
    )


@pytest.mark.slow
def test_multiworker_strategy_on_two_processes_matches_single_device(reference_run, tmp_path):
    """Two worker processes on 127.0.0.1 (TF_CONFIG) train one model on a shared run directory."""
    recipe, reference = reference_run
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = [
        _cli_train(recipe, tmp_path / "run", "--strategy", "multiworker", env={"TF_CONFIG": config})
        for config in (
            json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(2)
        )
    ]
    try:
        outputs = [process.communicate(timeout=900)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "(2 replica(s))" in output
    run = tmp_path / "run"
    assert _first_epoch_loss(run) == pytest.approx(
        _first_epoch_loss(reference), rel=DISTRIBUTED_LOSS_RTOL
    )
    # The chief wrote the run; the other worker left no files behind.
    assert {p.name for p in (run / "step1").iterdir()} >= {"best.h5", "final.h5", "result.json"}
    assert not list((run / "step1").glob(".worker-*"))
    assert json.loads((run / "summary.json").read_text())["num_replicas"] == 2
