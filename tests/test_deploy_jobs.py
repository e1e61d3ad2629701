"""adambnn_larq.deploy.jobs and rundir.write_all_or_nothing: what ``adambnn convert``,
``verify`` and ``benchmark`` do, called without argparse. The timing and the conversion
themselves are replaced (they have their own tests): what is checked here is the job around
them, its defaults, its checks before the work and the files it writes."""

import json
from collections import Counter
from pathlib import Path

import pytest

from adambnn_larq.config import KERNELS
from adambnn_larq.deploy import benchmark, convert, flatbuffer, jobs, remote, tables
from adambnn_larq.errors import ConfigError, MissingFileError, OutputError
from adambnn_larq.rundir import write_all_or_nothing


def test_all_or_nothing_removes_what_it_wrote_when_a_later_file_fails(tmp_path):
    (tmp_path / "blocker").write_text("a file where a directory should be")
    first, second = tmp_path / "a.json", tmp_path / "blocker" / "b.md"
    with pytest.raises(OutputError, match=r"cannot write .*blocker/b\.md"):
        write_all_or_nothing({first: b"1", second: b"2"})
    assert not first.exists()
    assert write_all_or_nothing({first: b"1", tmp_path / "c": b"3"}) == [first, tmp_path / "c"]
    assert first.read_bytes() == b"1"


def _result(**changes):
    finding = convert.LayerFinding(name="conv", kind="binary_conv", signature=(3, 3, 8, 8, 1, 1))
    fields = dict(
        flatbuffer=b"TFL3" * 4,
        census=Counter({"LceBconv2d": 1, "CONV_2D": 1}),
        findings=[finding],
        missing_bconvs=[],
        extra_float_convs=0,
        warnings=["w"],
        seconds=1.234,
        route="graphdef",
        target="arm",
        io={"inputs": [], "outputs": []},
    )
    return convert.ConversionResult(**(fields | changes))


def test_conversion_result_to_json_is_the_report():
    report = _result().to_json(model="m.h5", output=Path("m.tflite"), weights="int8")
    assert report["model"] == "m.h5" and report["output"] == "m.tflite"
    assert report["size_bytes"] == 16 and report["seconds"] == 1.23
    assert report["binary_convs"] == 1 and report["lce_bconv2d"] == 1
    assert report["all_binary_convs_converted"] is True
    assert report["census"] == {"LceBconv2d": 1, "CONV_2D": 1}
    assert report["weights"] == "int8" and report["compressed_tensors"] == []
    json.dumps(report)  # JSON-ready
    missing = _result(missing_bconvs=["conv"]).to_json(model="m", output="o", weights="float32")
    assert missing["all_binary_convs_converted"] is False


def test_convert_writes_the_tflite_and_its_report(tmp_path, monkeypatch):
    seen = {}

    def fake_convert_file(model, output, **options):
        seen.update(options)
        Path(output).write_bytes(b"TFL3")
        return _result()

    monkeypatch.setattr(convert, "convert_file", fake_convert_file)
    output, report = tmp_path / "m.tflite", tmp_path / "m.json"
    jobs.convert_to_files("m.h5", output, report=report, weights="float16", route="graphdef")
    assert seen["weights"] == "float16" and seen["route"] == "graphdef"
    written = json.loads(report.read_text())
    assert written == _result().to_json(model="m.h5", output=output, weights="float16")
    with pytest.raises(OutputError, match="the same file"):
        jobs.convert_to_files("m.h5", output, report=output)


@pytest.fixture
def fake_timers(tmp_path, monkeypatch):
    """The host and binary benchmarks replaced by recorders; a model file that exists."""
    calls = {}

    def host(flatbuffer_, **options):
        calls["host"] = options
        return {"configurations": [], "timings": []}  # the keys benchmark_host returns

    def binary(model_path, binary_path, **options):
        calls["binary"] = options
        return {"runs": []}

    monkeypatch.setattr(benchmark, "benchmark_host", host)
    monkeypatch.setattr(remote, "benchmark_binary", binary)
    monkeypatch.setattr(flatbuffer, "io_details", lambda flatbuffer_: {})
    monkeypatch.setattr(tables, "host_markdown", lambda result, name: f"| host {name} |\n")
    monkeypatch.setattr(tables, "binary_markdown_rows", lambda result: "| binary |\n")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3")
    return calls, model


def test_host_benchmark_defaults_and_its_two_files(fake_timers):
    calls, model = fake_timers
    run = jobs.benchmark_files(jobs.BenchmarkRequest(model=model), say=lambda message: None)
    options = calls["host"]
    assert (options["warmup"], options["runs"]) == (3, 20)
    assert options["kernels"] == list(KERNELS) and options["rounds"] == 4
    json_path = model.with_suffix(".benchmark.json")
    assert run.written == [json_path, json_path.with_suffix(".md")]
    saved = json.loads(run.written[0].read_text())
    assert saved["markdown"] == run.table == "| host m.tflite |\n"
    assert saved["headlines"] == run.headlines == []  # nothing timed, nothing to lead with
    assert saved["model"] == str(model) and run.written[1].read_text() == run.table


def test_binary_benchmark_defaults(fake_timers, tmp_path):
    calls, model = fake_timers
    tool = tmp_path / "lce_benchmark_model"
    tool.write_text("")
    request = jobs.BenchmarkRequest(model=model, benchmark_binary=str(tool), runs=None)
    run = jobs.benchmark_files(request, say=lambda message: None)
    options = calls["binary"]
    assert (options["warmup_runs"], options["num_runs"]) == (5, 50)
    assert options["kernels"] == ["default"] and "host" not in calls
    assert run.table.endswith("| binary |\n")


def test_benchmark_checks_before_it_runs(fake_timers, tmp_path):
    calls, model = fake_timers
    with pytest.raises(MissingFileError, match="model file not found"):
        jobs.benchmark_files(jobs.BenchmarkRequest(model=tmp_path / "none.tflite"))
    with pytest.raises(ConfigError, match="--save-baseline needs --baseline-float"):
        jobs.benchmark_files(jobs.BenchmarkRequest(model=model, save_baseline="f.tflite"))
    with pytest.raises(OutputError, match="same file"):
        jobs.benchmark_files(jobs.BenchmarkRequest(model=model, output=model))
    assert calls == {}
