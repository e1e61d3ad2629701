"""A command prints its own output; TensorFlow's, absl's and TFLite's log lines only with
``adambnn --verbose``. Checked on a real command that triggers all of them: the host
benchmark with a float baseline (TensorFlow's start-up, the TFLite converter, XNNPACK)."""

import os
import re
import subprocess
import sys

import larq as lq
import pytest
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq import deploy as lce_tools

# TensorFlow's C++ log format, absl's C++ and Python formats, TFLite's own prefix.
NOISE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} |WARNING: All log messages"
    r"|WARNING:absl:|INFO: Created TensorFlow Lite|.*Unable to register cu(FFT|DNN|BLAS))",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("noise")
    inputs = tf.keras.Input((8, 8, 16))
    x = lq.layers.QuantConv2D(
        16, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )(inputs)
    model = tf.keras.Model(inputs, x, name="tiny")
    ab.save_model(model, directory / "tiny.h5")
    tflite = directory / "tiny.tflite"
    tflite.write_bytes(lce_tools.convert_model(model, route="graphdef").flatbuffer)
    return directory


def _benchmark(directory, *global_options):
    command = [
        sys.executable,
        "-m",
        "adambnn_larq",
        *global_options,
        "benchmark",
        str(directory / "tiny.tflite"),
        "--baseline-float",
        str(directory / "tiny.h5"),
        "--runs",
        "2",
        "--warmup",
        "1",
        "--output",
        str(directory / "b.json"),
    ]
    # A user's usual setting: with it TensorFlow still prints its ERROR lines at import.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_commands_print_only_their_own_lines(tiny_files):
    out, err = _benchmark(tiny_files)
    assert NOISE.findall(out + err) == [], err
    # ... and their own lines are all there.
    assert "converting the float baseline with tf.lite.TFLiteConverter" in err
    assert "benchmarking" in err and "float  float" in err
    assert "median ms" in out and "wrote" in out


def test_verbose_shows_tensorflows_own_lines(tiny_files):
    out, err = _benchmark(tiny_files, "--verbose")
    assert "INFO: Created TensorFlow Lite XNNPACK delegate" in err
    assert "WARNING:absl:" in err
    assert "median ms" in out
