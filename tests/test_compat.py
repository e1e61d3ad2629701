"""Importing the package chooses oneDNN's CPU kernels unless the user chose, and says so."""

import os
import subprocess
import sys

import pytest

from adambnn_larq._compat import ONEDNN_VARIABLE, prefer_onednn
from adambnn_larq.hostinfo import machine_summary, onednn_enabled

# What a user's script does: import the package, then TensorFlow, and ask TensorFlow itself.
_PROBE = (
    "import adambnn_larq, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port\n"
    "from adambnn_larq.hostinfo import onednn_enabled\n"
    "print(_pywrap_util_port.IsMklEnabled(), onednn_enabled())\n"
)


def _probe(setting: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_VARIABLE}
    if setting is not None:
        env[ONEDNN_VARIABLE] = setting
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "True True"), ("1", "True True"), ("0", "False False")]
)
def test_import_prefers_onednn_but_the_user_decides(setting, expected):
    assert _probe(setting) == expected


def test_too_late_once_tensorflow_is_imported(monkeypatch):
    # TensorFlow is imported in this process: setting the variable now would only mislead.
    monkeypatch.delenv(ONEDNN_VARIABLE, raising=False)
    prefer_onednn()
    assert ONEDNN_VARIABLE not in os.environ


def test_result_files_record_the_kernels():
    summary = machine_summary()
    assert summary["onednn"] is onednn_enabled()
    assert isinstance(summary["onednn"], bool)
