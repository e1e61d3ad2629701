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
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_unsupported_python_is_refused_with_a_clear_message(tmp_path):
    fake = tmp_path / "python3.13"
    fake.write_text("#!/bin/sh\necho 3.13\n")
    fake.chmod(0o755)
    done = _install(tmp_path, str(fake))
    assert done.returncode == 2, done.stderr
    assert f"PYTHON={fake} is Python 3.13; adambnn-larq needs 3.10, 3.11 or 3.12" in done.stderr
    assert not (tmp_path / "venv").exists()
    missing = _install(tmp_path, str(tmp_path / "no-such-python"))
    assert missing.returncode == 2 and "does not run" in missing.stderr


def _fake(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _install_with_fakes(tmp_path, *options: str) -> tuple[subprocess.CompletedProcess, str]:
    """install.sh with apt-get, dpkg(-query), sudo, systemctl and Python replaced by fakes:
    apt-get records what it is asked for, dpkg says nothing is installed, Python answers 3.11 to
    everything (so pip installs nothing). Returns the run and apt-get's log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    _fake(bin_dir / "apt-get", f'echo "apt-get $*" >> {log}\n')
    _fake(bin_dir / "dpkg", "exit 1\n")  # nothing installed yet
    _fake(bin_dir / "dpkg-query", "exit 1\n")
    _fake(bin_dir / "sudo", 'exec "$@"\n')
    _fake(bin_dir / "systemctl", f'echo "systemctl $*" >> {log}\n')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    _fake(venv / "bin" / "python", "echo 3.11\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": str(venv / "bin" / "python"),
        "ADAMBNN_VENV": str(venv),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return done, log.read_text() if log.exists() else ""


def test_the_main_commands_set_up_asks_apt_for_no_server(tmp_path):
    done, apt = _install_with_fakes(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "apt-get install -y -qq dataset-fashion-mnist" in apt  # the fakes were used
    assert "openssh-server" not in apt and "server" not in apt, apt
    assert "systemctl" not in apt
    # demo.sh (the README's main command) calls install.sh without options.
    assert "bash scripts/install.sh\n" in (ROOT / "scripts" / "demo.sh").read_text()


def test_unknown_install_option_is_refused(tmp_path):
    done, apt = _install_with_fakes(tmp_path, "--with-servers")
    assert done.returncode == 2 and "unknown option --with-servers" in done.stderr
    assert apt == ""


def test_the_test_set_up_asks_for_the_ssh_binaries():
    # Only scripts/test.sh asks for them (running it would write /usr/sbin/policy-rc.d here).
    assert "scripts/install.sh --with-test-tools" in (ROOT / "scripts" / "test.sh").read_text()
