"""A run directory is the project's own: a foreign folder is refused and left untouched, a run
resumes only with its configuration and inputs, one process writes it at a time."""

import json
import os
import socket
import subprocess
import sys
import types

import pytest
import tensorflow as tf

from adambnn_larq import rundir, training
from adambnn_larq.config import resolve_config
from adambnn_larq.data import dataset_info
from adambnn_larq.errors import RunDirError
from adambnn_larq.training.teacher import _teacher_cache_key

TINY = {
    "dataset": "fashion_mnist",
    "model": "reactnet_small",
    "width_multiplier": 0.125,
    "train_limit": 64,
    "eval_limit": 64,
    "batch_size": 64,
    "epochs": 2,
    "lr_schedule": "step-linear",
    "schedule": "one-step",
    "distillation": False,
    "analysis": False,
}


def _tree(directory):
    """Every path under ``directory`` with its bytes (None for a directory), but the lock file
    (it stays, empty, once a process has held it)."""
    return {
        str(p.relative_to(directory)): None if p.is_dir() else p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.name != rundir.LOCK_FILE
    }


def _finished_step(run_dir, name="step1"):
    (run_dir / name).mkdir(parents=True)
    result = {"test_accuracy": 0.5, "test_loss": 1.0, "best_test_accuracy": 0.5}
    (run_dir / name / "result.json").write_text(json.dumps(result))


def test_a_foreign_directory_is_refused_and_left_untouched(tmp_path):
    run_dir = tmp_path / "my-project"
    (run_dir / "step1").mkdir(parents=True)
    (run_dir / "config.json").write_text('{"project": "not adambnn", "epochs": "many"}\n')
    (run_dir / "step1" / "notes.txt").write_text("a week of work\n")
    before = _tree(run_dir)
    with pytest.raises(RunDirError) as caught:
        training.train(resolve_config(TINY), run_dir, verbose=0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{run_dir} is not empty and was not made by adambnn (no adambnn-run.json)" in message
    assert "nothing was changed" in message
    assert _tree(run_dir) == before


def test_resume_without_config_but_with_trained_steps_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    rundir.claim_dir(run_dir, kind="train")
    _finished_step(run_dir)
    before = _tree(run_dir)
    with pytest.raises(RunDirError, match=r"has trained steps \(step1\) but no config.json"):
        training.train(resolve_config(TINY), run_dir, verbose=0)
    assert _tree(run_dir) == before


def test_a_changed_teacher_file_is_detected(tmp_path):
    teacher = tmp_path / "teacher.h5"
    teacher.write_bytes(b"the teacher the run started with")
    config = resolve_config({**TINY, "distillation": True, "teacher": str(teacher)})
    run_dir = tmp_path / "run"
    # The state a first run leaves after its first step (written here: no training needed).
    rundir.claim_dir(run_dir, kind="train")
    (run_dir / "config.json").write_text(config.to_json())
    inputs = training.run_inputs(config, dataset_info("fashion_mnist"))
    (run_dir / "inputs.json").write_text(json.dumps(inputs))
    _finished_step(run_dir)
    teacher.write_bytes(b"another teacher at the same path")  # same path, other content
    with pytest.raises(RunDirError) as caught:
        training.train(config, run_dir, verbose=0)
    message = str(caught.value)
    assert f"the teacher file {teacher} has changed since the run started (sha256" in message
    assert "\n" not in message and "choose another --run-dir" in message


def test_a_second_process_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    rundir.claim_dir(run_dir, kind="train")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom adambnn_larq.rundir import dir_lock\n"
         "with dir_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n",
         str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError) as caught:
            training.train(resolve_config(TINY), run_dir, verbose=0)
        host = socket.gethostname()
        assert f"is being written by another process (process {holder.pid} on {host}" in str(
            caught.value
        )
        assert not (run_dir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # Killed, it holds nothing: the next run takes its lock over, saying whose it was.
    with rundir.dir_lock(run_dir):
        record = json.loads((run_dir / rundir.LOCK_FILE).read_text())
        assert record == {"pid": os.getpid(), "host": socket.gethostname()}


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rundir.claim_dir(run_dir, kind="train")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = {"pid": int(dead.stdout), "host": socket.gethostname()}
    (run_dir / rundir.LOCK_FILE).write_text(json.dumps(stale))
    with rundir.dir_lock(run_dir):
        pass
    out = capsys.readouterr().out
    assert f"taking over the lock of process {stale['pid']} on {stale['host']}" in out


def test_a_run_directory_of_an_earlier_version_is_adopted(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "step1" / "checkpoints").mkdir(parents=True)
    (run_dir / "step1" / "log.csv").write_text("epoch,loss\n0,1.0\n")
    (run_dir / "config.json").write_text(resolve_config(TINY).to_json())
    rundir.claim_dir(run_dir, kind="train", adopt=training.earlier_run)
    assert "a run directory of an earlier adambnn-larq (config.json, step1); adopting it" in (
        capsys.readouterr().out
    )
    marker = json.loads((run_dir / rundir.MARKER_FILE).read_text())
    assert marker["format"] == rundir.FORMAT_VERSION and marker["kind"] == "train"
    # A step folder the schedule does not have, or a stranger file: not adopted.
    other = tmp_path / "other"
    (other / "step2").mkdir(parents=True)
    (other / "config.json").write_text(resolve_config(TINY).to_json())  # one-step: no step2
    with pytest.raises(RunDirError, match="not made by adambnn"):
        rundir.claim_dir(other, kind="train", adopt=training.earlier_run)
    assert not (other / rundir.MARKER_FILE).exists()


def test_directories_of_another_kind_or_a_newer_format_are_refused(tmp_path):
    rundir.claim_dir(tmp_path / "demo", kind="demo")
    with pytest.raises(RunDirError, match="is a demo directory, not a train directory"):
        rundir.claim_dir(tmp_path / "demo", kind="train")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / rundir.MARKER_FILE).write_text('{"format": 99, "kind": "train"}')
    with pytest.raises(RunDirError, match="written by a newer adambnn-larq"):
        rundir.claim_dir(newer, kind="train")


def test_the_cached_small_teacher_depends_on_the_data(tmp_path):
    config = resolve_config({**TINY, "distillation": True, "teacher": "small_teacher"})
    info = dataset_info("fashion_mnist")
    elsewhere = resolve_config({**TINY, "distillation": True, "teacher": "small_teacher",
                                "data_dir": str(tmp_path)})  # fmt: skip
    assert _teacher_cache_key(config, info) != _teacher_cache_key(elsewhere, info)
    folder = {**TINY, "dataset": "image_folder", "data_dir": str(tmp_path), "distillation": True,
              "teacher": "small_teacher"}  # fmt: skip
    folder_config = resolve_config(folder)

    def folder_info(classes):
        return types.SimpleNamespace(input_shape=(224, 224, 3), num_classes=classes)

    assert _teacher_cache_key(folder_config, folder_info(5)) != (
        _teacher_cache_key(folder_config, folder_info(7))
    )


@pytest.mark.parametrize("command", ["demo", "study"])
def test_demo_and_study_refuse_a_foreign_directory(command, tmp_path):
    from adambnn_larq.demo import run_demo
    from adambnn_larq.study import run_study

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"someone else's model")
    (folder / "report").mkdir()
    before = _tree(folder)
    with pytest.raises(RunDirError, match="is not empty and was not made by adambnn"):
        if command == "demo":
            run_demo(folder, fast=True, samples=8, benchmark_runs=1, smoke=True)
        else:
            run_study("paper_study", folder, smoke=True, datasets=["fashion_mnist"])
    assert _tree(folder) == before


def test_atomic_writes_fsync_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(rundir.os, "fsync", recording_fsync)
    rundir.atomic_write_text(tmp_path / "summary.json", "{}")
    assert len(synced) == 2 and os.path.basename(synced[0]).startswith(".tmp-")
    assert synced[1] == str(tmp_path)


def test_a_run_waits_for_the_teacher_another_process_is_training(tmp_path, capsys):
    # Two runs under one parent (a study's --jobs 2) need the same teacher: the second waits
    # for the first instead of training it into the same folder at the same time.
    config = resolve_config({**TINY, "distillation": True, "teacher": "small_teacher",
                             "teacher_epochs": 1, "teacher_width": 4})  # fmt: skip
    info = dataset_info("fashion_mnist")
    cache_dir = (
        tmp_path / rundir.TEACHERS_DIR / (f"fashion_mnist-{_teacher_cache_key(config, info)}")
    )
    cache_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom adambnn_larq.rundir import dir_lock\n"
         "with dir_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(3)\n",
         str(cache_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        teacher, summary = training.prepare_teacher(
            config, info, tmp_path / "run", tf.distribute.get_strategy(), verbose=0
        )
        assert holder.poll() == 0  # it returned only after the holder had let go
    finally:
        holder.kill()
        holder.wait()
    assert f"waiting for process {holder.pid} on {socket.gethostname()}" in capsys.readouterr().out
    assert summary["teacher"] == str(cache_dir / rundir.FINAL_MODEL)
    assert (cache_dir / "result.json").exists() and teacher.output_shape == (None, 10)


def test_runs_share_a_teacher_exactly_when_their_teacher_identities_agree():
    base = resolve_config({**TINY, "distillation": True, "teacher": "small_teacher"})
    info = dataset_info("fashion_mnist")
    # A setting that changes the teacher (another split held out, another seed) changes both
    # the identity a study groups by and the cache key; a student setting changes neither.
    for change, same in [({"learning_rate": 0.5}, True), ({"schedule": "two-step"}, True),
                         ({"evaluate_test": False, "validation_size": 16}, False),
                         ({"seed": 1}, False), ({"teacher_epochs": 3}, False)]:  # fmt: skip
        other = resolve_config({**TINY, "distillation": True, "teacher": "small_teacher",
                                **change})  # fmt: skip
        assert (training.teacher_identity(other) == training.teacher_identity(base)) is same
        keys_agree = _teacher_cache_key(other, info) == _teacher_cache_key(base, info)
        assert keys_agree is same, change
