"""``lce_benchmark_model`` (TFLite's benchmark tool with the LCE ops), locally or on a board.

`benchmark_binary` runs it here or on a remote board over ssh (copying the model and the
binary), parses its ``Inference (avg)`` line and records the board, OS bitness, CPU frequency
and temperature before and after each run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adambnn_larq.config import KERNELS
from adambnn_larq.deploy.profile import parse_op_profile
from adambnn_larq.errors import BenchmarkError, RemoteSpecError

# Numbers in the tool's output may be printed in C++ stream style, e.g. "2.95034e+06".
_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_COUNT = re.compile(rf"count={_NUMBER}(?P<rest>.*)")
_FIELD = re.compile(rf"(\w+)={_NUMBER}")


def parse_benchmark_output(text: str) -> dict[str, float]:
    """Read the timings of a TFLite/LCE ``benchmark_model`` run.

    The result is the ``Inference (avg)`` of the summary line; the statistics of the last
    ``count=...`` line (the timed runs) are added when present.

    Arguments:
        text: the tool's combined stdout and stderr.

    Returns:
        ``inference_avg_ms``, ``init_ms``, ``first_inference_ms``, ``warmup_avg_ms`` and,
        when printed, ``count``, ``min_ms``, ``max_ms``, ``std_ms``, ``median_ms``.

    Raises:
        BenchmarkError: no summary line.
    """
    summaries = _SUMMARY.findall(text)
    if not summaries:
        tail = "\n".join(text.strip().splitlines()[-5:]) or "(no output)"
        raise BenchmarkError(
            "could not find 'Inference timings in us: ... Inference (avg): N' in the benchmark "
            f"output; last lines:\n{tail}"
        )
    init, first, warmup, average = (float(v) for v in summaries[-1])
    result = {
        "inference_avg_ms": average / 1e3,
        "init_ms": init / 1e3,
        "first_inference_ms": first / 1e3,
        "warmup_avg_ms": warmup / 1e3,
    }
    count_lines = [m for m in (_COUNT.search(line) for line in text.splitlines()) if m]
    if count_lines:
        last = count_lines[-1]
        result["count"] = int(float(last.group(1)))
        fields = dict(_FIELD.findall(last.group("rest")))
        for key in ("min", "max", "std", "median", "p5", "p95"):
            if key in fields:
                result[f"{key}_ms"] = float(fields[key]) / 1e3
    return result


# One line per fact, "key=value"; missing files print empty values rather than failing.
_SYSTEM_INFO_SCRIPT = r"""
printf 'board=%s\n' "$(tr -d '\000' < /proc/device-tree/model 2>/dev/null)"
printf 'machine=%s\n' "$(uname -m)"
printf 'userland_bits=%s\n' "$(getconf LONG_BIT 2>/dev/null)"
printf 'kernel=%s\n' "$(uname -r)"
printf 'os=%s\n' "$(. /etc/os-release 2>/dev/null && printf '%s' "$PRETTY_NAME")"
cpufreq=/sys/devices/system/cpu/cpu0/cpufreq
printf 'cpu_freq_khz=%s\n' "$(cat $cpufreq/scaling_cur_freq 2>/dev/null)"
printf 'cpu_max_freq_khz=%s\n' "$(cat $cpufreq/cpuinfo_max_freq 2>/dev/null)"
printf 'governor=%s\n' "$(cat $cpufreq/scaling_governor 2>/dev/null)"
printf 'temperature_millicelsius=%s\n' "$(cat /sys/class/thermal/thermal_zone0/temp 2>/dev/null)"
printf 'throttled=%s\n' "$(vcgencmd get_throttled 2>/dev/null)"
"""


def parse_system_info(text: str) -> dict[str, Any]:
    """Parse the output of the system-information script into typed values."""
    info: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key in ("cpu_freq_khz", "cpu_max_freq_khz", "userland_bits"):
            info[key] = int(value) if value.isdigit() else None
        elif key == "temperature_millicelsius":
            info["temperature_c"] = int(value) / 1000 if value.lstrip("-").isdigit() else None
        else:
            info[key] = value or None
    if "cpu_freq_khz" in info:
        khz = info.pop("cpu_freq_khz")
        info["cpu_freq_mhz"] = khz / 1000 if khz else None
    if "cpu_max_freq_khz" in info:
        khz = info.pop("cpu_max_freq_khz")
        info["cpu_max_freq_mhz"] = khz / 1000 if khz else None
    return info


# USER@HOST[:PORT]: a user name and a host name (or IPv4, or [IPv6]) that cannot start with "-",
# so that the destination can never be read by ssh as one of its options (-oProxyCommand=...
# runs a local command).
_REMOTE = re.compile(
    r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]{0,63})@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def parse_remote(spec: str) -> tuple[str, int | None]:
    """Split ``USER@HOST[:PORT]`` into ssh's destination ``USER@HOST`` and the port.

    Raises:
        RemoteSpecError: anything else, in particular a spec starting with ``-``.
    """
    match = _REMOTE.fullmatch(spec)
    port = int(match.group("port")) if match and match.group("port") else None
    if match is None or (port is not None and not 1 <= port <= 65535):
        raise RemoteSpecError(
            f"--remote {spec!r} is not USER@HOST[:PORT] (a user and host name of letters, "
            "digits, '.', '-', '_', not starting with '-'; a port 1-65535)"
        )
    return spec if port is None else spec.rsplit(":", 1)[0], port


@dataclasses.dataclass
class Shell:
    """Runs shell commands here, or on ``remote`` over ssh.

    Attributes:
        remote: ``USER@HOST[:PORT]`` or None for this machine (checked: `parse_remote`).
        port: ssh port.
        identity: ssh private key file.
        ssh_options: extra ``-o`` options (e.g. ``StrictHostKeyChecking=no``).
        timeout: seconds per command.
    """

    remote: str | None = None
    port: int | None = None
    identity: str | None = None
    ssh_options: Sequence[str] = ()
    timeout: float = 900.0

    def __post_init__(self) -> None:
        if self.remote is None:
            return
        self.remote, port = parse_remote(self.remote)
        if port is not None and self.port is not None and port != self.port:
            raise RemoteSpecError(f"--remote gives port {port}, --ssh-port {self.port}")
        self.port = port if port is not None else self.port

    @property
    def where(self) -> str:
        if self.remote is None:
            return "this machine"
        return f"{self.remote}" + (f" (port {self.port})" if self.port else "")

    def _argv(self, command: str) -> list[str]:
        if self.remote is None:
            return ["/bin/sh", "-c", command]
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity)]
        for option in self.ssh_options:
            argv += ["-o", option]
        # "--": whatever follows is the destination and the command, never an option.
        return [*argv, "--", self.remote, command]

    def run(
        self, command: str, *, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command``; return the completed process (output as text)."""
        try:
            completed = subprocess.run(
                self._argv(command),
                input=stdin,
                capture_output=True,
                timeout=self.timeout,
            )
        except FileNotFoundError as error:
            raise BenchmarkError(f"cannot run {error.filename}: not installed") from error
        except subprocess.TimeoutExpired as error:
            raise BenchmarkError(
                f"command timed out after {self.timeout:.0f} s on {self.where}: {command[:80]}"
            ) from error
        stdout = completed.stdout.decode(errors="replace")
        stderr = completed.stderr.decode(errors="replace")
        if self.remote is not None and completed.returncode == 255:
            # ssh's own failures (refused, unknown host, authentication) exit with 255.
            raise BenchmarkError(
                f"ssh to {self.where} failed: {_last_line(stderr) or 'exit status 255'}"
            )
        if check and completed.returncode != 0:
            raise BenchmarkError(
                f"command failed on {self.where} (exit {completed.returncode}): {command[:80]}"
                f"\n{_last_line(stderr) or _last_line(stdout)}"
            )
        return subprocess.CompletedProcess(completed.args, completed.returncode, stdout, stderr)

    def copy(self, source: Path, destination: str, *, executable: bool = False) -> None:
        """Copy a local file to ``destination`` on the target (through ssh's stdin)."""
        quoted = shlex.quote(destination)
        mode = f" && chmod 755 {quoted}" if executable else ""
        self.run(f"cat > {quoted}{mode}", stdin=source.read_bytes())


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def benchmark_binary(
    model_path: str | os.PathLike,
    binary: str | os.PathLike,
    *,
    shell: Shell | None = None,
    threads: Sequence[int] = (1,),
    kernels: Sequence[str] = ("default",),
    num_runs: int = 50,
    warmup_runs: int = 5,
    use_xnnpack: bool = False,
    progress: bool = True,
    profile: bool = False,
) -> dict[str, Any]:
    """Run ``lce_benchmark_model`` on ``model_path``, locally or on a remote board.

    Remote: a temporary directory is created on the board, the model and the binary are
    copied there over ssh, each configuration runs in turn, and the directory is removed.
    Local (``shell.remote`` None): the binary runs in place, e.g. on the Pi itself.

    Arguments:
        model_path: the ``.tflite`` file.
        binary: the ``lce_benchmark_model`` executable on this machine.
        shell: where to run (default: here).
        threads: ``--num_threads`` values.
        kernels: ``"default"`` and/or ``"indirect_bgemm"`` (``--use_indirect_bgemm``).
        num_runs / warmup_runs: passed to the tool.
        use_xnnpack: ``--use_xnnpack``.
        progress: print each result to stderr.
        profile: also ``--enable_op_profiling=true``; each run then carries its op profile
            (`parse_op_profile`, JSON) under ``profile``.

    Returns:
        A JSON-ready dict: ``system`` (board, OS, bitness), ``runs`` (one per configuration
        with the parsed timings and the CPU frequency and temperature before and after).

    Raises:
        BenchmarkError: missing files, connection failure, a failing binary, unreadable output.
    """
    shell = shell or Shell()
    model_path, binary = Path(model_path), Path(binary)
    _check_inputs(model_path, binary, shell, kernels)
    remote_dir = None
    if shell.remote is not None:
        remote_dir = shell.run("mktemp -d -t adambnn-bench.XXXXXX").stdout.strip()
        if not remote_dir.startswith("/"):
            raise BenchmarkError(f"could not create a temporary directory on {shell.where}")
    try:
        if remote_dir is not None:
            graph = f"{remote_dir}/{model_path.name}"
            executable = f"{remote_dir}/lce_benchmark_model"
            _say(f"copying {model_path.name} and {binary.name} to {shell.where}", progress)
            shell.copy(model_path, graph)
            shell.copy(binary, executable, executable=True)
        else:
            graph, executable = str(model_path.resolve()), str(binary.resolve())
        system = parse_system_info(shell.run(_SYSTEM_INFO_SCRIPT).stdout)
        if system.get("userland_bits") == 32:
            _say(
                "warning: 32-bit userland; LCE's optimized kernels and the prebuilt binary "
                "want a 64-bit OS",
                progress,
            )
        settings = {"num_runs": num_runs, "warmup_runs": warmup_runs}
        runs = []
        for thread_count in threads:
            for kernel in kernels:
                flags = [
                    f"--graph={graph}",
                    f"--num_threads={thread_count}",
                    f"--num_runs={num_runs}",
                    f"--warmup_runs={warmup_runs}",
                    f"--use_xnnpack={'true' if use_xnnpack else 'false'}",
                ]
                if kernel == "indirect_bgemm":
                    flags.append("--use_indirect_bgemm=true")
                if profile:
                    flags.append("--enable_op_profiling=true")
                command = " ".join(shlex.quote(part) for part in [executable, *flags])
                run = _run_once(shell, command, binary.name, profile=profile)
                runs.append(
                    {"threads": thread_count, "kernel": kernel, "xnnpack": use_xnnpack} | run
                )
                _say(
                    f"  {thread_count} thread(s), {kernel}: Inference (avg) "
                    f"{run['inference_avg_ms']:.2f} ms",
                    progress,
                )
    finally:
        if remote_dir is not None:
            shell.run(f"rm -rf {shlex.quote(remote_dir)}", check=False)
    return {
        "kind": "lce_benchmark_model",
        "model": str(model_path),
        "size_bytes": model_path.stat().st_size,
        "target": shell.remote or "local",
        "binary": str(binary),
        "settings": settings,
        "system": system,
        "runs": runs,
    }


def _check_inputs(model_path: Path, binary: Path, shell: Shell, kernels: Sequence[str]) -> None:
    """Fail before anything runs or is copied."""
    if not model_path.is_file():
        raise BenchmarkError(f"model file not found: {model_path}")
    if not binary.is_file():
        raise BenchmarkError(
            f"benchmark binary not found: {binary} (download lce_benchmark_model_aarch64 from "
            "the larq/compute-engine release that matches your converter)"
        )
    if shell.remote is None and not os.access(binary, os.X_OK):
        raise BenchmarkError(f"benchmark binary {binary} is not executable (chmod +x it)")
    for kernel in kernels:
        if kernel not in KERNELS:
            raise BenchmarkError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def _run_once(shell: Shell, command: str, name: str, *, profile: bool) -> dict[str, Any]:
    """One configuration: the tool's timings, the board's clock and temperature before and
    after, the command, and (``profile``) its op profile."""
    before = _thermal(shell)
    completed = shell.run(command, check=False)
    after = _thermal(shell)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise BenchmarkError(
            f"{name} failed on {shell.where} (exit {completed.returncode}):\n"
            + "\n".join(output.strip().splitlines()[-5:])
        )
    try:
        timings = parse_benchmark_output(output)
    except BenchmarkError as error:
        raise BenchmarkError(f"{name} on {shell.where}: {error}") from error
    run = {**timings, "before": before, "after": after, "command": command}
    if profile:
        try:
            run["profile"] = parse_op_profile(output).to_json()
        except ValueError as error:
            raise BenchmarkError(f"{name} on {shell.where}: {error}") from error
    return run


def _thermal(shell: Shell) -> dict[str, Any]:
    info = parse_system_info(shell.run(_SYSTEM_INFO_SCRIPT, check=False).stdout)
    keys = ("cpu_freq_mhz", "temperature_c", "throttled")
    return {key: info.get(key) for key in keys}


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
