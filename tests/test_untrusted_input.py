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
    for bad in ["-oProxyCommand=x", "pi@-oProxyCommand=x", "pi@host:0", "pi@host:99999",
                "pi@host;rm -rf", "pi@ho st", "", "@host", "pi@host:"]:  # fmt: skip
        with pytest.raises(RemoteSpecError):
            parse_remote(bad)
    with pytest.raises(RemoteSpecError, match="port 2222, --ssh-port 22"):
        Shell(remote="pi@host:2222", port=22)


def test_ssh_gets_the_destination_after_double_dash():
    argv = Shell(remote="pi@host:2222", ssh_options=["LogLevel=ERROR"])._argv("uname -m")
    assert argv[-3:] == ["--", "pi@host", "uname -m"]
    assert argv[argv.index("-p") + 1] == "2222"
