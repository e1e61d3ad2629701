"""A damaged training checkpoint: the run falls back to the one before it, saying so; with
none readable, the error names the file and the command that restarts the step."""

import pytest

from adambnn_larq import training
from adambnn_larq.config import resolve_config
from adambnn_larq.training import train

TINY = {
    "dataset": "fashion_mnist",
    "model": "reactnet_small",
    "width_multiplier": 0.125,
    "kernel_initializer": "pytorch_default",
    "train_limit": 64,
    "eval_limit": 64,
    "batch_size": 64,
    "epochs": 2,
    "schedule": "one-step",
    "distillation": False,
    "analysis": False,
    "deterministic": True,
}


def _checkpoints(directory):
    return sorted(p.name for p in directory.glob("ckpt-*.index"))


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


def test_damaged_checkpoint_falls_back_then_names_the_fix(tmp_path, capsys):
    config = resolve_config(TINY)
    run_dir = tmp_path / "run"
    first = train(config, run_dir, verbose=0)
    checkpoints = run_dir / "step1" / "checkpoints"
    assert _checkpoints(checkpoints) == ["ckpt-1.index", "ckpt-2.index"]

    # Killed after writing the last checkpoint but before the step's result, and the newest
    # checkpoint's data file cut short (a full disk, a crash while copying the run...).
    (run_dir / "step1" / "result.json").unlink()
    _truncate(checkpoints / "ckpt-2.data-00000-of-00001", 100)
    capsys.readouterr()
    again = train(config, run_dir, verbose=0)
    out = capsys.readouterr().out
    assert f"checkpoint {checkpoints / 'ckpt-2'} cannot be read" in out
    assert "falling back to the previous one, ckpt-1" in out
    assert "resuming after epoch 1 of 2" in out and "epoch 2/2" in out
    # The epoch is trained again from the same state: the same result as the first time.
    assert again["steps"][0]["test_loss"] == pytest.approx(first["steps"][0]["test_loss"])
    assert (run_dir / "step1" / "result.json").exists()

    # Both checkpoints damaged (index files this time): a one-line error naming the files
    # and the command that restarts the step; nothing is deleted by itself.
    (run_dir / "step1" / "result.json").unlink()
    for index in checkpoints.glob("ckpt-*.index"):
        _truncate(index, 10)
    with pytest.raises(ValueError) as caught:
        train(config, run_dir, verbose=0)
    assert isinstance(caught.value, training.CheckpointUnreadable)
    message = str(caught.value)
    assert "\n" not in message
    assert f"checkpoint {checkpoints / 'ckpt-2'} (ckpt-2.data-00000-of-00001, ckpt-2.index)" in (
        message
    )
    assert "nor can the 1 older one(s)" in message
    assert f"rm -r {checkpoints}" in message and "rerun the same command" in message
    assert _checkpoints(checkpoints) == ["ckpt-1.index", "ckpt-2.index"]
