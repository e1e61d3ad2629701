import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "adambnn_larq", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands():
    result = _run("--help")
    assert result.returncode == 0
    assert "summary" in result.stdout


def test_summary_of_small_variant():
    result = _run("summary", "--variant", "reactnet_small", "--step", "1")
    assert result.returncode == 0, result.stderr
    assert "reactnet_small_step1" in result.stdout
    assert "Number of MACs" in result.stdout


def test_summary_reports_bad_configuration():
    result = _run("summary", "--variant", "reactnet_small", "--num-downsamplings", "3")
    assert result.returncode == 2
    assert "odd size 7" in result.stderr
    assert "Traceback" not in result.stderr
