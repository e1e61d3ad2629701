"""Numbers are validated where they are parsed, and error messages say what is wrong."""

import pickle

import pytest

from adambnn_larq import cli


# Where a command would otherwise start its work, its output is a file's subdirectory: were
# the number not checked, the command would fail at once anyway instead of training.
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--samples", "-1", "--run-dir", "blocker/d"], "--samples: must be >= 1, got -1"),
        (["demo", "--runs", "0", "--run-dir", "blocker/d"], "argument --runs: must be >= 1, got 0"),
        (["study", "--jobs", "0", "--output", "blocker/s"], "argument --jobs: must be >= 1, got 0"),
        (
            ["train", "adambnn_mnist", "--cpu-devices", "-1", "--run-dir", "blocker/r"],
            "argument --cpu-devices: must be >= 1, got -1",
        ),
        (["summary", "--input-size", "0"], "argument --input-size: must be >= 1, got 0"),
        (["summary", "--width-multiplier", "nan"], "expected a finite number, got 'nan'"),
        (["summary", "--num-downsamplings", "-1"], "--num-downsamplings: must be >= 0"),
        (
            ["toy", "--learning-rate", "nan", "--output", "blocker/t"],
            "--learning-rate: expected a finite number",
        ),
        (["toy", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["verify", "m.h5", "m.tflite", "--samples", "0"], "--samples: must be >= 1"),
        (["verify", "m.h5", "m.tflite", "--atol", "-1"], "--atol: must be >= 0"),
        (["benchmark", "m.tflite", "--runs", "0"], "argument --runs: must be >= 1, got 0"),
        (["benchmark", "m.tflite", "--warmup", "-2"], "--warmup: must be >= 0"),
        (["import-pytorch", "c.pth", "--output", "m.h5", "--input-size", "0"], "must be >= 1"),
        (["verify", "m.h5", "m.tflite", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["verify", "m.h5", "m.tflite", "--seed", str(2**32)], "--seed: must be <= 4,294,967,295"),
        (
            ["verify", "m.h5", "m.tflite", "--min-agreement", "2"],
            "argument --min-agreement: must be <= 1, got 2",
        ),
        (["verify", "m.h5", "m.tflite", "--min-within", "1.5"], "--min-within: must be <= 1"),
        (["verify", "m.h5", "m.tflite", "--samples", "10000000"], "--samples: must be <= 100,000"),
        (["benchmark", "m.tflite", "--runs", "1000000000"], "--runs: must be <= 100,000"),
        (["benchmark", "m.tflite", "--num-threads", "1,5000"], "thread counts must be in 1..1024"),
        (["benchmark", "m.tflite", "--ssh-port", "70000"], "--ssh-port: must be <= 65,535"),
        (["demo", "--samples", "10000000", "--run-dir", "blocker/d"], "must be <= 100,000"),
        (["evaluate", "m.h5", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
        (["evaluate", "m.h5", "--batch-size", "100000"], "--batch-size: must be <= 65,536"),
        (["study", "--jobs", "100000", "--output", "blocker/s"], "--jobs: must be <= 256"),
        (
            ["convert", "m.h5", "-o", "m.tflite", "--default-int8-range", "3,-3"],
            "expected finite MIN < MAX, got '3,-3'",
        ),
        (
            ["convert", "m.h5", "-o", "m.tflite", "--default-int8-range", "nan,3"],
            "expected finite MIN < MAX",
        ),
    ],
)
def test_bad_numbers_are_usage_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file\n")
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_summary_input_size_is_used_not_replaced(capsys):
    assert cli.main(["summary", "--variant", "reactnet_small", "--input-size", "32"]) == 0
    assert "(-1, 32, 32, 1)" in capsys.readouterr().out


def test_train_lists_recipes_not_studies(capsys):
    assert cli.main(["train", "no_such_recipe"]) == 2
    err = capsys.readouterr().err
    assert "adambnn_fashion_mnist" in err and "paper_study" not in err
    assert cli.main(["train", "paper_study"]) == 2
    err = capsys.readouterr().err
    assert "paper_study is a study, not a training recipe" in err
    assert "`adambnn study paper_study`" in err


def test_missing_teacher_hint_names_the_real_flag(tmp_path, capsys):
    status = cli.main(["train", "adambnn_mnist", "teacher=t.h5", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and "teacher model t.h5 not found" in err
    assert "--arch resnet34" in err and "--resnet34" not in err


def test_protocol_4_pickle_is_refused_saying_why(tmp_path, capsys):
    pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "model.pth"
    path.write_bytes(pickle.dumps(Payload(), protocol=4))
    status = cli.main(["import-pytorch", str(path), "--output", str(tmp_path / "m.h5")])
    captured = capsys.readouterr()
    assert status == 2
    assert "this must never run" not in captured.out
    assert f"{path}: refused: the file is a pickle (pickle protocol 4)" in captured.err
    assert "weights-only loader does not allow" in captured.err
    assert "run any code" in captured.err
    assert "Unsupported operand" not in captured.err and "UserWarning" not in captured.err
    assert not (tmp_path / "m.h5").exists()


def test_a_bug_shows_its_traceback_and_exit_status_1(tmp_path, monkeypatch, capsys):
    # A ValueError the user did not cause (here: raised where the configuration is resolved)
    # is a bug, not a one-line "error:" about the input.
    def broken(*args, **kwargs):
        raise ValueError("boom inside the library")

    monkeypatch.setattr("adambnn_larq.config.resolve_config", broken)
    status = cli.main(["train", "adambnn_mnist", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert "adambnn train: internal error: ValueError: boom inside the library (a bug" in err
    assert "error: boom" not in err


def test_bad_input_is_still_one_line_with_status_2(tmp_path, capsys):
    status = cli.main(["summary", "--variant", "reactnet_small", "--input-size", "30"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "odd size" in err


@pytest.mark.parametrize("seed", ["-1", str(2**32 - 1), str(2**40)])
def test_out_of_range_seed_is_refused_before_any_file_is_written(seed, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "adambnn_fashion_mnist", "--smoke", f"seed={seed}", "--run-dir", str(run_dir)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"seed must be in [0, {2**32 - 2}]" in err and "step 2 uses seed + 1" in err
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_largest_seed_and_momentum_bounds():
    from adambnn_larq.config import ConfigError, resolve_config

    assert resolve_config({}, ["seed=4294967294"]).seed == 2**32 - 2
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\], got 1.5"):
        resolve_config({}, ["momentum=1.5"])
