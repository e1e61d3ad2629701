"""scripts/install.sh: it refuses Pythons TensorFlow 2.16 / LCE 0.16 have no wheels for, with a
message that says what it found and what to do (before creating or installing anything)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install(tmp_path, python: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "ADAMBNN_VENV": str(tmp_path / "venv")}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_unsupported_python_is_refused_with_a_clear_message(tmp_path):
    fake = tmp_path / "python3.13"
    fake.write_text('#!/bin/sh\necho 3.13\n')
    fake.chmod(0o755)
    done = _install(tmp_path, str(fake))
    assert done.returncode == 2, done.stderr
    assert f"PYTHON={fake} is Python 3.13; adambnn-larq needs 3.10, 3.11 or 3.12" in done.stderr
    assert not (tmp_path / "venv").exists()
    missing = _install(tmp_path, str(tmp_path / "no-such-python"))
    assert missing.returncode == 2 and "does not run" in missing.stderr
