"""Input is data, never code or options: a --remote that ssh would read as an option, a recipe
name shadowed by the current directory, numbers out of range, outputs onto inputs."""

import os

import pytest

from adambnn_larq import cli
from adambnn_larq.deploy.remote import Shell, parse_remote
from adambnn_larq.errors import RemoteSpecError


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """An `ssh` first on PATH that records its arguments instead of connecting."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    ssh = bin_dir / "ssh"
    ssh.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 255\n')
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


@pytest.mark.parametrize(
    "remote",
    ["--remote=-oProxyCommand=touch {marker}", "--remote=-oProxyCommand=touch {marker}@host"],
)
def test_remote_that_is_an_ssh_option_is_refused_and_runs_nothing(
    remote, fake_ssh, tmp_path, capsys
):
    marker = tmp_path / "x"
    model, binary = tmp_path / "model.tflite", tmp_path / "lce_benchmark_model"
    model.write_bytes(b"not run")
    binary.write_bytes(b"#!/bin/sh\n")
    argv = ["benchmark", str(model), remote.format(marker=marker)]
    argv += ["--benchmark-binary", str(binary)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not USER@HOST[:PORT]" in err, err
    assert not fake_ssh.exists() and not marker.exists()
    assert not (tmp_path / "model.benchmark.json").exists()


def test_remote_spec_forms():
    assert parse_remote("pi@raspberrypi.local") == ("pi@raspberrypi.local", None)
    assert parse_remote("pi@192.168.1.7:2222") == ("pi@192.168.1.7", 2222)
    assert parse_remote("board") == ("board", None)
    for bad in [
        "-oProxyCommand=x",
        "pi@-oProxyCommand=x",
        "pi@host:0",
        "pi@host:99999",
        "pi@host;rm -rf",
        "pi@ho st",
        "",
        "@host",
        "pi@host:",
    ]:
        with pytest.raises(RemoteSpecError):
            parse_remote(bad)
    with pytest.raises(RemoteSpecError, match="port 2222, --ssh-port 22"):
        Shell(remote="pi@host:2222", port=22)


def test_ssh_gets_the_destination_after_double_dash():
    argv = Shell(remote="pi@host:2222", ssh_options=["LogLevel=ERROR"])._argv("uname -m")
    assert argv[-3:] == ["--", "pi@host", "uname -m"]
    assert argv[argv.index("-p") + 1] == "2222"


@pytest.mark.parametrize("name", ["paper_study", "adambnn_fashion_mnist"])
def test_builtin_names_are_not_shadowed_by_the_working_directory(name, tmp_path, monkeypatch):
    from adambnn_larq.recipe_files import find_recipe, load_recipe

    marker = tmp_path / "ran"
    for folder in ("recipes", "studies"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\ndef get_config(smoke=False):\n    return {{}}\n"
        )
    monkeypatch.chdir(tmp_path)
    path = find_recipe(name)
    assert tmp_path not in path.resolve().parents
    assert load_recipe(name, smoke=True)  # the project's own, not the empty dict above
    assert not marker.exists()
    # The user's file runs when given by its path.
    assert load_recipe(f"recipes/{name}.py") == {} and marker.exists()


def test_a_name_only_in_the_working_directory_is_not_found(tmp_path, monkeypatch, capsys):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.py").write_text("def get_config(smoke=False):\n    return {}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "mine"]) == 2
    err = capsys.readouterr().err
    assert "no recipe 'mine'" in err and "to run your file recipes/mine.py, give its path" in err


def test_benchmark_output_onto_its_own_model_is_refused(tmp_path, capsys):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"the model")
    assert cli.main(["benchmark", str(model), "--output", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--output {model} is the same file as the input MODEL {model}" in err
    assert model.read_bytes() == b"the model"


def test_no_two_outputs_onto_one_path_nor_onto_a_linked_input(tmp_path, capsys):
    model = tmp_path / "m.h5"
    model.write_bytes(b"keras")
    report = str(tmp_path / "out.tflite")
    argv = ["convert", str(model), "--output", report, "--report", report]
    assert cli.main(argv) == 2
    assert "--report" in capsys.readouterr().err and not (tmp_path / "out.tflite").exists()
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"flatbuffer")
    os.link(tflite, tmp_path / "alias.json")  # another name of the same file
    argv = ["verify", str(model), str(tflite), "--report", str(tmp_path / "alias.json")]
    assert cli.main(argv) == 2
    assert "is the same file as the input TFLITE" in capsys.readouterr().err
    assert tflite.read_bytes() == b"flatbuffer"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
        (b'{"recipe": "\xff\xfe"}', "not UTF-8 text"),
        (b"[1, 2, 3]", "expected a JSON object, got a JSON list"),
        (b'{"steps": [', "not valid JSON"),
    ],
)
def test_damaged_run_files_are_one_line_errors_naming_the_file(content, problem, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_bytes(content)
    assert cli.main(["analyze", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"{run_dir / 'summary.json'}: {problem}" in err


def test_oversized_json_is_refused_before_parsing(tmp_path, monkeypatch):
    from adambnn_larq import rundir
    from adambnn_larq.errors import ReportError

    monkeypatch.setattr(rundir, "MAX_JSON_BYTES", 1000)
    path = tmp_path / "result.json"
    path.write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(ReportError, match="result.json: larger than"):
        rundir.read_json(path)


def test_a_damaged_result_json_is_a_one_line_error(tmp_path):
    from adambnn_larq import training
    from adambnn_larq.config import resolve_config
    from adambnn_larq.errors import ReportError

    stage = tmp_path / "step1"
    stage.mkdir()
    (stage / "result.json").write_bytes(b"\x00\xff not json")
    config = resolve_config({"dataset": "fashion_mnist"})

    def finished_stage():  # nothing but the result file is read
        return training.run_stage(stage, name="step1", build=None, make_trainer=None,
                                  optimizer_factory=None, epochs=1, config=config, info=None,
                                  strategy=None)  # fmt: skip

    with pytest.raises(ReportError, match=r"step1/result.json: not UTF-8 text"):
        finished_stage()
    (stage / "result.json").write_text('{"epochs": 1}')
    with pytest.raises(ReportError, match="field 'test_accuracy' is missing"):
        finished_stage()
