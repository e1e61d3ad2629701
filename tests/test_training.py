"""The training driver: configuration, two-step hand-over, NaN stop, CLI errors.

Resume after kill -9 and the distribution strategies: test_training_equivalence.py.
"""

import csv
import json
import re
import subprocess
import sys

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tmp_path):
    # Finite but absurd (inf itself is refused by the configuration).
    config = resolve_config({**TINY, "learning_rate": 1e30, "schedule": "one-step"})
    with pytest.raises(Exception, match=r"loss became nan at epoch 1, step \d"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "step1" / "result.json").exists()


@pytest.mark.slow
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


@pytest.mark.slow
def test_smoke_recipe_still_flips_signs_in_the_last_epoch_of_each_step(tmp_path):
    # The per-iteration schedule keeps learning to the end: the official per-epoch one ran the
    # last epoch of each short step at learning rate 0 (FF exactly 0 there).
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "adambnn_larq", "train", "adambnn_fashion_mnist", "--smoke",
         "--run-dir", str(run_dir), "--verbose", "0"],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "warning" not in done.stdout
    for step in ("step1", "step2"):
        with open(run_dir / step / "log.csv") as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == 2  # the smoke recipe's two epochs
        assert float(rows[-1]["ff_ratio"]) > 0, (step, rows[-1])


@pytest.mark.slow
def test_a_stage_writes_its_graph_once_and_says_where_an_epochs_time_went(tmp_path, capsys):
    """Each epoch is one fit call; the TensorBoard graph (seconds to write) is written by the
    first only, and the epoch line splits its time into training, validation and the rest."""
    import tensorflow as tf

    config = resolve_config({**TINY, "schedule": "one-step", "epochs": 3})
    train(config, tmp_path / "run", verbose=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if "] epoch " in line]
    assert len(lines) == 3, lines
    for line in lines:
        total, training, validation, rest = (
            int(x) for x in re.search(
                r"; (\d+) s: training (\d+), validation (\d+), the rest \([^)]*\) (-?\d+)", line
            ).groups()
        )  # fmt: skip
        # Rounded to whole seconds each, so the parts add up to the total within 2 s.
        assert abs(training + validation + rest - total) <= 2, line
    files = sorted((tmp_path / "run").glob("*/tensorboard/train/events.out.tfevents.*"))
    graphs = sum(
        bool(event.graph_def)
        for path in files
        for event in tf.compat.v1.train.summary_iterator(str(path))
    )
    assert files and graphs == 1
