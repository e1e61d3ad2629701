"""A damaged training checkpoint: the run falls back to the one before it, saying so; with
none readable, the error names the file and the command that restarts the step."""

import pytest

from adambnn_larq.config import resolve_config
from adambnn_larq.errors import CheckpointUnreadable
from adambnn_larq.training import checkpoints as training_checkpoints
from adambnn_larq.training import stage as training_stage
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


@pytest.mark.slow
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
    assert isinstance(caught.value, CheckpointUnreadable)
    message = str(caught.value)
    assert "\n" not in message
    assert f"checkpoint {checkpoints / 'ckpt-2'} (ckpt-2.data-00000-of-00001, ckpt-2.index)" in (
        message
    )
    assert "nor can the 1 older one(s)" in message
    assert f"rm -r {checkpoints}" in message and "rerun the same command" in message
    assert _checkpoints(checkpoints) == ["ckpt-1.index", "ckpt-2.index"]


class _Killed(BaseException):
    """A kill -9 at a chosen point (BaseException: nothing on the way catches it)."""


def _accuracy_of(model_path):
    """Test accuracy of a saved model on the run's evaluation images (TINY's eval_limit)."""
    import numpy as np

    from adambnn_larq import data
    from adambnn_larq.saving import load_model

    model = load_model(model_path)
    images, labels = next(
        iter(data.make_dataset("fashion_mnist", "test", batch_size=64, training=False, limit=64))
    )
    predictions = np.argmax(model(images, training=False).numpy(), axis=-1)
    return float(np.mean(predictions == labels.numpy()))


def _checkpointed_best(checkpoints):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(checkpoints))
    if prefix is None:
        return None
    return tf.train.load_checkpoint(prefix).get_tensor("best_accuracy/.ATTRIBUTES/VARIABLE_VALUE")


@pytest.mark.slow
def test_a_kill_between_best_model_and_checkpoint_resumes_consistently(
    tmp_path, monkeypatch, capsys
):
    import tensorflow as tf

    config = resolve_config(TINY)
    run_dir = tmp_path / "run"
    step = run_dir / "step1"
    real_save = tf.train.CheckpointManager.save

    # 1. Killed after epoch 1's best model is written, before its checkpoint: no best.h5 may
    #    then claim an epoch that is trained again (before: best.h5 from the lost epoch).
    def killed_save(self, *args, **kwargs):
        raise _Killed

    monkeypatch.setattr(tf.train.CheckpointManager, "save", killed_save)
    with pytest.raises(_Killed):
        train(config, run_dir, verbose=0)
    assert _checkpointed_best(step / "checkpoints") is None
    assert not (step / "best.h5").exists()

    # 2. Killed after epoch 1's checkpoint, before the best model takes best.h5's place.
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    calls = []

    def killed_replace(source, destination):
        calls.append(destination)
        raise _Killed

    # The epoch loop (stage) and the settling of a pending best model (checkpoints) replace.
    monkeypatch.setattr(training_stage, "replace_durably", killed_replace)
    monkeypatch.setattr(training_checkpoints, "replace_durably", killed_replace)
    with pytest.raises(_Killed):
        train(config, run_dir, verbose=0)
    assert calls == [step / "best.h5"] and _checkpointed_best(step / "checkpoints") is not None
    monkeypatch.undo()

    # 3. Resumed: the pending best model of the checkpointed epoch is put in place, nothing of
    #    the first kill is left, and best.h5 is the model whose accuracy the run reports.
    capsys.readouterr()
    summary = train(config, run_dir, verbose=0)
    out = capsys.readouterr().out
    assert "resuming after epoch 1 of 2" in out
    assert "[step1] best model of epoch 1 put in place (a kill had left it)" in out
    assert not list(step.glob(".best-epoch-*")) and not list(step.glob(".tmp-*"))
    best = summary["steps"][0]["best_test_accuracy"]
    assert _accuracy_of(step / "best.h5") == pytest.approx(best)
    assert float(_checkpointed_best(step / "checkpoints")) == pytest.approx(best)


def test_stale_temporary_files_are_removed_at_the_next_start(tmp_path, capsys):
    from adambnn_larq import rundir

    run_dir = tmp_path / "run"
    rundir.claim_dir(run_dir, kind="train")
    (run_dir / "step1").mkdir()
    left = [run_dir / ".tmp-abc123", run_dir / "step1" / ".tmp-def456.h5"]
    for path in left:
        path.write_bytes(b"half a file")
    # Refused later (the configuration is unreadable), but the temporaries are gone first.
    (run_dir / "config.json").write_text("{")
    (run_dir / "step1" / "result.json").write_text("{}")
    with pytest.raises(ValueError, match="not a readable configuration"):
        train(resolve_config(TINY), run_dir, verbose=0)
    assert "removed 2 temporary file(s) a killed run left" in capsys.readouterr().out
    assert not any(path.exists() for path in left)
