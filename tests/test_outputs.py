"""Every writing command checks its outputs before its work: one line, exit 2, nothing left.

The unwritable location is "a file where a directory should be" (as root, permissions do not
stop writes). The inputs are fakes that the work itself would reject (e.g. a `.tflite` that is
not a flatbuffer): the output error showing instead proves the check comes first.
"""

from pathlib import Path

import pytest

from adambnn_larq import cli


def _tree(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): "dir" if p.is_dir() else p.read_bytes().hex()
        for p in sorted(directory.rglob("*"))
    }


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a directory should be\n")
    for name in ("fake.h5", "fake.tflite", "fake.pth"):
        (tmp_path / name).write_text("not what the name says\n")
    (tmp_path / "run").mkdir()
    return tmp_path


COMMANDS = {
    "train": ["train", "adambnn_fashion_mnist", "--smoke", "--run-dir", "blocker/run"],
    "import-pytorch": ["import-pytorch", "fake.pth", "--output", "blocker/model.h5"],
    "benchmark": ["benchmark", "fake.tflite", "--output", "blocker/bench.json"],
    "benchmark-save-baseline": [
        "benchmark",
        "fake.tflite",
        "--output",
        "bench.json",
        "--baseline-float",
        "fake.h5",
        "--save-baseline",
        "blocker/float.tflite",
    ],
    "convert-output": ["convert", "fake.h5", "--output", "blocker/model.tflite"],
    "convert-report": ["convert", "fake.h5", "--output", "model.tflite", "--report", "blocker/r"],
    "verify-report": ["verify", "fake.h5", "fake.tflite", "--report", "blocker/r.json"],
    "analyze": ["analyze", "run", "--output", "blocker/report"],
    "toy": ["toy", "--output", "blocker/toy"],
    "demo": ["demo", "--smoke", "--run-dir", "blocker/demo"],
    "study": ["study", "--smoke", "--output", "blocker/study"],
}


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_unwritable_output_fails_first_in_one_line(case, workspace, capsys):
    before = _tree(workspace)
    status = cli.main(COMMANDS[case])
    captured = capsys.readouterr()
    command = COMMANDS[case][0]
    assert status == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"adambnn {command}: error: cannot write ")
    assert "blocker is a file, not a directory" in lines[0]
    assert _tree(workspace) == before  # nothing written, no probe, no directory


def test_analyze_refuses_a_file_as_run_directory(workspace, capsys):
    assert cli.main(["analyze", "blocker"]) == 2
    err = capsys.readouterr().err
    assert "blocker is a file, not a run directory" in err and "not found" not in err


def test_checks_create_nothing_and_name_the_reason(tmp_path):
    from adambnn_larq.errors import OutputError
    from adambnn_larq.rundir import check_writable_dir, check_writable_file

    target = tmp_path / "new" / "deeper" / "out.json"
    assert check_writable_file(target) == target
    assert check_writable_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="it is a file, not a directory"):
        check_writable_dir(tmp_path / "file", what="--run-dir")
    with pytest.raises(OutputError, match="it is a directory"):
        check_writable_file(tmp_path)
    with pytest.raises(OutputError, match=r"must end in \.h5 or \.keras"):
        check_writable_file(tmp_path / "x.bin", suffixes=(".h5", ".keras"))
    with pytest.raises(OutputError, match="file is a file, not a directory"):
        check_writable_file(tmp_path / "file" / "a" / "b.json", what="--report")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_convert_report_failing_late_leaves_no_tflite(tmp_path, monkeypatch, capsys):
    """If the report cannot be written after all (the disk changed under the conversion),
    the .tflite is removed too: the command asked for both."""
    from adambnn_larq.deploy import convert as lce

    class Result:
        flatbuffer = b"TFL3"
        target = route = "arm"
        size_bytes, census, binary_convs, missing_bconvs, warnings, io = 4, {}, [], [], [], {}
        all_binary_convs_converted, seconds = True, 0.0
        folded, compression = False, None

        def summary(self):
            return "summary"

    def fake_convert_file(model, output, **options):
        Path(output).write_bytes(Result.flatbuffer)
        (tmp_path / "reports").write_text("appeared during the conversion")
        return Result()

    monkeypatch.setattr(lce, "convert_file", fake_convert_file)
    output, report = tmp_path / "model.tflite", tmp_path / "reports" / "r.json"
    status = cli.main(["convert", "m.h5", "--output", str(output), "--report", str(report)])
    err = capsys.readouterr().err
    assert status == 2 and "cannot write --report" in err and "Traceback" not in err
    assert not output.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
