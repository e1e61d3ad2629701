"""Where one study run's time goes: train one final run of a study in this process, at the
study's own budget or a smaller one, for a sampling profiler to watch.

Each epoch line the run prints splits the epoch into training batches, validation and the rest
(start of a fit, analysis callbacks, saving); a profiler splits further. The figures of
docs/results/study-run-cost/README.md came from::

    py-spy record --idle -r 20 -f raw -o run.raw -- \\
        python benchmarks/study_run_profile.py --output /tmp/study-run-profile

(the study's budget, 8,000 training images and 5,000 validation images, about 8 minutes on 2
cores; the run trains its teacher first), then::

    python benchmarks/study_run_profile.py --summarize run.raw --rate 20

which sorts the main thread's samples into the parts of a run (`PARTS`, first match wins).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from collections import Counter
from pathlib import Path

from adambnn_larq.study import load_study
from adambnn_larq.training import train

TRACING = ("trace_function", "_maybe_define_function", "func_graph_from_py_func", "autograph")

#: (part, test on one sampled stack); the first part whose test holds takes the sample.
PARTS = [
    ("teacher: training the small teacher (once per teacher), loading it",
     lambda s: "prepare_teacher" in s),
    ("start-up: imports, study file, data info", lambda s: "run_stage (" not in s),
    ("validation each epoch", lambda s: "Model.fit" in s and "Model.evaluate" in s),
    ("final test evaluation of a stage", lambda s: "Model.evaluate" in s),
    ("callbacks: TensorBoard", lambda s: "Model.fit" in s and "TensorBoard" in s),
    ("callbacks: analysis (FF, C2I, saturation, weights), CSV",
     lambda s: "Model.fit" in s and "CallbackList" in s),
    ("training: tracing the train step",
     lambda s: "Model.fit" in s and any(t in s for t in TRACING)),
    ("training: the train steps (and the fit's data handler)", lambda s: "Model.fit" in s),
    ("saving: best and final models, checkpoints",
     lambda s: any(t in s for t in ("save_model", "CheckpointManager", "replace_durably"))),
    ("building: network, optimizer, step 2's start", lambda s: True),
]  # fmt: skip


def summarize(raw: Path, rate: float) -> None:
    """Print seconds and shares of each part from py-spy's raw output (``stack count`` lines)."""
    seconds: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        part = next(name for name, test in PARTS if test(stack))
        seconds[part] += int(count) / rate
    total = sum(seconds.values())
    print(f"{total:.0f} s sampled")
    for part, value in seconds.most_common():
        print(f"{value:7.1f} s {100 * value / total:5.1f} %  {part}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summarize", type=Path, help="py-spy raw output to summarize")
    parser.add_argument("--rate", type=float, default=20, help="py-spy's samples a second")
    parser.add_argument("--study", default="paper_study")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--run", default="adam-2step-wd5e-06", help="a final run of the study")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=2.5e-3)
    parser.add_argument("--train-limit", type=int, default=8000)
    parser.add_argument("--eval-limit", type=int, default=5000)
    parser.add_argument("--output", type=Path, help="the run's folder (replaced)")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.rate)
        return
    if args.output is None:
        parser.error("--output is required to train the run")
    study = load_study(
        args.study,
        datasets=[args.dataset],
        runs=[args.run],
        overrides=[f"train_limit={args.train_limit}", f"eval_limit={args.eval_limit}"],
    )
    (run,) = [r for r in study.finals if r.config.seed == args.seed]
    config = dataclasses.replace(run.config, learning_rate=args.learning_rate)
    shutil.rmtree(args.output, ignore_errors=True)
    train(config, args.output / run.directory, recipe=run.name, verbose=0)


if __name__ == "__main__":
    main()
