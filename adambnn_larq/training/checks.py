"""What is checked before a run writes anything: the configuration against the teacher file
and the data (`check_config`), and the run directory against the configuration and inputs it
holds (`_check_run_dir`, `run_inputs`; `earlier_run` for one an earlier version wrote)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from adambnn_larq import data
from adambnn_larq.config import SMALL_TEACHER, TrainConfig
from adambnn_larq.errors import ConfigError, RunDirError
from adambnn_larq.rundir import (
    ANALYSIS_DIR,
    BEST_MODEL,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DIVERGED_FILE,
    FINAL_MODEL,
    INPUTS_FILE,
    LOG_FILE,
    REPORT_DIR,
    RESULT_FILE,
    SUMMARY_FILE,
    TRAIN_LOG,
    read_json,
)
from adambnn_larq.training.checkpoints import checkpoint_prefixes
from adambnn_larq.training.schedule import schedule_steps
from adambnn_larq.training.stage import _steps_per_epoch
from adambnn_larq.training.teacher import _check_teacher_file


def check_config(config: TrainConfig):
    """Check what `TrainConfig` cannot check by itself, before anything is written or trained:
    the teacher file, the dataset's sizes against the batch.

    Returns:
        The dataset's `DatasetInfo`.

    Raises:
        FileNotFoundError: no teacher file.
        ValueError: a dataset that cannot be used this way (e.g. batch larger than the data).
    """
    _check_teacher_file(config)
    info = data.dataset_info(config.dataset, data_dir=config.data_dir)
    _steps_per_epoch(config, info)
    return info


def _has_finished_epoch(run_dir: Path) -> bool:
    """Whether any step of the run finished an epoch (has a checkpoint or its result)."""
    for step_dir in _step_dirs(run_dir):
        if (step_dir / RESULT_FILE).exists() or checkpoint_prefixes(step_dir / CHECKPOINTS_DIR):
            return True
    return False


def _step_dirs(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.glob("step*") if p.is_dir() and re.fullmatch(r"step\d+", p.name)]


#: What a step directory of a run holds (`earlier_run`).
_STEP_CONTENTS = {RESULT_FILE, CHECKPOINTS_DIR, LOG_FILE, BEST_MODEL, FINAL_MODEL, ANALYSIS_DIR,
                  "tensorboard"}  # fmt: skip


def earlier_run(run_dir: Path) -> str | None:
    """Why ``run_dir`` (no marker) is a run directory an earlier version of this project wrote,
    or None: its config.json is a `TrainConfig`, its step folders are that schedule's, and it
    holds nothing else."""
    names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".tmp-")}
    steps = {n for n in names if re.fullmatch(r"step\d+", n) and (run_dir / n).is_dir()}
    if names == {TRAIN_LOG}:  # a study's run whose process never wrote its configuration
        return f"a study run of an earlier adambnn-larq that never started ({TRAIN_LOG})"
    if CONFIG_FILE not in names or names - steps - {
        CONFIG_FILE, SUMMARY_FILE, REPORT_DIR, DIVERGED_FILE, TRAIN_LOG
    }:  # fmt: skip
        return None
    try:
        previous = TrainConfig(**read_json(run_dir / CONFIG_FILE, error=RunDirError))
    except (RunDirError, ConfigError, TypeError):  # TypeError: a key TrainConfig does not have
        return None
    if steps - {step.name for step in schedule_steps(previous)}:
        return None
    for step in steps:
        contents = {p.name for p in (run_dir / step).iterdir()}
        extra = {n for n in contents if not n.startswith((".tmp-", ".worker-", ".best-"))}
        if extra - _STEP_CONTENTS:
            return None
    listed = ", ".join([CONFIG_FILE, *sorted(steps)])
    return f"a run directory of an earlier adambnn-larq ({listed})"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_inputs(config: TrainConfig, info) -> dict[str, Any]:
    """The identity of what a run reads besides its configuration, compared on resume.

    - The teacher file by content (sha256; a ResNet-34 file hashes in about a second), not by
      path: the same path holding another model is another run.
    - The data by what is cheap to know on every resume: the dataset's class count, image
      shape and split sizes (a different image folder or a truncated file changes them), not
      by content (hashing ImageNet on every resume is not cheap). ``data_dir`` itself is part
      of the configuration.
    """
    teacher = None
    if config.distillation and config.teacher != SMALL_TEACHER:
        teacher = _file_sha256(Path(config.teacher))
    return {
        "teacher_sha256": teacher,
        "data": {
            "classes": info.num_classes,
            "input_shape": list(info.input_shape),
            "examples": dict(info.num_examples),
        },
    }


def _describe_input_change(key: str, before: Any, now: Any, config: TrainConfig) -> str:
    if key == "teacher_sha256":
        return (
            f"the teacher file {config.teacher} has changed since the run started (sha256 "
            f"{str(before)[:12]}… then, {str(now)[:12]}… now)"
        )
    return f"the data has changed since the run started ({key}: {before} then, {now} now)"


def _check_run_dir(
    config: TrainConfig, run_dir: Path, inputs: dict[str, Any] | None = None
) -> bool:
    """Whether ``run_dir`` may hold ``config``: an existing run must have the same
    configuration and inputs (`run_inputs`), unless it never finished an epoch (then it is
    started again, and True is returned).

    Raises:
        RunDirError: the run directory holds another (or an unreadable, or no) configuration,
            or was trained on other inputs, and finished epochs.
    """
    config_path = run_dir / CONFIG_FILE
    finished = _has_finished_epoch(run_dir)
    if not config_path.exists():
        if finished:
            steps = ", ".join(sorted(p.name for p in _step_dirs(run_dir)))
            raise RunDirError(
                f"{run_dir} has trained steps ({steps}) but no {CONFIG_FILE}: the configuration "
                "that trained them is unknown, so they cannot be resumed with this one; restore "
                f"{config_path} or choose another --run-dir"
            )
        return bool(_step_dirs(run_dir))  # logs of an unfinished first epoch: start again
    try:
        previous = read_json(config_path, error=RunDirError)
    except RunDirError as error:
        reason = str(error).removeprefix(f"{config_path}: ")
        problem = f"{config_path} is not a readable configuration ({reason})"
        fix = f"restore it, choose another --run-dir or delete {run_dir}"
    else:
        current = json.loads(config.to_json())
        # A field added after the run was written counts as its default value.
        defaults = json.loads(TrainConfig().to_json())
        changed = sorted(k for k in current if previous.get(k, defaults[k]) != current[k])
        stored = _stored_inputs(run_dir)
        moved = [
            _describe_input_change(key, stored[key], inputs[key], config)
            for key in sorted(inputs or {})
            if key in stored and stored[key] != inputs[key]
        ]
        if not changed and not moved:
            return False
        if changed:
            problem = (
                f"{run_dir} holds a run with a different configuration (changed: "
                f"{', '.join(changed)})"
            )
        else:
            problem = f"{run_dir} cannot be resumed: {'; '.join(moved)}"
        fix = "choose another --run-dir or delete it"
    if finished:
        raise RunDirError(f"{problem}; {fix}")
    print(f"{problem}, but it never finished an epoch: starting it again with this configuration")
    return True


def _stored_inputs(run_dir: Path) -> dict[str, Any]:
    """The inputs recorded when the run started ({} for a run written before they were)."""
    path = run_dir / INPUTS_FILE
    return read_json(path, error=RunDirError) if path.exists() else {}
