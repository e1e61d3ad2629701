"""`adambnn benchmark`: host timing, the float baseline, lce_benchmark_model locally and over ssh.

The remote path runs for real: an OpenSSH server on 127.0.0.1 with temporary host and user
keys, and a stand-in ``lce_benchmark_model`` (a shell script) that prints the real tool's
output format with timings derived from its arguments, so the parsed numbers are predictable.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq import cli
from adambnn_larq import deploy as benchmark
from adambnn_larq import deploy as lce_tools
from adambnn_larq.deploy.tables import host_headlines
from adambnn_larq.models import reactnet_block

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

# The stand-in prints what TFLite 2.16's benchmark tool prints (with LCE's flags accepted).
# Its "latency" is 40000/threads us + (model size mod 1000) us + 500 us for indirect BGEMM.
STAND_IN = r"""#!/bin/bash
graph=""; threads=1; runs=50; indirect=false; profiling=false
for arg in "$@"; do
  case "$arg" in
    --enable_op_profiling=*) profiling="${arg#--enable_op_profiling=}" ;;
    --graph=*) graph="${arg#--graph=}" ;;
    --num_threads=*) threads="${arg#--num_threads=}" ;;
    --num_runs=*) runs="${arg#--num_runs=}" ;;
    --use_indirect_bgemm=*) indirect="${arg#--use_indirect_bgemm=}" ;;
  esac
done
echo "INFO: STARTING!"
echo "INFO: Log parameter values verbosely: [0]"
echo "INFO: Min num runs: [$runs]"
echo "INFO: Num threads: [$threads]"
echo "INFO: Graph: [$graph]"
if [ ! -f "$graph" ]; then
  echo "ERROR: Could not open '$graph'."
  echo "ERROR: Benchmarking failed."
  exit 1
fi
size=$(stat -c %s "$graph")
avg=$(( 40000 / threads + size % 1000 ))
if [ "$indirect" = "true" ]; then avg=$(( avg + 500 )); fi
echo "INFO: #threads used for CPU inference: [$threads]"
echo "INFO: Loaded model $graph"
echo "INFO: The input model file size (MB): 0.00712"
echo "INFO: Initialized session in 4.39ms."
limits="seconds but terminate if exceeding 150 seconds."
echo "INFO: Running benchmark for at least 1 iterations and at least 0.5 $limits"
echo "INFO: count=12 first=46012 curr=41234 min=41012 max=46012 avg=41876.5 std=1350" \
  "p5=41012 median=41500 p95=46012"
echo ""
echo "INFO: Running benchmark for at least $runs iterations and at least 1 $limits"
echo "INFO: count=$runs first=$avg curr=$avg min=$(( avg - 100 )) max=$(( avg + 900 ))" \
  "avg=$avg std=150 p5=$avg median=$(( avg - 50 )) p95=$(( avg + 800 ))"
echo ""
echo "INFO: Inference timings in us: Init: 4390, First inference: 46012," \
  "Warmup (avg): 41876.5, Inference (avg): $avg"
echo "INFO: Note: as the benchmark tool itself affects memory footprint, the following is" \
  "only APPROXIMATE to the actual memory footprint of the model at runtime. Take the" \
  "information at your discretion."
echo "INFO: Memory footprint delta from the start of the tool (MB): init=7.4 overall=21.3"
if [ "$profiling" = "true" ]; then
  # TFLite's profile summarizer layout: tab-separated, "[tensor]:node" names.
  header=$'\t[node type]\t[start]\t[first]\t[avg ms]\t[%]\t[cdf%]\t[mem KB]\t[times called]\t[Name]'
  echo "Profiling Info for Benchmark Initialization:"
  echo "============================== Run Order =============================="
  echo "$header"
  printf '\tAllocateTensors\t0.000\t9.000\t9.000\t100.000%%\t100.000%%\t0.000\t1\t%s\n' \
    AllocateTensors/0
  echo ""
  echo "Operator-wise Profiling Info for Regular Benchmark Runs:"
  echo "============================== Run Order =============================="
  echo "$header"
  printf '\tLceQuantize\t0.000\t0.200\t0.250\t2.273%%\t2.273%%\t0.000\t1\t[b/rsign1/add]:0\n'
  printf '\tLceBconv2d\t0.250\t9.800\t%s.000\t90.909%%\t93.182%%\t0.000\t1\t%s\n' \
    "$(( 40 / threads ))" "[b/bn1/FusedBatchNormV3]:1"
  printf '\tADD\t10.250\t0.700\t0.750\t6.818%%\t100.000%%\t0.000\t1\t[b/add1/add]:2\n'
  echo ""
  echo "============================== Summary by node type =============================="
fi
"""

GARBAGE = "#!/bin/bash\necho 'Segmentation fault? no: just not the benchmark tool'\n"
FAILING = "#!/bin/bash\necho 'ERROR: Failed to apply delegate.' >&2\nexit 3\n"


def _expected_avg_ms(model: Path, threads: int, indirect: bool = False) -> float:
    return (40000 // threads + model.stat().st_size % 1000 + (500 if indirect else 0)) / 1e3


def _script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def block_files(tmp_path_factory):
    """A ReActNet reduction block: Keras .h5 and its LCE .tflite."""
    tf.keras.utils.set_random_seed(7)
    directory = tmp_path_factory.mktemp("block")
    inputs = tf.keras.Input((8, 8, 32))
    model = tf.keras.Model(
        inputs, reactnet_block(inputs, 64, stride=2, binary_weights=True, name="block")
    )
    for layer in model.layers:
        for weight in layer.weights:
            if "kernel" in weight.name:
                weight.assign(tf.random.uniform(weight.shape, -1, 1))
    ab.save_model(model, directory / "block.h5")
    result = lce_tools.convert_model(model, route="graphdef")
    (directory / "block.tflite").write_bytes(result.flatbuffer)
    return directory / "block.h5", directory / "block.tflite"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """An OpenSSH server on 127.0.0.1 accepting a temporary key for the current user."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        pytest.skip("OpenSSH server/client not installed")
    if os.geteuid() != 0:
        pytest.skip("running sshd needs root (privilege separation directory)")
    directory = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)],
            check=True,
        )
    shutil.copy(directory / "user_key.pub", directory / "authorized_keys")
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError as error:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                message = server.stderr.read().decode()
                raise RuntimeError(f"sshd did not start: {message}") from error
            time.sleep(0.1)
    user = os.environ.get("USER") or "root"
    yield {"remote": f"{user}@127.0.0.1", "port": port, "key": directory / "user_key"}
    server.terminate()
    server.wait(timeout=10)


def _ssh_args(sshd):
    return [
        "--remote",
        sshd["remote"],
        "--ssh-port",
        str(sshd["port"]),
        "--ssh-identity",
        str(sshd["key"]),
        "--ssh-option",
        "StrictHostKeyChecking=no",
        "--ssh-option",
        "UserKnownHostsFile=/dev/null",
        "--ssh-option",
        "LogLevel=ERROR",
    ]


def _without_names(config):
    """A serialized quantizer without its auto-generated instance name."""
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    return config


def _leftover_bench_dirs():
    return set(Path("/tmp").glob("adambnn-bench.*"))


# ----------------------------------------------------------------------------- parsing


def test_parse_current_format_with_prefix_and_percentiles():
    text = (
        "INFO: count=12 first=46012 curr=41234 min=41012 max=46012 avg=41876.5 std=1350\n\n"
        "INFO: count=50 first=45110 curr=45080 min=44870 max=45990 avg=45200.1 std=200 "
        "p5=44900 median=45150 p95=45900\n\n"
        "INFO: Inference timings in us: Init: 3200, First inference: 47865, "
        "Warmup (avg): 45367.4, Inference (avg): 45200.1\n"
    )
    parsed = benchmark.parse_benchmark_output(text)
    assert parsed["inference_avg_ms"] == pytest.approx(45.2001)
    assert parsed["init_ms"] == pytest.approx(3.2)
    assert parsed["first_inference_ms"] == pytest.approx(47.865)
    assert parsed["warmup_avg_ms"] == pytest.approx(45.3674)
    # The statistics come from the last count= line (the timed runs), not the warm-up.
    assert parsed["count"] == 50
    assert parsed["median_ms"] == pytest.approx(45.15)
    assert parsed["min_ms"] == pytest.approx(44.87)


def test_parse_old_format_with_scientific_notation():
    text = (
        "count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 "
        "std=109798\n\nInference timings in us: Init: 17187, First inference: 3512391, "
        "Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06\n"
    )
    parsed = benchmark.parse_benchmark_output(text)
    assert parsed["inference_avg_ms"] == pytest.approx(2950.34)
    assert parsed["warmup_avg_ms"] == pytest.approx(3512.39)
    assert "median_ms" not in parsed


def test_parse_refuses_output_without_summary():
    with pytest.raises(benchmark.BenchmarkError, match="Inference \\(avg\\)"):
        benchmark.parse_benchmark_output("count=3 avg=12\nsomething else\n")


def test_parse_system_info():
    info = benchmark.parse_system_info(
        "board=Raspberry Pi 4 Model B Rev 1.4\nmachine=aarch64\nuserland_bits=64\n"
        "os=Debian GNU/Linux 12 (bookworm)\ncpu_freq_khz=1800000\ncpu_max_freq_khz=1800000\n"
        "governor=ondemand\ntemperature_millicelsius=48686\nthrottled=throttled=0x0\n"
    )
    assert info["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["userland_bits"] == 64
    assert info["cpu_freq_mhz"] == 1800.0
    assert info["temperature_c"] == pytest.approx(48.686)
    assert benchmark.parse_system_info("board=\ncpu_freq_khz=\n") == {
        "board": None,
        "cpu_freq_mhz": None,
    }


# ----------------------------------------------------------------------------- host


def test_time_interpreter_statistics(block_files):
    flatbuffer = block_files[1].read_bytes()
    timing = benchmark.time_interpreter(flatbuffer, kernel="indirect_bgemm", warmup=1, runs=7)
    assert timing.runs == 7 and timing.kernel == "indirect_bgemm"
    assert 0 < timing.min_ms <= timing.median_ms <= timing.p90_ms <= timing.max_ms
    with pytest.raises(ValueError, match="kernel"):
        benchmark.time_interpreter(flatbuffer, kernel="fast")


def test_float_baseline_is_the_float_architecture_with_the_same_weights():
    binary = ab.ReActNetSmall(width_multiplier=0.125)
    baseline = benchmark.float_baseline(binary)
    reference = ab.ReActNetSmall(
        width_multiplier=0.125, binary_weights=False, binary_activations=False
    )
    assert [type(layer) for layer in baseline.layers] == [type(layer) for layer in reference.layers]
    for mine, theirs in zip(baseline.layers, reference.layers):
        mine_config, their_config = mine.get_config(), theirs.get_config()
        for key in ("input_quantizer", "kernel_quantizer"):
            assert _without_names(mine_config.get(key)) == _without_names(their_config.get(key)), (
                mine.name,
                key,
            )
    for mine, original in zip(baseline.weights, binary.weights):
        np.testing.assert_array_equal(mine.numpy(), original.numpy())
    # Same variables means the reference float model computes the same with copied weights.
    reference.set_weights(binary.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(baseline(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-5)


def test_float_tflite_of_block_matches_keras(block_files):
    model = ab.load_model(block_files[0])
    baseline = benchmark.float_baseline(model)
    flatbuffer = benchmark.convert_float_tflite(baseline)
    census = lce_tools.op_census(flatbuffer)
    assert census["CONV_2D"] == 3
    assert not [name for name in census if name.startswith("Lce")]
    x = np.random.default_rng(1).uniform(-1, 1, (1, 8, 8, 32)).astype(np.float32)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, baseline(x).numpy(), rtol=1e-4, atol=1e-4)


def _timing(name, kernel, threads, median):
    return {"name": name, "kernel": kernel, "threads": threads, "median_ms": median}


@pytest.mark.parametrize(
    "default_ms, indirect_ms, float_ms, expected",
    [
        (
            3.56,
            0.83,
            1.30,
            "host latency: 0.83 ms (LCE indirect_bgemm kernel, 1 thread, median), 1.57x faster "
            "than float (1.30 ms); default kernel 3.56 ms",
        ),
        (
            0.5,
            0.9,
            1.0,
            "host latency: 0.50 ms (LCE default kernel, 1 thread, median), 2.00x faster than "
            "float (1.00 ms); indirect_bgemm kernel 0.90 ms",
        ),
        (
            4.0,
            2.0,
            1.0,
            "host latency: 2.00 ms (LCE indirect_bgemm kernel, 1 thread, median), 2.00x slower "
            "than float (1.00 ms); default kernel 4.00 ms",
        ),
        (
            4.0,
            2.0,
            None,
            "host latency: 2.00 ms (LCE indirect_bgemm kernel, 1 thread, median); default "
            "kernel 4.00 ms",
        ),
    ],
)
def test_the_fastest_kernel_leads_the_summary(default_ms, indirect_ms, float_ms, expected):
    timings = [
        _timing("lce", "default", 1, default_ms),
        _timing("lce", "indirect_bgemm", 1, indirect_ms),
    ]
    if float_ms is not None:
        timings.append(_timing("float", "float", 1, float_ms))
    # A second thread count gets its own line, led by its own fastest kernel.
    timings += [_timing("lce", "default", 2, 0.4), _timing("lce", "indirect_bgemm", 2, 0.7)]
    lines = host_headlines({"timings": timings})
    assert lines[0] == expected
    assert lines[1] == (
        "host latency: 0.40 ms (LCE default kernel, 2 threads, median); indirect_bgemm kernel "
        "0.70 ms"
    )


def test_host_benchmark_command_with_float_baseline(block_files, tmp_path, capsys):
    h5, tflite = block_files
    output = tmp_path / "host.json"
    status = cli.main(
        [
            "benchmark",
            str(tflite),
            "--runs",
            "5",
            "--warmup",
            "1",
            "--num-threads",
            "1,2",
            "--baseline-float",
            str(h5),
            "--output",
            str(output),
        ]
    )
    assert status == 0
    result = json.loads(output.read_text())
    configurations = {(t["name"], t["kernel"], t["threads"]) for t in result["timings"]}
    assert configurations == {
        (name, kernel, threads)
        for threads in (1, 2)
        for name, kernel in (("lce", "default"), ("lce", "indirect_bgemm"), ("float", "float"))
    }
    medians = {(t["name"], t["kernel"], t["threads"]): t["median_ms"] for t in result["timings"]}
    for ratio in result["ratios"]:
        expected = (
            medians[("float", "float", ratio["threads"])]
            / medians[("lce", ratio["kernel"], ratio["threads"])]
        )
        assert ratio["float_over_lce"] == pytest.approx(expected)
    assert result["size_bytes"] == tflite.stat().st_size
    assert result["float_size_bytes"] > 0
    markdown = output.with_suffix(".md").read_text()
    assert markdown.count("\n") == 2 + 6 and "median ms" in markdown
    printed = capsys.readouterr().out.splitlines()
    for threads, line in zip((1, 2), printed):
        lce = [t for t in result["timings"] if t["name"] == "lce" and t["threads"] == threads]
        fastest = min(lce, key=lambda t: t["median_ms"])
        assert line.startswith(
            f"host latency: {fastest['median_ms']:.2f} ms (LCE {fastest['kernel']} kernel, "
            f"{threads} thread"
        ), line
        assert "than float (" in line
    assert result["headlines"] == printed[:2]


# ----------------------------------------------------------------------------- lce_benchmark_model


def test_remote_benchmark_over_ssh(block_files, sshd, tmp_path):
    tflite = block_files[1]
    stand_in = _script(tmp_path, "lce_benchmark_model", STAND_IN)
    output = tmp_path / "pi.json"
    before = _leftover_bench_dirs()
    status = cli.main(
        [
            "benchmark",
            str(tflite),
            *_ssh_args(sshd),
            "--benchmark-binary",
            str(stand_in),
            "--num-threads",
            "1,4",
            "--kernels",
            "default,indirect_bgemm",
            "--runs",
            "30",
            "--output",
            str(output),
        ]
    )
    assert status == 0
    result = json.loads(output.read_text())
    assert result["target"] == sshd["remote"]
    runs = {(r["threads"], r["kernel"]): r for r in result["runs"]}
    assert set(runs) == {(t, k) for t in (1, 4) for k in ("default", "indirect_bgemm")}
    for (threads, kernel), run in runs.items():
        # The stand-in derives its numbers from the copied file and the flags it received.
        assert run["inference_avg_ms"] == pytest.approx(
            _expected_avg_ms(tflite, threads, kernel == "indirect_bgemm")
        )
        assert run["count"] == 30
        assert run["median_ms"] == pytest.approx(run["inference_avg_ms"] - 0.05)
        assert (
            set(run["before"])
            == set(run["after"])
            == {
                "cpu_freq_mhz",
                "temperature_c",
                "throttled",
            }
        )
    system = result["system"]
    assert system["machine"] == os.uname().machine
    assert system["userland_bits"] == int(
        subprocess.run(["getconf", "LONG_BIT"], capture_output=True, text=True).stdout
    )
    rows = output.with_suffix(".md").read_text().strip().splitlines()
    assert len(rows) == 2 + 4 and rows[0].startswith("| model | board")
    assert f"| {tflite.name} |" in rows[2] and "| 1 | default |" in rows[2]
    # The temporary directory on the "board" is removed afterwards.
    assert _leftover_bench_dirs() == before


def test_local_binary_benchmark(block_files, tmp_path):
    """Without --remote the binary runs here (as on the Pi itself)."""
    tflite = block_files[1]
    stand_in = _script(tmp_path, "lce_benchmark_model", STAND_IN)
    output = tmp_path / "local.json"
    status = cli.main(
        [
            "benchmark",
            str(tflite),
            "--benchmark-binary",
            str(stand_in),
            "--num-threads",
            "2",
            "--output",
            str(output),
        ]
    )
    assert status == 0
    result = json.loads(output.read_text())
    assert result["target"] == "local"
    assert [(r["threads"], r["kernel"]) for r in result["runs"]] == [(2, "default")]
    assert result["runs"][0]["inference_avg_ms"] == pytest.approx(_expected_avg_ms(tflite, 2))
    assert result["runs"][0]["command"].startswith(str(stand_in.resolve()))
    assert f"--graph={tflite.resolve()}" in result["runs"][0]["command"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("refused", "Connection refused"),
        ("missing_binary", "benchmark binary not found"),
        ("unparsable", "could not find 'Inference timings"),
        ("failing", "ERROR: Failed to apply delegate"),
    ],
)
def test_benchmark_binary_errors(case, message, block_files, sshd, tmp_path, capsys):
    ssh = _ssh_args(sshd)
    if case == "refused":
        ssh[ssh.index("--ssh-port") + 1] = str(_free_port())
    binary = tmp_path / "does-not-exist"
    if case != "missing_binary":
        script = {"refused": STAND_IN, "unparsable": GARBAGE, "failing": FAILING}[case]
        binary = _script(tmp_path, "bench", script)
    output = tmp_path / "result.json"
    before = _leftover_bench_dirs()
    status = cli.main(
        [
            "benchmark",
            str(block_files[1]),
            *ssh,
            "--benchmark-binary",
            str(binary),
            "--output",
            str(output),
        ]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not output.exists() and not output.with_suffix(".md").exists()
    assert _leftover_bench_dirs() == before


def test_benchmark_refuses_files_that_are_not_tflite(tmp_path, capsys):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"not a flatbuffer at all")
    assert cli.main(["benchmark", str(bogus)]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err


def test_lce_interpreter_is_what_the_host_benchmark_times(block_files):
    # The timed call is the interpreter's own predict: it must produce the model's output.
    flatbuffer = block_files[1].read_bytes()
    interpreter = lce.testing.Interpreter(flatbuffer)
    x = np.random.default_rng(2).uniform(-1, 1, (1, 8, 8, 32)).astype(np.float32)
    (direct,) = interpreter.interpreter.predict([x])
    np.testing.assert_array_equal(direct, interpreter.predict(x))


def test_remote_op_profile_over_ssh(block_files, sshd, tmp_path):
    """--profile: the tool runs with --enable_op_profiling=true; its table becomes the profile."""
    tflite = block_files[1]
    stand_in = _script(tmp_path, "lce_benchmark_model", STAND_IN)
    output = tmp_path / "profile.json"
    arguments = ["benchmark", str(tflite), *_ssh_args(sshd), "--benchmark-binary"]
    arguments += [str(stand_in), "--num-threads", "1,4", "--profile", "--output", str(output)]
    assert cli.main(arguments) == 0
    result = json.loads(output.read_text())
    for run in result["runs"]:
        assert "--enable_op_profiling=true" in run["command"]
        profile = run["profile"]
        assert profile["source"] == "lce_benchmark_model"
        bconv = 40 / run["threads"]  # the stand-in's LceBconv2d time
        by_type = {row["op"]: row for row in profile["by_type"]}
        assert by_type["LceBconv2d"]["ms"] == pytest.approx(bconv)
        assert by_type["LceBconv2d"]["share"] == pytest.approx(bconv / (bconv + 1.0))
        assert [op["name"] for op in profile["ops"]] == [
            "b/rsign1/add",
            "b/bn1/FusedBatchNormV3",
            "b/add1/add",
        ]
    assert "| LceBconv2d | 1 |" in output.with_suffix(".md").read_text()


def test_host_op_profile(block_files, tmp_path, capsys):
    tflite = block_files[1]
    output = tmp_path / "host.json"
    arguments = ["benchmark", str(tflite), "--kernels", "indirect_bgemm", "--runs", "2"]
    arguments += ["--warmup", "1", "--profile", "--output", str(output)]
    assert cli.main(arguments) == 0
    profile = json.loads(output.read_text())["profile"]
    census = lce_tools.op_census(tflite.read_bytes())
    assert profile["source"] == "host replay"
    assert profile["settings"]["kernel"] == "indirect_bgemm"
    assert sorted(op["op"] for op in profile["ops"]) == sorted(census.elements())
    assert "op profile (host replay)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kernel", "flags"),
    [
        ("default", (False, False)),
        ("indirect_bgemm", (False, True)),
        ("reference", (True, False)),
    ],
)
def test_one_interpreter_factory_maps_a_kernel_name_to_lce_flags(kernel, flags, monkeypatch):
    from adambnn_larq.deploy import interpreter

    made = []
    monkeypatch.setattr(interpreter, "Interpreter", lambda *args, **kwargs: made.append(kwargs))
    interpreter.lce_interpreter(b"model", kernel=kernel, threads=3)
    (kwargs,) = made
    assert (kwargs["use_reference_bconv"], kwargs["use_indirect_bgemm"]) == flags
    assert kwargs["num_threads"] == 3 and kwargs["use_xnnpack"] is False
    with pytest.raises(ValueError, match="kernel must be one of"):
        interpreter.lce_interpreter(b"model", kernel="fast")
