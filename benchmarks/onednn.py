"""oneDNN's CPU kernels against TensorFlow's default ones, for the demo's training work.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, on its first import, so the two settings
cannot share a process: each round starts one child process per setting, alternately
(off, on, off, on, ...), so that a change in the machine's load hits both alike. Every child
times, on random inputs of the demo recipe's shapes (throughput does not depend on the
values), after one untimed step:

- ``step1`` / ``step2``: one training step of the demo recipe's student
  (`benchmarks/train_throughput.py`'s ``fashion_mnist``: width 0.25, 32x32, three reductions,
  from cached teacher logits) at batch 128;
- ``teacher``: one training step of the recipe's teacher (`SmallTeacher`, width 32,
  32x32, Adam, cross-entropy) at batch 128;
- ``teacher_logits``: the teacher's forward pass over 2,048 images at batch 256, the work of
  caching its logits.

Every step goes through Keras's compiled step function on one persistent iterator
(`train_throughput.persistent_steps`), not ``train_on_batch``/``predict``: those build a new
`tf.data` iterator each call and wait for a helper thread of it that sleeps with doubling
timeouts, which made the medians of 2026-12-02 (docs/results/onednn/onednn.json) bimodal.

Usage::

    python benchmarks/onednn.py                        # ~6 min on 2 cores
    python benchmarks/onednn.py --rounds 2 --steps 3   # quicker, noisier
    python benchmarks/onednn.py --output docs/results/onednn/onednn.json
    python benchmarks/onednn.py --profile              # where a student step's time goes, ~1 min

Prints, per workload, the median and fastest times with oneDNN off and on and the speed-up
(of the medians and of the fastest steps); ``--output`` also writes every timing as JSON.
``--profile`` instead traces three student steps (step 1) with TensorFlow's profiler in each
setting and prints the op types that took the most time (summed over the compute threads).
The library turns oneDNN on by default (`adambnn_larq._compat.prefer_onednn`); this benchmark
is the evidence for that default, and the tool to check it on another CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version

WORKLOADS = ("step1", "step2", "teacher", "teacher_logits")
BATCH_SIZE = 128
LOGITS_IMAGES, LOGITS_BATCH = 2048, 256


def child(steps: int) -> dict:
    """Seconds per repetition of each workload, in this process's oneDNN setting."""
    # First: it selects Keras 2 before TensorFlow is imported.
    import train_throughput as tt

    # isort: split
    import numpy as np
    import tensorflow as tf

    from adambnn_larq.hostinfo import onednn_enabled
    from adambnn_larq.teachers import SmallTeacher

    tf.keras.utils.set_random_seed(0)
    times = {}
    for step in ("step1", "step2"):
        trainer = tt.make_trainer("fashion_mnist", step, jit_compile=False, teacher=None)
        times[step] = tt.step_times(trainer, tt.random_batch("fashion_mnist", BATCH_SIZE), steps)
    teacher = SmallTeacher(input_shape=(32, 32, 1), num_classes=10)
    teacher.compile(
        tf.keras.optimizers.Adam(1e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, labels = tt.random_batch("fashion_mnist", BATCH_SIZE)[:2]
    times["teacher"] = tt.step_times(teacher, (images, labels), steps)
    many = np.random.default_rng(1).standard_normal((LOGITS_IMAGES, 32, 32, 1), dtype=np.float32)
    predict = teacher.make_predict_function()
    batches = iter(tf.data.Dataset.from_tensor_slices(many).batch(LOGITS_BATCH).repeat())
    per_pass = LOGITS_IMAGES // LOGITS_BATCH
    for _ in range(per_pass):  # untimed: tracing and the iterator's start
        predict(batches)
    times["teacher_logits"] = []
    for _ in range(max(1, steps // 2)):
        started = time.perf_counter()
        for _ in range(per_pass):
            logits = predict(batches)
        np.asarray(logits)  # waits for the last batch's result
        times["teacher_logits"].append(time.perf_counter() - started)
    return {"onednn": onednn_enabled(), "times": times}


def profile_child(steps: int = 3) -> dict:
    """Milliseconds per step of each op type in ``steps`` traced student steps (step 1)."""
    import tempfile
    from collections import Counter
    from pathlib import Path

    # First: it selects Keras 2 before TensorFlow is imported.
    import train_throughput as tt

    # isort: split
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from adambnn_larq.hostinfo import onednn_enabled

    tf.keras.utils.set_random_seed(0)
    trainer = tt.make_trainer("fashion_mnist", "step1", jit_compile=False, teacher=None)
    batch = tt.random_batch("fashion_mnist", BATCH_SIZE)
    wall = tt.step_times(trainer, batch, steps)
    step = tt.persistent_steps(trainer, batch)
    step()  # the new iterator's start, outside the trace
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            float(step()["loss"])
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    per_type: Counter = Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # Ops are "<op name>:<op type>"; "Executor::Process"-like events contain them.
                if ":" in name and "::" not in name:
                    per_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e9 / steps
    return {
        "onednn": onednn_enabled(),
        "step_ms": statistics.median(wall) * 1e3,
        "op_ms": dict(per_type.most_common()),
    }


def run_child(onednn: bool, steps: int, *, profile: bool = False) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    mode = ["--profile"] if profile else []
    completed = subprocess.run(
        [sys.executable, __file__, "--child", *mode, "--steps", str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the child (oneDNN {onednn}) failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["onednn"] is not onednn:
        raise RuntimeError(
            f"asked for oneDNN {onednn}, TensorFlow reports {result['onednn']}: the setting "
            "did not reach TensorFlow"
        )
    return result


def _statistics(times: list[float], images: int) -> dict:
    median = statistics.median(times)
    return {
        "median_s": median,
        "fastest_s": min(times),
        "images_per_second": images / median,
        "times_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per child")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--output", help="also write the results as JSON here")
    parser.add_argument(
        "--profile", action="store_true", help="op types of a student step in each setting"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")
    if args.child:
        print(json.dumps(profile_child(args.steps) if args.profile else child(args.steps)))
        return
    if args.profile:
        profile(args.output)
        return

    from adambnn_larq.hostinfo import cpu_model_name

    cpu = cpu_model_name()
    print(
        f"{cpu}, {platform.machine()}, {os.cpu_count()} CPUs; {args.rounds} rounds, each a "
        f"child process with oneDNN off and one with it on, {args.steps} steps per workload",
        flush=True,
    )
    times = {setting: {w: [] for w in WORKLOADS} for setting in ("off", "on")}
    started = time.perf_counter()
    for index in range(args.rounds):
        for setting in ("off", "on"):
            print(f"  round {index + 1}/{args.rounds}: oneDNN {setting}", flush=True)
            for workload, seconds in run_child(setting == "on", args.steps)["times"].items():
                times[setting][workload] += seconds
    results = {}
    for workload in WORKLOADS:
        images = LOGITS_IMAGES if workload == "teacher_logits" else BATCH_SIZE
        off = _statistics(times["off"][workload], images)
        on = _statistics(times["on"][workload], images)
        results[workload] = {
            "off": off,
            "on": on,
            "speedup": off["median_s"] / on["median_s"],
            "speedup_fastest": off["fastest_s"] / on["fastest_s"],
        }
        print(
            f"{workload}: {off['images_per_second']:.0f} img/s off ({off['median_s'] * 1e3:.0f} "
            f"ms), {on['images_per_second']:.0f} img/s on ({on['median_s'] * 1e3:.0f} ms): "
            f"{results[workload]['speedup']:.2f}x (fastest: "
            f"{results[workload]['speedup_fastest']:.2f}x)",
            flush=True,
        )
    if args.output:
        with open(args.output, "w") as file:
            payload = {
                "tensorflow": version("tensorflow"),
                "cpu": cpu,
                "cpu_count": os.cpu_count(),
                "rounds": args.rounds,
                "steps": args.steps,
                "wall_seconds": time.perf_counter() - started,
                "results": results,
            }
            json.dump(payload, file, indent=2)


def profile(output: str | None) -> None:
    from adambnn_larq.hostinfo import cpu_model_name

    results = {}
    for setting in ("off", "on"):
        result = run_child(setting == "on", 3, profile=True)
        results[setting] = result
        total = sum(result["op_ms"].values())
        print(
            f"oneDNN {setting}: {result['step_ms']:.0f} ms a step (median of 3), "
            f"{total:.0f} ms of op time a step over the compute threads; the largest:"
        )
        for name, ms in list(result["op_ms"].items())[:8]:
            print(f"  {name:28s} {ms:7.1f} ms  {100 * ms / total:4.1f} %")
    if output:
        with open(output, "w") as file:
            json.dump({"cpu": cpu_model_name(), "profile": results}, file, indent=2)


if __name__ == "__main__":
    main()
