"""The whole configuration is validated before anything is written, and a run directory whose
run never finished an epoch does not block the corrected command."""

import json

import pytest

from adambnn_larq import cli
from adambnn_larq.config import ConfigError, TrainConfig, resolve_config
from adambnn_larq.rundir import claim_dir
from adambnn_larq.training import driver as training_driver
from adambnn_larq.training import teacher as training_teacher
from adambnn_larq.training import train

SMALL = {
    "dataset": "fashion_mnist",
    "model": "reactnet_small",
    "width_multiplier": 0.125,
    "train_limit": 128,
    "eval_limit": 64,
    "batch_size": 64,
    "epochs": 2,
    "distillation": False,
    "analysis": False,
}


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        ({}, ["dataset=foo"], "dataset='foo' is not one of mnist, fashion_mnist"),
        ({}, ["width_multiplier=0"], "width_multiplier must be > 0"),
        ({}, ["train_limit=0"], "train_limit must be at least 1"),
        ({}, ["eval_limit=-5"], "eval_limit must be at least 1"),
        ({}, ["learning_rate=nan"], "learning_rate='nan': expected finite float"),
        ({}, ["weight_decay=inf"], "weight_decay='inf': expected finite float"),
        ({"adam_epsilon": float("nan")}, [], "adam_epsilon=nan: must be a finite number"),
        ({"momentum": float("-inf")}, [], "momentum=-inf: must be a finite number"),
        ({}, ["adam_beta_1=1"], r"adam_beta_1 must be in \[0, 1\)"),
        ({}, ["input_size=0"], "input_size must be at least 1"),
    ],
)
def test_values_that_could_never_train_are_refused(recipe, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config({**SMALL, **recipe}, overrides)


def test_defaults_and_negative_weight_decay_stay_valid():
    TrainConfig()  # the paper's recipe; its teacher file is checked only when a run starts
    assert resolve_config(SMALL, ["weight_decay=-1e-5"]).weight_decay == -1e-5


def test_missing_teacher_fails_before_anything_is_written(tmp_path):
    config = resolve_config({**SMALL, "distillation": True, "teacher": "resnet34.h5"})
    with pytest.raises(FileNotFoundError) as caught:
        train(config, tmp_path / "run", verbose=0)
    # The hint names the flag that exists.
    assert "--arch resnet34" in str(caught.value) and "--resnet34" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_train_command_writes_nothing_for_a_bad_configuration(tmp_path, capsys):
    run_dir = tmp_path / "run"
    for bad in (
        "dataset=foo",
        "width_multiplier=0",
        "train_limit=0",
        "learning_rate=nan",
        "teacher=missing.h5",
        "batch_size=100000",
    ):
        status = cli.main(["train", "adambnn_fashion_mnist", bad, "--run-dir", str(run_dir)])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("adambnn train: error: "), (bad, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not run_dir.exists(), bad


class _Stop(Exception):
    pass


@pytest.fixture
def stop_before_training(monkeypatch):
    """train() up to the point where it would start the first stage."""

    def stop(*args, **kwargs):
        raise _Stop

    # Where the steps and the small teacher (a distilled run's first stage) look it up.
    monkeypatch.setattr(training_driver, "run_stage", stop)
    monkeypatch.setattr(training_teacher, "run_stage", stop)


def test_run_that_never_finished_an_epoch_is_replaced(tmp_path, capsys, stop_before_training):
    run_dir = tmp_path / "run"
    # What a first, wrong command left: its configuration and the logs of an unfinished epoch.
    wrong = resolve_config(SMALL, ["learning_rate=10"])
    (run_dir / "step1" / "analysis").mkdir(parents=True)
    (run_dir / "config.json").write_text(wrong.to_json())
    (run_dir / "step1" / "log.csv").write_text("epoch,loss\n")
    (run_dir / "step1" / "analysis" / "initial_signs.npz").write_bytes(b"stale")

    corrected = resolve_config(SMALL)
    with pytest.raises(_Stop):
        train(corrected, run_dir, verbose=0)
    out = capsys.readouterr().out
    assert "different configuration (changed: learning_rate)" in out
    assert "never finished an epoch: starting it again" in out
    assert json.loads((run_dir / "config.json").read_text()) == json.loads(corrected.to_json())
    assert not (run_dir / "step1").exists()


def test_run_with_finished_epochs_is_protected(tmp_path, stop_before_training):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "step1" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "ckpt-1.index").write_bytes(b"")
    original = resolve_config(SMALL, ["learning_rate=0.5"]).to_json()
    (run_dir / "config.json").write_text(original)
    with pytest.raises(ValueError, match="different configuration .*learning_rate.*another"):
        train(resolve_config(SMALL), run_dir, verbose=0)
    assert (run_dir / "config.json").read_text() == original

    # A damaged config.json is named, with the fix, and left alone.
    (run_dir / "config.json").write_text("{garbage")
    with pytest.raises(ValueError) as caught:
        train(resolve_config(SMALL), run_dir, verbose=0)
    message = str(caught.value)
    assert f"{run_dir / 'config.json'} is not a readable configuration" in message
    assert "not valid JSON" in message and f"delete {run_dir}" in message
    assert (run_dir / "config.json").read_text() == "{garbage"


def test_damaged_config_of_an_unstarted_run_is_replaced(tmp_path, capsys, stop_before_training):
    run_dir = tmp_path / "run"
    claim_dir(run_dir, kind="train")  # the project's own run directory (its marker)
    (run_dir / "config.json").write_text("")
    with pytest.raises(_Stop):
        train(resolve_config(SMALL), run_dir, verbose=0)
    assert f"{run_dir / 'config.json'} is not a readable configuration" in capsys.readouterr().out
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == "fashion_mnist"
