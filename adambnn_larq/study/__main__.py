"""``python -m adambnn_larq.study --train-run ...``: one run of ``adambnn study --jobs N``
in its own process (started by `adambnn_larq.study.running`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from adambnn_larq import logs
from adambnn_larq.config import resolve_config
from adambnn_larq.training import train


def _train_run_main(argv: Sequence[str]) -> int:
    """``python -m adambnn_larq.study --train-run CONFIG_JSON RUN_DIR NAME VERBOSE``."""
    logs.configure(verbose=not logs.quiet())  # as the `adambnn study` that started it
    config_json, run_dir, name, verbose = argv
    config = resolve_config(json.loads(config_json), where=f"study run {name}")
    train(config, run_dir, recipe=name, verbose=int(verbose))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--train-run"] or len(sys.argv) != 6:
        sys.exit("internal entry point of `adambnn study --jobs N`; use `adambnn study`")
    sys.exit(_train_run_main(sys.argv[2:]))
