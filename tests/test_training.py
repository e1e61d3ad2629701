"""The training driver: configuration, two-step hand-over, resume after kill -9, CLI."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import adambnn_larq as ab
from adambnn_larq.config import ConfigError, TrainConfig, resolve_config
from adambnn_larq.training import copy_weights, schedule_steps, train

# A tiny network and budget: the behaviour, not the accuracy, is under test.
TINY = {
    "dataset": "fashion_mnist",
    "model": "reactnet_small",
    "width_multiplier": 0.125,
    "kernel_initializer": "pytorch_default",
    "train_limit": 192,
    "eval_limit": 64,
    "batch_size": 64,
    "epochs": 2,
    "distillation": False,
    "analysis": False,
    "deterministic": True,
}

RECIPE = """
def get_config(smoke=False):
    return {config!r}
"""


def test_overrides_are_typed_and_validated():
    config = resolve_config({"epochs": 3}, ["weight_decay=-1e-5", "distillation=false",
                                            "train_limit=none", "optimizer=sgd"])  # fmt: skip
    assert (config.epochs, config.weight_decay, config.distillation) == (3, -1e-5, False)
    assert config.train_limit is None and config.optimizer == "sgd"
    with pytest.raises(ConfigError, match="unknown key.*epoch.*valid keys: .*epochs"):
        resolve_config({}, ["epoch=3"])
    with pytest.raises(ConfigError, match="epochs='three': expected int"):
        resolve_config({}, ["epochs=three"])
    with pytest.raises(ConfigError, match="batch_size=True: expected int"):
        resolve_config({"batch_size": True})
    with pytest.raises(ConfigError, match="optimizer='rmsprop' is not one of"):
        resolve_config({"optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="key=value"):
        resolve_config({}, ["epochs"])


def test_defaults_are_the_official_recipe():
    config = TrainConfig()
    assert (config.optimizer, config.learning_rate, config.adam_beta_1, config.adam_beta_2,
            config.adam_epsilon) == ("adam", 1.25e-3, 0.9, 0.999, 1e-8)  # fmt: skip
    assert (config.weight_decay, config.weight_decay_step2, config.weight_decay_mode) == (
        5e-6, 0.0, "coupled",
    )  # fmt: skip
    assert (config.epochs, config.batch_size, config.lr_schedule) == (256, 256, "linear")
    steps = schedule_steps(config)
    assert [(s.binary_activations, s.binary_weights, s.weight_decay) for s in steps] == [
        (True, False, 5e-6), (True, True, 0.0),
    ]  # fmt: skip
    assert steps[1].init_from == "step1"


def test_two_step_run_hands_over_best_weights(tmp_path):
    config = resolve_config(TINY)
    summary = train(config, tmp_path / "run", verbose=0)
    assert [s["name"] for s in summary["steps"]] == ["step1", "step2"]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["final_test_accuracy"] == summary["steps"][-1]["test_accuracy"]
    for step in ("step1", "step2"):
        for name in ("best.h5", "final.h5", "log.csv", "result.json"):
            assert (tmp_path / "run" / step / name).exists(), (step, name)
    # Step 2 starts exactly from step 1's best model: rebuild that start and compare.
    best1 = ab.load_model(tmp_path / "run" / "step1" / "best.h5")
    step2 = ab.ReActNetSmall(width_multiplier=0.125, binary_weights=True)
    copy_weights(best1, step2)
    for a, b in zip(best1.variables, step2.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert isinstance(step2.get_layer("block3_conv3x3").kernel_quantizer,
                      ab.quantizers.ChannelScaledSign)  # fmt: skip
    # A finished run is not rerun, and a different configuration in the same dir is refused.
    again = train(config, tmp_path / "run", verbose=0)
    assert again["steps"] == summary["steps"]
    with pytest.raises(ValueError, match="different configuration.*epochs"):
        train(resolve_config({**TINY, "epochs": 3}), tmp_path / "run", verbose=0)


def _cli_train(recipe, run_dir, *args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "adambnn_larq", "train", str(recipe), "--run-dir", str(run_dir),
         "--verbose", "0", *args],
        env={**os.environ, "PYTHONHASHSEED": "0", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


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


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    config = resolve_config({**TINY, "learning_rate": float("inf"), "schedule": "one-step"})
    with pytest.raises(Exception, match=r"loss became nan at epoch 1, step \d"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "step1" / "result.json").exists()


def test_train_cli_reports_bad_overrides():
    result = subprocess.run(
        [sys.executable, "-m", "adambnn_larq", "train", "adambnn_fashion_mnist", "epoch=3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown key(s) epoch" in result.stderr and "valid keys" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "adambnn_larq", "train", "no_such_recipe"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 2 and "adambnn_fashion_mnist" in missing.stderr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# BatchNorm normalizes each replica's half batch separately (as Keras does without
# SyncBatchNorm), so the distributed losses agree closely with the single-device one but not
# to the last digit.
DISTRIBUTED_LOSS_RTOL = 0.02


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
