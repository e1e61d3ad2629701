"""A stage's checkpoints: restoring the newest readable one (falling back to older ones), the
best model a kill left pending, and copying weights between networks (step 2 starts from step
1's best)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import tensorflow as tf

from adambnn_larq.errors import CheckpointUnreadable
from adambnn_larq.rundir import BEST_MODEL, replace_durably


def _pending_best_model(work_dir: Path, epoch: int) -> Path:
    """Where the best model of ``epoch`` waits for its checkpoint (see `run_stage`)."""
    return work_dir / f".best-epoch-{epoch:04d}{Path(BEST_MODEL).suffix}"


def _settle_best_model(work_dir: Path, epochs_done: int, name: str) -> None:
    """Finish the best-model update a kill interrupted: the pending model of the restored
    checkpoint's epoch was recorded by it and takes best.h5's place; any other pending model
    belongs to an epoch no checkpoint recorded (trained again) and is dropped."""
    for pending in work_dir.glob(".best-epoch-*"):
        if epochs_done and pending == _pending_best_model(work_dir, epochs_done):
            replace_durably(pending, work_dir / BEST_MODEL)
            print(f"[{name}] best model of epoch {epochs_done} put in place (a kill had left it)")
        else:
            pending.unlink()


def checkpoint_prefixes(directory: Path) -> list[str]:
    """The checkpoints ``ckpt-N`` in ``directory``, newest first.

    Found from their index files rather than from TensorFlow's ``checkpoint`` state file,
    which may itself be the damaged file.
    """
    numbered = {}
    for index in Path(directory).glob("ckpt-*.index"):
        match = re.fullmatch(r"ckpt-(\d+)", index.stem)
        if match:
            numbered[int(match.group(1))] = str(index.with_suffix(""))
    return [numbered[number] for number in sorted(numbered, reverse=True)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def restore_checkpoint(checkpoint: tf.train.Checkpoint, directory: Path, name: str) -> str | None:
    """Restore the newest readable checkpoint of ``directory``, falling back to older ones.

    Arguments:
        checkpoint: what to restore.
        directory: the stage's ``checkpoints/`` directory.
        name: the stage, for messages.

    Returns:
        The restored checkpoint's prefix, or None if there is no checkpoint (a fresh start).

    Raises:
        CheckpointUnreadable: there are checkpoints but none can be read; the message names the
            files and the command that restarts the stage.
    """
    failures = []
    for prefix in checkpoint_prefixes(directory):
        try:
            checkpoint.restore(prefix).assert_existing_objects_matched()
        except Exception as error:
            # (IndexError for a short data file, DataLossError, OpError, AssertionError...)
            failures.append((prefix, error))
            continue
        for bad, error in failures:
            print(
                f"[{name}] checkpoint {bad} cannot be read ({_first_line(error)}); falling "
                f"back to the previous one, {Path(prefix).name}: its epoch is trained again"
            )
        return prefix
    if not failures:
        return None
    prefix, error = failures[0]
    files = ", ".join(sorted(p.name for p in Path(prefix).parent.glob(Path(prefix).name + ".*")))
    raise CheckpointUnreadable(
        f"[{name}] cannot resume: checkpoint {prefix} ({files}) cannot be read "
        f"({_first_line(error)})"
        + (f", nor can the {len(failures) - 1} older one(s)" if len(failures) > 1 else "")
        + f". To restart {name} from its first epoch, delete its checkpoints and rerun the same "
        f"command: rm -r {shlex.quote(str(directory))}"
    )


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    """Copy every variable of ``source`` into ``target`` by name; shapes and names must agree."""
    source_vars = {v.name: v for v in source.variables}
    target_names = [v.name for v in target.variables]
    missing = sorted(set(target_names) - set(source_vars))
    extra = sorted(set(source_vars) - set(target_names))
    if missing or extra:
        raise ValueError(f"weights do not match: missing {missing[:5]}, unexpected {extra[:5]}")
    for variable in target.variables:
        value = source_vars[variable.name]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{variable.name}: shape {value.shape} != {variable.shape}")
        variable.assign(value.numpy())
